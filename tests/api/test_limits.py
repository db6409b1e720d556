"""Body size (413), malformed bodies (422), and user input never producing a 500."""

from __future__ import annotations

import pytest


def test_a_declared_oversized_body_is_refused_before_reading(api):
    with api(limits={"max_body_bytes": 1000}) as client:
        response = client.post("/v1/embeddings", json={"input": "x" * 2000})
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "body_too_large"
    assert "FLIPMATCH_LIMITS__MAX_BODY_BYTES" in response.json()["error"]["message"]


def test_a_chunked_oversized_body_is_refused_while_streaming(api):
    def chunks():
        yield b'{"input": "'
        for _ in range(50):
            yield b"x" * 100
        yield b'"}'

    with api(limits={"max_body_bytes": 1000}) as client:
        json_route = client.post("/v1/embeddings", content=chunks(), headers={"Content-Type": "application/json"})
        client.post("/v1/corpora", json={"name": "faq"})
        import_route = client.post("/v1/corpora/faq/import", content=chunks(),
                                   headers={"Content-Type": "application/x-ndjson"})
    assert json_route.status_code == 413 and json_route.json()["error"]["code"] == "body_too_large"
    assert import_route.status_code == 413


@pytest.mark.parametrize(("content", "message"), [
    (b'{"input": ', "the body is not valid JSON (Expecting value at character 10)"),
    (b"[1, 2", "the body is not valid JSON"),
    (b'"just a string"', "Input should be a valid dictionary"),
    (b"null", "Input should be a valid dictionary"),
])
def test_malformed_json(client, content, message):
    response = client.post("/v1/embeddings", content=content, headers={"Content-Type": "application/json"})
    assert response.status_code == 422 and message in response.json()["error"]["message"]


FUZZ = [
    ("post", "/v1/embeddings", {"input": {"nested": True}}),
    ("post", "/v1/embeddings", {"input": "x" * 100_000}),
    ("post", "/v1/embeddings", {"input": ["\x00\ud7ff"], "encoding_format": "base64"}),
    ("post", "/v1/match", {"pairs": "not a list"}),
    ("post", "/v1/match", {"pairs": [{"a": 1, "b": None}]}),
    ("post", "/v1/corpora", {"name": None}),
    ("post", "/v1/corpora", {"name": "x", "answer_threshold": "high"}),
    ("post", "/v1/corpora/x/search", {"query": "q", "top_k": "many"}),
    ("put", "/v1/corpora/x/entries/a", {"question": "q", "metadata": [1]}),
    ("get", "/v1/corpora/x/entries?offset=abc", None),
    ("patch", "/v1/corpora/x", {"default_answer": 5}),
    ("delete", "/v1/corpora/%00", None),
    ("get", "/v1/nowhere", None),
    ("put", "/v1/embeddings", None),
]


@pytest.mark.parametrize(("method", "path", "body"), FUZZ)
def test_user_input_never_causes_a_500(client, method, path, body):
    client.post("/v1/corpora", json={"name": "x"})
    kwargs = {"json": body} if body is not None else {}
    response = client.request(method.upper(), path, **kwargs)
    assert 200 <= response.status_code < 500, response.text
    if response.status_code >= 400:
        assert set(response.json()["error"]) == {"message", "type", "code"}


def test_lone_surrogates_are_replaced_not_a_500(client):
    """JSON may escape half a UTF-16 pair; Python decodes it to a string the tokenizer cannot encode."""
    headers = {"Content-Type": "application/json"}
    embedded = client.post("/v1/embeddings", content=b'{"input": ["a \\ud800 b", "ok"]}', headers=headers)
    assert embedded.status_code == 200 and len(embedded.json()["data"]) == 2
    client.post("/v1/corpora", json={"name": "x"})
    written = client.put("/v1/corpora/x/entries/a", content=b'{"question": "q \\udfff", "answer": "\\ud800"}',
                         headers=headers)
    assert written.status_code == 200
    assert client.get("/v1/corpora/x/export").status_code == 200
    assert client.post("/v1/corpora/x/search", content=b'{"query": "\\udc00"}', headers=headers).status_code == 200


def test_nul_in_texts_is_stored_as_replacement_on_every_store(api, store_settings):
    """PostgreSQL text and jsonb refuse NUL (0x00); the schema layer turns it into U+FFFD for every store, so a
    write that answered 200 reads back the same everywhere (entry texts, metadata, imports, corpus description)."""
    with api(**store_settings) as client:
        assert client.post("/v1/corpora", json={"name": "x", "description": "d\u0000"}).status_code == 201
        assert client.get("/v1/corpora/x").json()["description"] == "d\ufffd"
        written = client.put("/v1/corpora/x/entries/a", json={
            "question": "q\u0000", "alt_questions": ["alt\u0000"], "answer": "a\u0000",
            "metadata": {"k\u0000": "v\u0000"}})
        assert written.status_code == 200, written.text
        imported = client.post("/v1/corpora/x/import", content="id,question,answer\nb,q2\u0000,a2\n",
                               headers={"Content-Type": "text/csv"})
        assert imported.status_code == 200, imported.text
        entry = client.get("/v1/corpora/x/entries/a").json()
        assert (entry["question"], entry["alt_questions"], entry["answer"], entry["metadata"]) == (
            "q\ufffd", ["alt\ufffd"], "a\ufffd", {"k\ufffd": "v\ufffd"})
        assert client.get("/v1/corpora/x/entries/b").json()["question"] == "q2\ufffd"
