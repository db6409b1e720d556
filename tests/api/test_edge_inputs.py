"""Odd but valid JSON that once could reach a 500: NaN/Infinity literals, huge integers, NUL characters."""

from __future__ import annotations

import pytest

HEADERS = {"Content-Type": "application/json"}


@pytest.fixture
def corpus(client):
    client.post("/v1/corpora", json={"name": "x"})
    return client


@pytest.mark.parametrize(("method", "path", "content"), [
    ("put", "/v1/corpora/x/entries/a", b'{"question": "q", "metadata": {"score": NaN, "big": Infinity}}'),
    ("post", "/v1/match", b'{"pairs": [{"a": "x", "b": "y"}], "threshold": NaN}'),
    ("patch", "/v1/corpora/x", b'{"answer_threshold": Infinity}'),
    ("post", "/v1/corpora/x/search", b'{"query": "q", "top_k": 100000000000000000000000000000}'),
    ("get", "/v1/corpora/x/entries?offset=100000000000000000000000000000", None),
    ("put", "/v1/corpora/x/entries/b", b'{"question": "nul \\u0000 inside", "answer": "\\u0000"}'),
    ("post", "/v1/embeddings", b'{"input": "x", "dimensions": 100000000000000000000000000000}'),
])
def test_never_a_500(corpus, method, path, content):
    kwargs = {"content": content, "headers": HEADERS} if content is not None else {}
    response = corpus.request(method.upper(), path, **kwargs)
    assert response.status_code < 500, response.text
    if response.status_code >= 400:
        assert set(response.json()["error"]) == {"message", "type", "code"}


def test_entries_with_special_values_read_back(corpus):
    corpus.put("/v1/corpora/x/entries/a", content=b'{"question": "q \\u0000", "metadata": {"v": NaN}}',
               headers=HEADERS)
    for path in ("/v1/corpora/x/entries/a", "/v1/corpora/x/entries", "/v1/corpora/x/export"):
        assert corpus.get(path).status_code == 200
    assert corpus.post("/v1/corpora/x/search", json={"query": "q"}).status_code == 200
