"""The OpenAPI document states the rules the server enforces (service/api/openapi.py): which key each operation
needs on this server, its live limits, strict types, minimums; and a 405 names every method of the path."""

from __future__ import annotations

import re
import sys

import pytest

from service.api.schemas.common import NON_BLANK

ADMIN, QUERY = "openapi-admin-key-0123456789", "openapi-query-key-0123456789"
READS = [("/v1/embeddings", "post"), ("/v1/match", "post"), ("/v1/corpora/{name}/search", "post"),
         ("/v1/corpora", "get"), ("/v1/corpora/{name}", "get"), ("/v1/corpora/{name}/entries", "get"),
         ("/v1/corpora/{name}/entries/{entry_id}", "get"), ("/v1/corpora/{name}/export", "get"),
         ("/v1/corpora/{name}/calibration", "get")]


def _operations(spec):
    return [(path, method, op) for path, ops in spec["paths"].items() for method, op in ops.items()]


def test_non_blank_pattern_is_exactly_what_strip_keeps():
    pattern = re.compile(NON_BLANK)
    blank = [c for c in map(chr, range(sys.maxunicode + 1)) if not pattern.fullmatch(c)]
    assert blank == [c for c in map(chr, range(sys.maxunicode + 1)) if c.isspace()]


@pytest.mark.parametrize(("auth", "dev_mode", "reads_open", "writes_open"), [
    ({"admin_key": ADMIN}, False, True, False),
    ({"admin_key": ADMIN, "query_key": QUERY}, False, False, False),
    ({}, True, True, True),    # dev mode without an admin key: every route answers without a key
    ({}, False, True, False),  # no admin key, not dev mode: writes answer 403 whatever is sent
])
def test_security_says_where_a_key_is_optional(api, auth, dev_mode, reads_open, writes_open):
    with api(auth=auth, dev_mode=dev_mode) as client:
        spec = client.get("/openapi.json").json()
    for path, method, op in _operations(spec):
        security = op.get("security")
        if security is None:
            assert path.startswith(("/health", "/metrics", "/v1/info")), path
            continue
        is_read = (path, method) in READS
        assert ({} in security) == (reads_open if is_read else writes_open), (method, path, security)
        schemes = {name for requirement in security for name in requirement}
        assert schemes == ({"QueryBearer", "QueryApiKey"} if is_read else {"AdminBearer", "AdminApiKey"})
        assert "Key: " in op["description"]


def test_limits_and_dimension_are_the_servers(api):
    with api(limits={"max_texts": 7, "max_top_k": 9, "truncate": False, "max_text_chars": 300}) as client:
        spec = client.get("/openapi.json").json()
        dimension = client.get("/v1/info").json()["dimension"]
    schemas = spec["components"]["schemas"]
    embed_input = schemas["EmbeddingRequest"]["properties"]["input"]["anyOf"]
    assert embed_input[0] == {"type": "string", "minLength": 1, "pattern": NON_BLANK, "maxLength": 300}
    assert embed_input[1]["minItems"] == 1 and embed_input[1]["maxItems"] == 7
    assert embed_input[1]["items"]["maxLength"] == 300
    assert schemas["SearchRequest"]["properties"]["top_k"]["maximum"] == 9
    assert schemas["MatchRequest"]["properties"]["pairs"]["maxItems"] == 7
    assert schemas["EmbeddingRequest"]["properties"]["dimensions"]["anyOf"][0]["enum"] == [dimension]
    assert schemas["CorpusUpdate"]["minProperties"] == 1
    # the test encoder has no match head: this server refuses rerank.enabled=true, and its document says so
    assert schemas["RerankSettings"]["properties"]["enabled"]["enum"] == [False]
    assert "enum" not in schemas["RerankPublic"]["properties"]["enabled"]  # a stored setting is reported as is
    bulk = spec["paths"]["/v1/corpora/{name}/entries"]["post"]["requestBody"]["content"]["application/json"]
    assert bulk["schema"]["minItems"] == 1
    assert "x-flipmatch-limit" not in str(spec)


def test_truncating_servers_state_no_text_length(api):
    with api() as client:
        spec = client.get("/openapi.json").json()
    assert "maxLength" not in spec["components"]["schemas"]["TextPair"]["properties"]["a"]


def test_import_bodies_and_links_are_documented(client):
    spec = client.get("/openapi.json").json()
    body = spec["paths"]["/v1/corpora/{name}/import"]["post"]["requestBody"]
    assert set(body["content"]) == {"text/csv", "application/x-ndjson"}
    assert all(media["schema"]["format"] == "binary" for media in body["content"].values())
    links = spec["paths"]["/v1/corpora"]["post"]["responses"]["201"]["links"]
    assert links["GetCorpus"] == {"operationId": "get_corpus", "parameters": {"name": "$response.body#/name"}}
    ids = {op["operationId"] for _, _, op in _operations(spec)}
    for _, _, op in _operations(spec):
        for response in op["responses"].values():
            assert {link["operationId"] for link in response.get("links", {}).values()} <= ids


@pytest.mark.parametrize(("body", "problem"), [
    ({"clarify_margin": False}, "clarify_margin"),     # a boolean is not a threshold
    ({"answer_threshold": "0.5"}, "answer_threshold"),  # nor is a string
    ({}, "nothing to update"),
])
def test_patch_is_strict(client, body, problem):
    client.post("/v1/corpora", json={"name": "faq", "clarify_margin": 0.05})
    response = client.patch("/v1/corpora/faq", json=body)
    assert response.status_code == 422 and problem in response.json()["error"]["message"]
    assert client.get("/v1/corpora/faq").json()["clarify_margin"] == 0.05


@pytest.mark.parametrize(("top_k", "status"), [(2, 200), (2.0, 200), ("2", 422), (True, 422), (2.5, 422)])
def test_integers_are_json_schema_integers(client, top_k, status):
    client.post("/v1/corpora", json={"name": "faq"})
    response = client.post("/v1/corpora/faq/search", json={"query": "q", "top_k": top_k})
    assert response.status_code == status, response.text


@pytest.mark.parametrize(("method", "path", "allowed"), [
    ("PUT", "/v1/corpora", "GET, POST"),
    ("OPTIONS", "/v1/corpora/faq", "DELETE, GET, PATCH"),
    ("POST", "/v1/corpora/faq/entries/e1", "DELETE, GET, PUT"),
    ("GET", "/v1/corpora/faq/import", "POST"),
])
def test_405_allow_lists_every_method_of_the_path(client, method, path, allowed):
    response = client.request(method, path)
    assert response.status_code == 405 and response.headers["allow"] == allowed
    assert response.json()["error"]["code"] == "method_not_allowed"
    assert allowed in response.json()["error"]["message"]
