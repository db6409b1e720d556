"""Health, readiness (loading, ready, shutting down), /metrics after traffic, /v1/info, request ids, 500s,
and the OpenAPI document."""

from __future__ import annotations

import asyncio
import re
import threading
import time

import httpx
import pytest
from fastapi.testclient import TestClient

from service.app import create_app
from service.corpus.registry import CorpusRegistry
from service.engine.device import available_cores


def test_info(client):
    info = client.get("/v1/info").json()
    assert info["model"] == "encoder" and info["dimension"] == 32 and info["max_seq_length"] == 64
    assert (info["device"], info["dtype"], info["match_threshold"]) == ("cpu", "float32", 0.5)
    assert re.fullmatch(r"[0-9a-f]{64}", info["fingerprint"])
    compute = info["compute"]
    assert (compute["selection"], compute["threads"]) == ("dtype requested, threads requested", 1)
    assert [(c["dtype"], c["threads"], c["passed"]) for c in compute["candidates"]] == [("float32", 1, True)]
    assert len(compute["candidates"][0]["ms"]) == 2 and compute["reason"].startswith("measured: float32/1t")
    # 1 thread per pass: one pass per core at once. transformers' BERT masks keep packed texts apart too.
    assert compute["forward_workers"] == compute["candidates"][0]["workers"] == available_cores()
    assert compute["packed"] is True
    assert compute["prepacked"] is True  # oneDNN's packed linear weights reproduced the eager vectors at load
    assert compute["forward_processes"] is True  # 1-thread CPU workers on Linux run as forked children


def test_repeated_queries_are_served_from_the_cache(client):
    def counter(name: str) -> float:
        line = next(x for x in client.get("/metrics").text.splitlines() if x.startswith(name + " "))
        return float(line.split()[1])

    first = client.post("/v1/embeddings", json={"input": ["How do I reset my PIN?"]}).json()
    hits, misses = counter("flipmatch_query_cache_hits_total"), counter("flipmatch_query_cache_misses_total")
    again = client.post("/v1/embeddings", json={"input": ["  How do I  reset my PIN? ", "How do I reset my PIN?"]})
    assert counter("flipmatch_query_cache_hits_total") == hits + 2
    assert counter("flipmatch_query_cache_misses_total") == misses
    for row in again.json()["data"]:
        assert row["embedding"] == first["data"][0]["embedding"]
    assert again.json()["usage"]["prompt_tokens"] == 2 * first["usage"]["prompt_tokens"]


def test_readiness_waits_for_corpora_and_reports_shutdown(make_settings, monkeypatch):
    release = threading.Event()
    original = CorpusRegistry.load_all

    async def slow_load_all(self):
        while not release.is_set():
            await asyncio.sleep(0.01)
        await original(self)

    monkeypatch.setattr(CorpusRegistry, "load_all", slow_load_all)
    app = create_app(make_settings())
    with TestClient(app) as client:
        loading = client.get("/health/ready")
        assert loading.status_code == 503 and loading.json() == {"status": "loading corpora"}
        assert client.get("/health/live").status_code == 200
        corpora = client.get("/v1/corpora")
        assert corpora.status_code == 503 and corpora.headers["Retry-After"]
        assert client.post("/v1/embeddings", json={"input": "x"}).status_code == 200  # the model is up
        release.set()
        deadline = time.monotonic() + 10
        while client.get("/health/ready").status_code != 200:
            assert time.monotonic() < deadline
            time.sleep(0.02)

    async def after_shutdown() -> httpx.Response:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as http:
            return await http.get("/health/ready")

    response = asyncio.run(after_shutdown())
    assert response.status_code == 503 and response.json() == {"status": "shutting down"}


def test_metrics_after_traffic_use_route_templates(client):
    client.post("/v1/corpora", json={"name": "faq"})
    client.put("/v1/corpora/faq/entries/a", json={"question": "q one", "answer": "x"})
    client.post("/v1/corpora/faq/search", json={"query": "q one"})
    client.post("/v1/embeddings", json={"input": ["a", "b"]})
    client.get("/v1/corpora/faq/entries/zzz")
    client.get("/no/such/path")
    text = client.get("/metrics").text
    assert 'route="/v1/corpora/{name}/search",status="200"' in text
    assert 'route="/v1/corpora/{name}/entries/{entry_id}",status="404"' in text
    assert 'route="unmatched",status="404"' in text
    assert "/v1/corpora/faq/" not in text  # raw paths never become labels
    workers = client.get("/v1/info").json()["compute"]["forward_workers"]  # one 1-thread pass per core
    for name in ("flipmatch_request_duration_seconds_bucket", "flipmatch_queue_depth", "flipmatch_batch_size_sum",
                 "flipmatch_batch_tokens_count", "flipmatch_inference_duration_seconds_count",
                 "flipmatch_queue_rejections_total", "flipmatch_truncated_texts_total",
                 'flipmatch_corpus_entries{corpus="faq"} 1.0', 'flipmatch_corpus_vectors{corpus="faq"} 1.0',
                 'flipmatch_model_info{device="cpu",dimension="32",dtype="float32",model="encoder",packed="true",'
                 'prepacked="true",processes="true",selection="dtype requested, threads requested",threads="1",'
                 f'workers="{workers}"}} 1.0',
                 "flipmatch_query_cache_hits_total", "flipmatch_query_cache_misses_total",
                 "flipmatch_decisions_total"):
        assert name in text, name


def test_request_ids(client):
    given = client.get("/health/live", headers={"X-Request-ID": "abc-123"})
    assert given.headers["x-request-id"] == "abc-123"
    generated = client.get("/health/live", headers={"X-Request-ID": "bad id with spaces"})
    assert re.fullmatch(r"[0-9a-f]{32}", generated.headers["x-request-id"])


def test_unexpected_errors_are_generic_500s_with_a_request_id(client, monkeypatch, caplog):
    def broken(self):
        raise RuntimeError("secret internal detail")

    monkeypatch.setattr(CorpusRegistry, "list_all", broken)
    with caplog.at_level("ERROR"):
        response = client.get("/v1/corpora", headers={"X-Request-ID": "req-42"})
    assert response.status_code == 500
    error = response.json()["error"]
    assert error["code"] == "internal_error" and "req-42" in error["message"]
    assert "secret internal detail" not in response.text and "Traceback" not in response.text
    assert "secret internal detail" in caplog.text  # the traceback goes to the log
    assert 'route="/v1/corpora",status="500"' in client.get("/metrics").text


def test_openapi_documents_every_route(client):
    spec = client.get("/openapi.json").json()
    expected = {
        ("/v1/embeddings", "post"), ("/v1/match", "post"), ("/v1/corpora/{name}/search", "post"),
        ("/v1/corpora", "post"), ("/v1/corpora", "get"), ("/v1/corpora/{name}", "get"),
        ("/v1/corpora/{name}", "patch"), ("/v1/corpora/{name}", "delete"),
        ("/v1/corpora/{name}/entries/{entry_id}", "put"), ("/v1/corpora/{name}/entries/{entry_id}", "get"),
        ("/v1/corpora/{name}/entries/{entry_id}", "delete"), ("/v1/corpora/{name}/entries", "post"),
        ("/v1/corpora/{name}/entries", "get"), ("/v1/corpora/{name}/import", "post"),
        ("/v1/corpora/{name}/export", "get"), ("/health/live", "get"), ("/health/ready", "get"),
        ("/metrics", "get"), ("/v1/info", "get"),
    }
    documented = {(path, method) for path, ops in spec["paths"].items() for method in ops}
    assert expected <= documented
    for path, method in expected:
        operation = spec["paths"][path][method]
        assert operation.get("description"), f"{method} {path} has no description"
        if path.startswith("/v1/") and path != "/v1/info":
            assert "422" in operation["responses"], f"{method} {path} documents no 422"
    assert {"AdminBearer", "AdminApiKey", "QueryBearer", "QueryApiKey"} <= set(spec["components"]["securitySchemes"])
    assert "application/x-ndjson" in spec["paths"]["/v1/corpora/{name}/import"]["post"]["requestBody"]["content"]


@pytest.mark.parametrize("path", ["/docs", "/openapi.json"])
def test_docs_are_served(client, path):
    assert client.get(path).status_code == 200


def test_start_up_refuses_a_batch_budget_below_the_model_length(make_settings):
    app = create_app(make_settings(batching={"max_batch_tokens": 32}))  # the tiny model reads 64 tokens
    with pytest.raises(Exception, match="FLIPMATCH_BATCHING__MAX_BATCH_TOKENS=32 is below the model's max "
                                        "sequence length \\(64\\)"):
        with TestClient(app):
            pass


def test_start_up_refuses_a_model_that_fails_its_probes(make_settings, tiny_artifact, tmp_path):
    import json
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(tiny_artifact, broken)
    card = json.loads((broken / "flipmatch.json").read_text())
    card["probes"][1]["vector"] = [0.0] * 31 + [1.0]
    (broken / "flipmatch.json").write_text(json.dumps(card))
    with pytest.raises(Exception, match="probes do not match"):
        with TestClient(create_app(make_settings(model_path=str(broken)))):
            pass
