"""POST /v1/embeddings: OpenAI shape, base64, usage, limits and truncation, parity with sentence-transformers."""

from __future__ import annotations

import base64

import numpy as np
import pytest


def test_single_text_and_list(client):
    one = client.post("/v1/embeddings", json={"input": "hello world", "model": "anything"}).json()
    assert one["object"] == "list" and one["model"] == "encoder"
    (item,) = one["data"]
    assert item["object"] == "embedding" and item["index"] == 0 and len(item["embedding"]) == 32
    assert one["usage"] == {"prompt_tokens": 4, "total_tokens": 4}  # [CLS] hello world [SEP]
    many = client.post("/v1/embeddings", json={"input": ["hello world", "b", "c"]}).json()
    assert [d["index"] for d in many["data"]] == [0, 1, 2]
    np.testing.assert_allclose(many["data"][0]["embedding"], item["embedding"], rtol=1e-5)
    assert many["truncated"] == 0


def test_base64_is_little_endian_float32(client):
    floats = client.post("/v1/embeddings", json={"input": ["x y z"]}).json()["data"][0]["embedding"]
    encoded = client.post("/v1/embeddings", json={"input": ["x y z"], "encoding_format": "base64"}).json()
    decoded = np.frombuffer(base64.b64decode(encoded["data"][0]["embedding"]), dtype="<f4")
    np.testing.assert_allclose(decoded, floats, rtol=1e-6)


def test_parity_with_sentence_transformers(client, tiny_artifact):
    from sentence_transformers import SentenceTransformer

    texts = ["How do I reset my card PIN?", "a", "What are the symptoms of anemia in older adults?", "ünïcödé"]
    served = np.asarray([d["embedding"] for d in client.post("/v1/embeddings", json={"input": texts}).json()["data"]])
    reference = SentenceTransformer(str(tiny_artifact), device="cpu").encode(texts, convert_to_numpy=True)
    cosine = (served * reference).sum(1) / (np.linalg.norm(served, axis=1) * np.linalg.norm(reference, axis=1))
    assert cosine.min() >= 0.999


@pytest.mark.parametrize(("body", "message"), [
    ({"input": []}, "the list is empty"),
    ({"input": ""}, "the text is empty"),
    ({"input": ["ok", "  "]}, "text 1 is empty"),
    ({"input": [1, 2, 3]}, "token-id input is not supported"),
    ({"input": [[1, 2]]}, "token-id input is not supported"),
    ({"input": "x", "encoding_format": "int8"}, "encoding_format"),
    ({"input": "x", "dimensions": 64}, "dimensions=64 is not available: this model outputs 32"),
    ({"input": "x", "temperature": 1}, "temperature: Extra inputs are not permitted"),
    ({}, "input: Field required"),
])
def test_malformed_requests_get_actionable_422s(client, body, message):
    response = client.post("/v1/embeddings", json=body)
    assert response.status_code == 422
    error = response.json()["error"]
    assert message in error["message"] and error["type"] == "invalid_request_error"


def test_too_many_texts(api):
    with api(limits={"max_texts": 3}, batching={"max_queue": 8}) as client:
        response = client.post("/v1/embeddings", json={"input": ["t"] * 4})
    assert response.status_code == 422
    assert response.json()["error"]["message"] == "4 texts in one call; the limit is 3 (FLIPMATCH_LIMITS__MAX_TEXTS)"
    assert response.json()["error"]["code"] == "too_many_inputs"


def test_long_texts_are_truncated_and_reported(api):
    with api(limits={"max_text_chars": 50}) as client:
        body = client.post("/v1/embeddings", json={"input": ["x" * 60, "word " * 100, "short"]}).json()
        assert body["truncated"] == 2
        metrics = client.get("/metrics").text
    assert "flipmatch_truncated_texts_total 2.0" in metrics


def test_without_truncation_long_texts_are_refused(api):
    with api(limits={"max_text_chars": 300, "truncate": False}) as client:
        too_many_chars = client.post("/v1/embeddings", json={"input": ["ok", "x" * 400]})
        too_many_tokens = client.post("/v1/embeddings", json={"input": ["a " * 100]})  # 102 tokens > 64
    assert too_many_chars.status_code == too_many_tokens.status_code == 422
    assert too_many_chars.json()["error"]["message"].startswith("text 1 has 400 characters; the limit is 300 "
                                                                "(FLIPMATCH_LIMITS__MAX_TEXT_CHARS)")
    assert "limit of 64 tokens" in too_many_tokens.json()["error"]["message"]
    assert "FLIPMATCH_LIMITS__TRUNCATE" in too_many_tokens.json()["error"]["message"]
