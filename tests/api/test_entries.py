"""Entry routes: upsert one or many, get, list (paginated), delete, JSONL/CSV import and export."""

from __future__ import annotations

import json

import pytest

ENTRY = {"question": "How do I reset my PIN?", "alt_questions": ["forgot my pin"], "answer": "Use the app.",
         "metadata": {"team": "cards"}}


@pytest.fixture
def faq(client):
    assert client.post("/v1/corpora", json={"name": "faq"}).status_code == 201
    return client


def test_put_get_replace_delete(faq):
    written = faq.put("/v1/corpora/faq/entries/pin", json=ENTRY)
    assert written.status_code == 200 and written.json() == {"entries": 1, "vectors": 2, "truncated": 0}
    assert faq.get("/v1/corpora/faq/entries/pin").json() == {"id": "pin", **ENTRY}
    faq.put("/v1/corpora/faq/entries/pin", json={"question": "Reset PIN?", "answer": "New."})
    assert faq.get("/v1/corpora/faq/entries/pin").json()["alt_questions"] == []
    corpus = faq.get("/v1/corpora/faq").json()
    assert (corpus["entries"], corpus["vectors"]) == (1, 1)
    assert faq.delete("/v1/corpora/faq/entries/pin").status_code == 204
    assert faq.get("/v1/corpora/faq/entries/pin").status_code == 404
    assert faq.delete("/v1/corpora/faq/entries/pin").json()["error"]["code"] == "entry_not_found"


def test_bulk_upsert_and_pages(faq):
    entries = [{"id": f"e{i:02d}", "question": f"question {i}", "answer": f"answer {i}"} for i in range(12)]
    entries.append({"question": "no id given", "answer": "derived"})
    assert faq.post("/v1/corpora/faq/entries", json=entries).json()["entries"] == 13
    page = faq.get("/v1/corpora/faq/entries", params={"offset": 5, "limit": 4}).json()
    assert page["count"] == 13 and (page["offset"], page["limit"]) == (5, 4)
    assert [e["id"] for e in page["data"]] == ["e05", "e06", "e07", "e08"]
    derived = [e for e in faq.get("/v1/corpora/faq/entries", params={"limit": 100}).json()["data"]
               if e["question"] == "no id given"]
    assert derived[0]["id"].startswith("q-")


@pytest.mark.parametrize(("body", "message"), [
    ([], "the list is empty"),
    ([{"id": "../x", "question": "q"}], "0.id: String should match pattern"),
    ([{"id": "a", "question": ""}], "0.question"),
    ([{"id": "a", "question": "q", "alt_questions": ["ok", ""]}], "alt_questions.1"),
    ([{"id": "a", "question": "q", "alt_questions": ["x"] * 101}], "at most 100 items"),
    ({"id": "a", "question": "q"}, "Input should be a valid list"),
])
def test_bad_bulk_bodies(faq, body, message):
    response = faq.post("/v1/corpora/faq/entries", json=body)
    assert response.status_code == 422 and message in response.json()["error"]["message"]


def test_entry_routes_on_a_missing_corpus_are_404(client):
    assert client.put("/v1/corpora/missing/entries/a", json=ENTRY).status_code == 404
    assert client.get("/v1/corpora/missing/entries").status_code == 404
    assert client.get("/v1/corpora/missing/entries/a").status_code == 404
    assert client.post("/v1/corpora/missing/import", content=b'{"question": "q"}',
                       headers={"Content-Type": "application/x-ndjson"}).status_code == 404
    assert client.get("/v1/corpora/missing/export").status_code == 404


def test_import_jsonl_and_csv_then_export_round_trips(faq):
    jsonl = "\n".join(json.dumps({"id": f"j{i}", "question": f"jsonl question {i}", "alt_questions": ["alt"],
                                  "answer": "a", "metadata": {"i": i}}) for i in range(3))
    response = faq.post("/v1/corpora/faq/import", content=jsonl, headers={"Content-Type": "application/x-ndjson"})
    assert response.json() == {"entries": 3, "vectors": 6, "truncated": 0}
    csv_body = 'id,question,alt_questions,answer,extra\nc1,"csv, question",one | two,Answer,kept\n'
    response = faq.post("/v1/corpora/faq/import", content=csv_body, headers={"Content-Type": "text/csv"})
    assert response.json()["entries"] == 1
    assert faq.get("/v1/corpora/faq/entries/c1").json() == {
        "id": "c1", "question": "csv, question", "alt_questions": ["one", "two"], "answer": "Answer",
        "metadata": {"extra": "kept"}}

    for fmt, media in (("jsonl", "application/x-ndjson"), ("csv", "text/csv")):
        exported = faq.get("/v1/corpora/faq/export", params={"format": fmt})
        assert exported.status_code == 200 and exported.headers["content-type"].startswith(media)
        faq.post("/v1/corpora", json={"name": f"copy-{fmt}"})
        again = faq.post(f"/v1/corpora/copy-{fmt}/import", headers={"Content-Type": media}, content=exported.content)
        assert again.json()["entries"] == 4
        original = faq.get("/v1/corpora/faq/entries").json()["data"]
        assert faq.get(f"/v1/corpora/copy-{fmt}/entries").json()["data"] == original


@pytest.mark.parametrize(("content", "headers", "message"), [
    (b'{"question": "ok"}\n{"question": ', {"Content-Type": "application/x-ndjson"}, "line 2: not valid JSON"),
    (b'{"question": "ok"}\n{"answer": "no question"}', {"Content-Type": "application/x-ndjson"},
     "line 2: question: Field required"),
    (b"answer\nx\n", {"Content-Type": "text/csv"}, "'question' column"),
    (b"", {"Content-Type": "text/csv"}, "'question' column"),
    (b"\n\n", {"Content-Type": "application/x-ndjson"}, "holds no entries"),
])
def test_bad_imports_write_nothing(faq, content, headers, message):
    response = faq.post("/v1/corpora/faq/import", content=content, headers=headers)
    assert response.status_code == 422 and message in response.json()["error"]["message"]
    assert faq.get("/v1/corpora/faq").json()["entries"] == 0


@pytest.mark.parametrize(("headers", "url", "message"), [
    ({"Content-Type": "application/pdf"}, "/v1/corpora/faq/import", "cannot import a 'application/pdf'"),
    ({}, "/v1/corpora/faq/import", "send Content-Type: text/csv or application/x-ndjson"),
    # The format comes from Content-Type only; the old query parameter gets a pointer, not a silent guess.
    ({"Content-Type": "application/x-www-form-urlencoded"}, "/v1/corpora/faq/import?format=jsonl",
     "the ?format= parameter is gone"),
])
def test_imports_in_other_media_types_are_415(faq, headers, url, message):
    response = faq.post(url, content=b'{"question": "q"}', headers=headers)
    assert response.status_code == 415 and message in response.json()["error"]["message"]
    assert response.json()["error"]["code"] == "unsupported_media_type"
    assert faq.get("/v1/corpora/faq").json()["entries"] == 0


@pytest.mark.parametrize("media", ["text/csv; charset=utf-8", "application/jsonl", "application/csv"])
def test_import_media_type_aliases_and_parameters(faq, media):
    body = b"question\nq1\n" if "csv" in media else b'{"question": "q1"}\n'
    response = faq.post("/v1/corpora/faq/import", content=body, headers={"Content-Type": media})
    assert response.status_code == 200 and response.json()["entries"] == 1


def test_bad_pagination(faq):
    assert faq.get("/v1/corpora/faq/entries", params={"limit": 0}).status_code == 422
    assert faq.get("/v1/corpora/faq/entries", params={"offset": -1}).status_code == 422
    assert faq.get("/v1/corpora/faq/export", params={"format": "xml"}).status_code == 422
