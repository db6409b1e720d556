"""Access control and request hygiene, in-process on the tiny artifact: every write route needs the admin scope
(found by walking the app's routes, so a new route cannot slip through), keys compared with hmac.compare_digest,
keys from a secret file, the query scope optional, CORS as configured, the body limit (declared and streamed),
corpus names that could escape the data folder refused with 4xx and nothing written outside it, and settings
errors that do not echo key values."""

from __future__ import annotations

import contextlib
import hmac
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from fastapi.testclient import TestClient

from service.app import create_app

ADMIN, QUERY = "access-admin-key-7c1e", "access-query-key-93ab"
QUERY_POSTS = {"/v1/embeddings", "/v1/match", "/v1/corpora/{name}/search"}  # POST, but reads
OPEN = {"/health/live", "/health/ready", "/metrics", "/v1/info"}
REPO = Path(__file__).resolve().parents[2]


@contextlib.contextmanager
def running(make_settings, **overrides) -> Iterator[TestClient]:
    app = create_app(make_settings(**overrides))
    with TestClient(app, raise_server_exceptions=False) as client:
        deadline = time.monotonic() + 60
        while client.get("/health/ready").status_code != 200:
            assert time.monotonic() < deadline, "app not ready"
            time.sleep(0.02)  # poll interval, bounded by the deadline
        yield client


def routes(client: TestClient) -> list[tuple[str, str]]:
    """Every (METHOD, path template) of the OpenAPI document: the routes users can call."""
    paths = client.get("/openapi.json").json()["paths"]
    return [(method.upper(), path) for path, ops in paths.items() for method in ops]


def concrete(path: str) -> str:
    return path.replace("{name}", "faq").replace("{entry_id}", "e1")


def test_every_write_route_needs_the_admin_scope(make_settings):
    auth = {"admin_key": ADMIN, "query_key": QUERY}
    with running(make_settings, dev_mode=False, auth=auth) as client:
        admin = {"Authorization": f"Bearer {ADMIN}"}
        assert client.post("/v1/corpora", json={"name": "faq"}, headers=admin).status_code == 201
        writes = [(m, p) for m, p in routes(client) if m in {"POST", "PUT", "PATCH", "DELETE"} and p not in QUERY_POSTS]
        assert len(writes) >= 7, writes
        assert ("POST", "/v1/corpora/{name}/calibrate") in writes  # calibration changes the thresholds
        for method, path in writes:
            url = concrete(path)
            for headers, expected in [({}, 401), ({"Authorization": "Bearer wrong"}, 401),
                                      ({"X-API-Key": ADMIN[:-1]}, 401), ({"Authorization": f"Bearer {QUERY}"}, 403),
                                      ({"X-API-Key": QUERY}, 403)]:
                response = client.request(method, url, headers=headers, json={})
                assert response.status_code == expected, (method, path, headers, response.text)
        # Nothing was changed by the refused calls.
        assert [c["name"] for c in client.get("/v1/corpora", headers=admin).json()["data"]] == ["faq"]
        # Reads: the query key (or the admin key) is needed once a query key is configured; open routes stay open.
        for method, path in routes(client):
            if (method, path) in writes:
                continue
            url = concrete(path)
            if path in OPEN:
                assert client.request(method, url).status_code not in (401, 403), path
                continue
            assert client.request(method, url, json={}).status_code == 401, path
            for key in (QUERY, ADMIN):
                status = client.request(method, url, json={}, headers={"X-API-Key": key}).status_code
                assert status not in (401, 403), (path, status)


def test_keys_are_compared_in_constant_time(make_settings, monkeypatch):
    from service.api import deps

    compared: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        compared.append((a, b))
        return real(a, b)

    monkeypatch.setattr(deps.hmac, "compare_digest", spy)
    with running(make_settings, dev_mode=False, auth={"admin_key": ADMIN}) as client:
        assert client.post("/v1/corpora", json={"name": "x"}, headers={"X-API-Key": "guess"}).status_code == 401
        assert client.post("/v1/corpora", json={"name": "x"}, headers={"X-API-Key": ADMIN}).status_code == 201
    assert (b"guess", ADMIN.encode()) in compared and (ADMIN.encode(), ADMIN.encode()) in compared


def test_keys_from_a_secret_file_and_the_query_scope_is_optional(make_settings, tmp_path):
    secret = tmp_path / "admin.key"
    secret.write_text(f"  {ADMIN}\n")
    with running(make_settings, dev_mode=False, auth={"admin_key_file": secret}) as client:
        assert client.post("/v1/corpora", json={"name": "faq"}, headers={"X-API-Key": ADMIN}).status_code == 201
        assert client.post("/v1/corpora", json={"name": "b"}).status_code == 401
        # No query key configured: query routes are open.
        assert client.get("/v1/corpora").status_code == 200
        assert client.post("/v1/embeddings", json={"input": "hello"}).status_code == 200
        assert client.post("/v1/corpora/faq/search", json={"query": "hello"}).status_code == 200


def test_cors_is_configurable(make_settings):
    preflight = {"Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "content-type"}
    with running(make_settings, cors_origins=["https://faq.example"]) as client:
        allowed = client.options("/v1/embeddings", headers={"Origin": "https://faq.example", **preflight})
        assert allowed.headers.get("access-control-allow-origin") == "https://faq.example"
        other = client.options("/v1/embeddings", headers={"Origin": "https://evil.example", **preflight})
        assert "access-control-allow-origin" not in other.headers
        simple = client.post("/v1/embeddings", json={"input": "hi"}, headers={"Origin": "https://faq.example"})
        assert simple.headers.get("access-control-allow-origin") == "https://faq.example"
    with running(make_settings) as client:  # default: no CORS headers at all
        response = client.post("/v1/embeddings", json={"input": "hi"}, headers={"Origin": "https://faq.example"})
        assert "access-control-allow-origin" not in response.headers


def test_request_body_limit_declared_and_streamed(make_settings):
    with running(make_settings, limits={"max_body_bytes": 2048}) as client:
        body = b'{"input": "' + b"a " * 2000 + b'"}'
        declared = client.post("/v1/embeddings", content=body, headers={"Content-Type": "application/json"})
        assert declared.status_code == 413 and declared.json()["error"]["code"] == "body_too_large"

        def chunks() -> Iterator[bytes]:  # no Content-Length: chunked transfer
            yield b'{"input": "'
            for _ in range(100):
                yield b"a " * 50
            yield b'"}'

        streamed = client.post("/v1/embeddings", content=chunks(), headers={"Content-Type": "application/json"})
        assert streamed.status_code == 413
        assert client.post("/v1/embeddings", json={"input": "small"}).status_code == 200


TRAVERSAL = ["..", ".", "%2e%2e", "%2E%2E", "..%2f..%2fetc", "a/b", "a%2fb", "..%5c..", "a\\b", "faq/../x",
             ".hidden", "A", "x" * 65, "%00", "a%00b", "con.faiss", "~root", " faq"]


def snapshot(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


def test_corpus_names_cannot_escape_the_data_folder(make_settings, tmp_path):
    data_dir = tmp_path / "data"
    with running(make_settings, data_dir=data_dir) as client:
        outside_before = snapshot(tmp_path) - {p for p in snapshot(tmp_path) if p.startswith("data")}
        inside_before = snapshot(data_dir)
        for name in TRAVERSAL:
            created = client.post("/v1/corpora", json={"name": name})
            assert 400 <= created.status_code < 500, (name, created.status_code)
            if name in (".", ".."):
                continue  # in a URL path the client resolves these dot segments itself (RFC 3986); %2e%2e is sent
            for method, path, body in [("GET", f"/v1/corpora/{name}", None),
                                       ("DELETE", f"/v1/corpora/{name}", None),
                                       ("PATCH", f"/v1/corpora/{name}", {"description": "x"}),
                                       ("POST", f"/v1/corpora/{name}/entries", [{"id": "a", "question": "q"}]),
                                       ("PUT", f"/v1/corpora/{name}/entries/a", {"question": "q"}),
                                       ("POST", f"/v1/corpora/{name}/search", {"query": "q"}),
                                       ("GET", f"/v1/corpora/{name}/export", None)]:
                response = client.request(method, path, json=body)
                assert 400 <= response.status_code < 500, (method, path, response.status_code)
        assert client.get("/v1/corpora").json()["data"] == []
        outside_after = snapshot(tmp_path) - {p for p in snapshot(tmp_path) if p.startswith("data")}
        assert outside_after == outside_before
        assert snapshot(data_dir) - inside_before <= {"flipmatch.sqlite3-journal"}


def test_settings_errors_do_not_echo_keys(tmp_path):
    key = "leak-canary-0f9e8d7c6b5a"
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLIPMATCH_")}
    env.update({"FLIPMATCH_AUTH__ADMIN_KEY": key, "FLIPMATCH_AUTH__ADMIN_KEY_FILE": str(tmp_path / "k"),
                "FLIPMATCH_DATA_DIR": str(tmp_path / "data"),
                "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))})
    result = subprocess.run([sys.executable, "-m", "service"], cwd=REPO, env=env, capture_output=True, timeout=120)
    output = (result.stdout + result.stderr).decode()
    assert result.returncode != 0 and "not both" in output, output
    assert key not in output and key[:8] not in output, output
