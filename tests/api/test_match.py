"""POST /v1/match: similarity, the model card's threshold, per-request override, limits."""

from __future__ import annotations

import pytest


def test_identical_texts_match(client):
    body = client.post("/v1/match", json={"pairs": [{"a": "reset my pin", "b": "reset my pin"},
                                                      {"a": "reset my pin", "b": "where is my card"}]}).json()
    first, second = body["data"]
    assert first["similarity"] == pytest.approx(1.0, abs=1e-5) and first["match"] is True
    assert -1.0 <= second["similarity"] < 1.0
    assert body["threshold"] == 0.5  # the tiny artifact's flipmatch.json match_threshold
    assert body["usage"]["prompt_tokens"] > 0


def test_threshold_comes_from_the_model_card_and_can_be_overridden(api, build_tiny_encoder):
    with api(model_path=str(build_tiny_encoder(match_threshold=0.999))) as client:
        pair = {"a": "reset my pin", "b": "where is my card"}
        default = client.post("/v1/match", json={"pairs": [pair]}).json()
        override = client.post("/v1/match", json={"pairs": [pair], "threshold": -1.0}).json()
    assert default["threshold"] == 0.999 and default["data"][0]["match"] is False
    assert override["threshold"] == -1.0 and override["data"][0]["match"] is True


@pytest.mark.parametrize(("body", "message"), [
    ({"pairs": []}, "pairs: List should have at least 1 item"),
    ({"pairs": [{"a": "x"}]}, "pairs.0.b: Field required"),
    ({"pairs": [{"a": "x", "b": " "}]}, "the text is empty"),
    ({"pairs": [{"a": "x", "b": "y"}], "threshold": 2}, "threshold: Input should be less than or equal to 1"),
])
def test_malformed(client, body, message):
    response = client.post("/v1/match", json=body)
    assert response.status_code == 422 and message in response.json()["error"]["message"]


def test_too_many_pairs(api):
    with api(limits={"max_texts": 2}, batching={"max_queue": 8}) as client:
        response = client.post("/v1/match", json={"pairs": [{"a": "x", "b": "y"}] * 3})
    assert response.status_code == 422
    assert response.json()["error"]["message"] == "3 pairs in one call; the limit is 2 (FLIPMATCH_LIMITS__MAX_TEXTS)"
