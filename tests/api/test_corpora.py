"""Corpus CRUD: create, list, get, PATCH, delete; conflicts, unknown names, invalid names."""

from __future__ import annotations

import pytest


def test_create_get_list_patch_delete(client):
    created = client.post("/v1/corpora", json={"name": "faq", "description": "Card FAQ", "clarify_margin": 0.1})
    assert created.status_code == 201
    body = created.json()
    assert (body["name"], body["entries"], body["vectors"], body["status"], body["index_kind"]) == (
        "faq", 0, 0, "ready", "flat")
    assert body["answer_threshold"] == 0.5  # default: the model card's match_threshold
    assert body["fingerprint"] == client.get("/v1/info").json()["fingerprint"]
    assert client.get("/v1/corpora/faq").json() == body
    listed = client.get("/v1/corpora").json()
    assert listed["count"] == 1 and listed["data"][0]["name"] == "faq"

    patched = client.patch("/v1/corpora/faq", json={"answer_threshold": 0.8, "default_answer": "Ask a human."})
    assert patched.status_code == 200
    assert (patched.json()["answer_threshold"], patched.json()["default_answer"], patched.json()["clarify_margin"]) \
        == (0.8, "Ask a human.", 0.1)

    assert client.delete("/v1/corpora/faq").status_code == 204
    assert client.get("/v1/corpora/faq").status_code == 404
    assert client.get("/v1/corpora").json() == {"data": [], "count": 0}


def test_duplicate_is_a_conflict(client):
    assert client.post("/v1/corpora", json={"name": "faq"}).status_code == 201
    response = client.post("/v1/corpora", json={"name": "faq"})
    assert response.status_code == 409
    assert response.json()["error"] == {"message": "corpus 'faq' already exists", "type": "conflict_error",
                                         "code": "corpus_exists"}


def test_corpus_limit(api):
    with api(limits={"max_corpora": 1}) as client:
        client.post("/v1/corpora", json={"name": "one"})
        response = client.post("/v1/corpora", json={"name": "two"})
    assert response.status_code == 409 and "FLIPMATCH_LIMITS__MAX_CORPORA" in response.json()["error"]["message"]


@pytest.mark.parametrize("method", ["get", "patch", "delete"])
def test_unknown_corpus_is_404(client, method):
    kwargs = {"json": {"description": "x"}} if method == "patch" else {}
    response = getattr(client, method)("/v1/corpora/missing", **kwargs)
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "corpus_not_found"


@pytest.mark.parametrize("name", ["Upper", "-dash", "a" * 65, "sp ace", "dot.dot", ""])
def test_invalid_names_are_refused(client, name):
    response = client.post("/v1/corpora", json={"name": name})
    assert response.status_code == 422 and response.json()["error"]["message"].startswith("name:")


@pytest.mark.parametrize("path", ["/v1/corpora/Bad", "/v1/corpora/..%2Fetc", "/v1/corpora/a..b"])
def test_invalid_names_in_paths_never_reach_the_store(client, path):
    assert client.get(path).status_code in (404, 422)


@pytest.mark.parametrize("body", [{}, {"answer_threshold": 3}, {"clarify_margin": -1}, {"unknown": 1}])
def test_bad_patches(client, body):
    client.post("/v1/corpora", json={"name": "faq"})
    response = client.patch("/v1/corpora/faq", json=body)
    assert response.status_code == 422
