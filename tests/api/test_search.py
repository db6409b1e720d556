"""POST /v1/corpora/{name}/search: candidates (distinct entries), and each decision outcome."""

from __future__ import annotations

import pytest

ENTRIES = [
    {"id": "pin", "question": "How do I reset my PIN?", "alt_questions": ["I forgot my pin code"], "answer": "App.",
     "metadata": {"team": "cards"}},
    {"id": "card", "question": "Where is my new card?", "answer": "In the mail."},
    {"id": "fee", "question": "What does an international transfer cost?", "answer": "1 EUR."},
]


@pytest.fixture
def faq(client):
    def create(**settings: float) -> None:
        assert client.post("/v1/corpora", json={"name": "faq", **settings}).status_code == 201
        assert client.post("/v1/corpora/faq/entries", json=ENTRIES).status_code == 200

    return client, create


def search(client, query, **extra):
    response = client.post("/v1/corpora/faq/search", json={"query": query, **extra})
    assert response.status_code == 200, response.text
    return response.json()


def test_answer_with_candidates_from_distinct_entries(faq):
    client, create = faq
    create(answer_threshold=0.99, clarify_margin=0.0)
    body = search(client, "I forgot my pin code", top_k=3)
    assert body["corpus"] == "faq" and body["model"] == "encoder"
    (result,) = body["results"]
    assert (result["outcome"], result["entry_id"], result["answer"], result["options"]) == ("answer", "pin", "App.",
                                                                                          [])
    top = result["candidates"][0]
    assert (top["id"], top["question"], top["matched_question"], top["metadata"]) == (
        "pin", "How do I reset my PIN?", "I forgot my pin code", {"team": "cards"})
    assert top["score"] == pytest.approx(1.0, abs=1e-5)
    assert len({c["id"] for c in result["candidates"]}) == 3
    assert [c["score"] for c in result["candidates"]] == sorted((c["score"] for c in result["candidates"]),
                                                                reverse=True)


def test_no_match_returns_the_default_answer(faq):
    client, create = faq
    create(answer_threshold=1.0, default_answer="Please call us.")  # nothing but an exact text reaches 1.0
    (result,) = search(client, "something else entirely")["results"]
    assert (result["outcome"], result["answer"], result["entry_id"]) == ("no_match", "Please call us.", None)
    assert result["candidates"]  # still shown, for a human to look at


def test_clarify_lists_the_close_entries(faq):
    client, create = faq
    create(answer_threshold=-1.0, clarify_margin=2.0)  # every runner-up is "close"
    (result,) = search(client, "card", top_k=3)["results"]
    assert result["outcome"] == "clarify" and result["answer"] is None and result["entry_id"] is None
    assert sorted(result["options"]) == ["card", "fee", "pin"]
    (result,) = search(client, "card", top_k=1)["results"]  # top_k=1 still compares top-1 with top-2
    assert result["outcome"] == "clarify" and len(result["options"]) == 2 and len(result["candidates"]) == 1


def test_many_queries_and_decision_metrics(faq):
    client, create = faq
    create(answer_threshold=0.99, clarify_margin=0.0)
    body = search(client, ["Where is my new card?", "What does an international transfer cost?", "hello"])
    assert [r["index"] for r in body["results"]] == [0, 1, 2]
    assert [r["entry_id"] for r in body["results"][:2]] == ["card", "fee"]
    metrics = client.get("/metrics").text
    assert 'flipmatch_decisions_total{corpus="faq",outcome="answer"} 2.0' in metrics
    assert 'flipmatch_search_duration_seconds_count{corpus="faq"} 1.0' in metrics
    assert 'flipmatch_corpus_vectors{corpus="faq"} 4.0' in metrics


def test_patched_thresholds_apply_to_the_next_search(faq):
    client, create = faq
    create(answer_threshold=0.99, clarify_margin=0.0)
    assert search(client, "hello there")["results"][0]["outcome"] == "no_match"
    client.patch("/v1/corpora/faq", json={"answer_threshold": -1.0})
    assert search(client, "hello there")["results"][0]["outcome"] == "answer"


def test_empty_corpus_is_a_no_match(client):
    client.post("/v1/corpora", json={"name": "empty", "default_answer": "Nothing yet."})
    (result,) = client.post("/v1/corpora/empty/search", json={"query": "hi"}).json()["results"]
    assert (result["outcome"], result["answer"], result["candidates"]) == ("no_match", "Nothing yet.", [])


@pytest.mark.parametrize(("body", "status", "message"), [
    ({"query": "x", "top_k": 101}, 422, "top_k=101; the limit is 100 (FLIPMATCH_LIMITS__MAX_TOP_K)"),
    ({"query": "x", "top_k": 0}, 422, "top_k: Input should be greater than or equal to 1"),
    ({"query": []}, 422, "the list is empty"),
    ({"query": "x", "k": 3}, 422, "k: Extra inputs are not permitted"),
])
def test_bad_searches(faq, body, status, message):
    client, create = faq
    create()
    response = client.post("/v1/corpora/faq/search", json=body)
    assert response.status_code == status and message in response.json()["error"]["message"]


def test_unknown_corpus(client):
    response = client.post("/v1/corpora/nope/search", json={"query": "x"})
    assert response.status_code == 404 and response.json()["error"]["code"] == "corpus_not_found"


def test_too_many_queries(api):
    with api(limits={"max_texts": 2}, batching={"max_queue": 8}) as client:
        client.post("/v1/corpora", json={"name": "faq"})
        response = client.post("/v1/corpora/faq/search", json={"query": ["a", "b", "c"]})
    assert response.json()["error"]["message"] == "3 queries in one call; the limit is 2 (FLIPMATCH_LIMITS__MAX_TEXTS)"
