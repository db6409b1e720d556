"""OpenAI compatibility: the official `openai` Python client's embeddings.create, in float and base64, against
the real server on 127.0.0.1 (uvicorn, tiny artifact)."""

from __future__ import annotations

import base64
import json
import urllib.request

import numpy as np
import pytest

from tests.hardening.live_server import ADMIN

openai = pytest.importorskip("openai")


@pytest.fixture(scope="module")
def openai_client(live_service):
    return openai.OpenAI(base_url=f"{live_service}/v1", api_key=ADMIN, max_retries=0, timeout=60)


def _reference(url: str, texts: list[str]) -> np.ndarray:
    request = urllib.request.Request(f"{url}/v1/embeddings", data=json.dumps({"input": texts}).encode(),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=60) as response:
        return np.array([d["embedding"] for d in json.load(response)["data"]], dtype=np.float32)


def test_openai_embeddings_float_and_base64(openai_client, live_service):
    texts = ["How do I activate my card?", "where is my card"]
    expected = _reference(live_service, texts)

    floats = openai_client.embeddings.create(model="flipmatch", input=texts, encoding_format="float")
    assert [d.index for d in floats.data] == [0, 1] and floats.object == "list"
    assert np.allclose(np.array([d.embedding for d in floats.data]), expected, atol=1e-6)
    assert floats.usage.prompt_tokens == floats.usage.total_tokens > 0

    raw = openai_client.embeddings.create(model="flipmatch", input=texts, encoding_format="base64")
    decoded = np.stack([np.frombuffer(base64.b64decode(d.embedding), dtype="<f4") for d in raw.data])
    assert np.allclose(decoded, expected, atol=1e-6)

    # Without encoding_format the client asks for base64 and decodes it itself.
    default = openai_client.embeddings.create(model="flipmatch", input=texts[0])
    assert np.allclose(np.array(default.data[0].embedding), expected[0], atol=1e-6)


def test_openai_client_sees_errors_as_its_exceptions(openai_client):
    with pytest.raises(openai.UnprocessableEntityError) as caught:
        openai_client.embeddings.create(model="flipmatch", input=[""])
    assert "empty" in str(caught.value)
