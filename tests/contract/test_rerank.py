"""The artifact's second reading end to end: a tiny student exported with a match head; the service reproduces
its probabilities, and a corpus with rerank enabled reorders its candidates by them."""

from __future__ import annotations

import time

import pytest
import torch
from fastapi.testclient import TestClient

from service.app import create_app
from service.corpus.rerank import rerank
from service.engine.encoder import load_encoder
from service.engine.reranker import MIN_SHARED_TOKENS, _shared_prefix_length, load_reranker, read_match_head
from tests.fixtures.tiny_models import perturb_block_lora
from training.config import LoraSection, StudentConfig
from training.export import export_student
from training.generative import PROBE_PAIRS, match_probabilities
from training.student import load_student

ENTRIES = [
    {"id": f"e{i}", "question": q, "answer": f"answer {i}"}
    for i, q in enumerate([
        "How do I reset my PIN?", "Where is my new card?", "What does an international transfer cost?",
        "Can I get a refund for a double charge?", "How do I close my account?", "Why was my transfer declined?",
    ])
]
QUERIES = ["I forgot my pin", "my card has not come", "money sent abroad fee", "charged twice", "close account"]


@pytest.fixture(scope="module")
def headed(tiny_student_dir, tmp_path_factory):
    torch.manual_seed(6)
    student = load_student(StudentConfig(model=str(tiny_student_dir), max_seq_length=16),
                           LoraSection(rank=4, readout_rank=8))
    perturb_block_lora(student, seed=6)
    with torch.no_grad():
        student.model.base_model.model.lm_head.lora_B["default"].weight.normal_(0, 0.2)
    out = tmp_path_factory.mktemp("rerank") / "artifact"
    export_student(student, out, manifest={"student_id": "tiny", "match_threshold": 0.0}, model_card="# c\n",
                   match_head=True)
    return student, out


def test_service_reproduces_the_exported_probabilities(headed):
    student, out = headed
    reranker = load_reranker(load_encoder(str(out), device="cpu", dtype="float32"))
    assert reranker is not None and reranker.probe_difference() < 1e-4
    query = "How do I activate my new card?"
    candidates = [c for q, c in PROBE_PAIRS] + ["card activation", "a completely unrelated sentence"]
    served = reranker.probabilities(query, candidates)
    expected = match_probabilities(student, [(query, c) for c in candidates])
    assert served.tolist() == pytest.approx(expected, abs=1e-4)


def test_shared_prefix_pass_equals_one_pass_per_prompt(headed):
    _, out = headed
    reranker = load_reranker(load_encoder(str(out), device="cpu", dtype="float32"))
    prompts = [reranker.spec.prompt.format(query="my card has not come", candidate=c)
               for c in ["Where is my new card?", "How do I close my account?", "fee"]]
    ids = reranker.tokenizer(prompts, truncation=True, max_length=reranker.spec.max_tokens)["input_ids"]
    shared = _shared_prefix_length(ids)
    assert shared >= MIN_SHARED_TOKENS  # the cached path is the one taken
    cached, plain = reranker._last_states(ids, shared), reranker._last_states(ids, 0)
    assert torch.allclose(cached, plain, atol=1e-4)


def test_shared_prefix_leaves_every_row_a_token_of_its_own():
    assert _shared_prefix_length([[1, 2, 3, 4], [1, 2, 9]]) == 2
    assert _shared_prefix_length([[1, 2, 3], [1, 2, 3]]) == 2
    assert _shared_prefix_length([[1, 2, 3]]) == 0
    assert _shared_prefix_length([[5, 2], [1, 2]]) == 0


def test_an_artifact_without_a_head_has_no_reranker(tiny_artifact):
    assert read_match_head(tiny_artifact) is None


def _ready(client: TestClient) -> None:
    deadline = time.monotonic() + 60
    while client.get("/health/ready").status_code != 200:
        assert time.monotonic() < deadline, "not ready within 60s"
        time.sleep(0.05)


def test_search_reorders_candidates_by_the_heads_probability(headed, make_settings):
    _, out = headed
    reranker = load_reranker(load_encoder(str(out), device="cpu", dtype="float32"))
    with TestClient(create_app(make_settings(model_path=str(out))), raise_server_exceptions=False) as client:
        _ready(client)
        body = {"name": "faq", "answer_threshold": -1.0, "rerank": {"enabled": True, "top_k": 6}}
        assert client.post("/v1/corpora", json=body).status_code == 201
        assert client.post("/v1/corpora/faq/entries", json=ENTRIES).status_code == 200
        assert client.get("/v1/corpora/faq").json()["rerank"] == {"enabled": True, "top_k": 6}
        enabled = client.get("/openapi.json").json()["components"]["schemas"]["RerankSettings"]["properties"]
        assert "enum" not in enabled["enabled"]  # a model with a match head: true is allowed
        response = client.post("/v1/corpora/faq/search", json={"query": QUERIES, "top_k": 6})
        assert response.status_code == 200, response.text
        reordered = 0
        for query, result in zip(QUERIES, response.json()["results"], strict=True):
            cands = result["candidates"]
            probs = [c["match_probability"] for c in cands]
            assert probs == sorted(probs, reverse=True)  # ordered by the head
            served = reranker.probabilities(query, [c["matched_question"] for c in cands])
            assert probs == pytest.approx(served.tolist(), abs=1e-5)  # and those are the head's probabilities
            by_cosine = [c["id"] for c in sorted(cands, key=lambda c: -c["score"])]
            reordered += by_cosine != [c["id"] for c in cands]
            assert result["outcome"] == ("no_match" if probs[0] < 0.5 else result["outcome"])
        assert reordered > 0  # the head disagrees with the cosine order somewhere: reranking is not a no-op
        metrics = client.get("/metrics").text
        assert f'flipmatch_rerank_duration_seconds_count{{corpus="faq"}} {float(len(QUERIES))}' in metrics
        # turned off: cosine order again, no probabilities
        assert client.patch("/v1/corpora/faq", json={"rerank": {"enabled": False}}).status_code == 200
        (result,) = client.post("/v1/corpora/faq/search", json={"query": QUERIES[0], "top_k": 6}).json()["results"]
        assert all(c["match_probability"] is None for c in result["candidates"])
        assert [c["score"] for c in result["candidates"]] == sorted(
            (c["score"] for c in result["candidates"]), reverse=True)


def test_rerank_on_a_model_without_a_head_is_a_422(make_settings):
    with TestClient(create_app(make_settings()), raise_server_exceptions=False) as client:
        _ready(client)
        response = client.post("/v1/corpora", json={"name": "faq", "rerank": {"enabled": True}})
        assert response.status_code == 422 and response.json()["error"]["code"] == "rerank_unavailable"
        assert client.post("/v1/corpora", json={"name": "faq"}).status_code == 201
        assert client.patch("/v1/corpora/faq", json={"rerank": {"enabled": True}}).status_code == 422


def test_rerank_keeps_retrieval_order_on_ties():
    assert rerank(["a", "b", "c"], [0.2, 0.9, 0.2]) == [("b", 0.9), ("a", 0.2), ("c", 0.2)]
    with pytest.raises(ValueError, match="2 candidates but 1"):
        rerank(["a", "b"], [0.1])
