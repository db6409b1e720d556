"""API keys: admin scope for writes, optional query key, dev mode, key files, constant-time checks."""

from __future__ import annotations

import pytest

ADMIN = "admin-key-for-tests"
QUERY = "query-key-for-tests"

WRITE = ("post", "/v1/corpora", {"json": {"name": "faq"}})
QUERY_ROUTE = ("post", "/v1/embeddings", {"json": {"input": "hello"}})


def call(client, route, headers=None):
    method, path, kwargs = route
    return getattr(client, method)(path, headers=headers or {}, **kwargs)


def test_writes_need_the_admin_key(api):
    with api(dev_mode=False, auth={"admin_key": ADMIN}) as client:
        missing = call(client, WRITE)
        wrong = call(client, WRITE, {"Authorization": "Bearer nope"})
        bearer = call(client, WRITE, {"Authorization": f"Bearer {ADMIN}"})
        header = client.delete("/v1/corpora/faq", headers={"X-API-Key": ADMIN})
        reads = client.get("/v1/corpora")  # no query key configured: reads are open
    assert missing.status_code == 401 and missing.json()["error"]["code"] == "missing_api_key"
    assert wrong.status_code == 401 and wrong.json()["error"]["code"] == "invalid_api_key"
    assert bearer.status_code == 201 and header.status_code == 204 and reads.status_code == 200


def test_query_key_has_query_scope_only(api):
    with api(dev_mode=False, auth={"admin_key": ADMIN, "query_key": QUERY}) as client:
        anonymous = call(client, QUERY_ROUTE)
        with_query_key = call(client, QUERY_ROUTE, {"X-API-Key": QUERY})
        with_admin_key = call(client, QUERY_ROUTE, {"Authorization": f"Bearer {ADMIN}"})
        write_with_query_key = call(client, WRITE, {"X-API-Key": QUERY})
        list_anonymous = client.get("/v1/corpora")
        health = client.get("/health/ready")
    assert anonymous.status_code == 401 and list_anonymous.status_code == 401
    assert with_query_key.status_code == with_admin_key.status_code == 200
    assert write_with_query_key.status_code == 403
    assert write_with_query_key.json()["error"]["code"] == "insufficient_scope"
    assert health.status_code == 200  # operations routes stay open for probes


def test_without_an_admin_key_writes_are_refused_outside_dev_mode(api):
    with api(dev_mode=False) as client:
        refused = call(client, WRITE)
        assert call(client, QUERY_ROUTE).status_code == 200
    assert refused.status_code == 403
    message = refused.json()["error"]["message"]
    assert "FLIPMATCH_AUTH__ADMIN_KEY" in message and "FLIPMATCH_DEV_MODE=true" in message


def test_dev_mode_opens_writes_when_no_key_is_set(api):
    with api(dev_mode=True) as client:
        assert call(client, WRITE).status_code == 201


def test_keys_from_files(api, tmp_path):
    (tmp_path / "admin").write_text(ADMIN + "\n")
    (tmp_path / "query").write_text(QUERY)
    with api(dev_mode=False, auth={"admin_key_file": tmp_path / "admin", "query_key_file": tmp_path / "query"}) as c:
        assert call(c, WRITE, {"X-API-Key": ADMIN}).status_code == 201
        assert call(c, QUERY_ROUTE, {"X-API-Key": QUERY}).status_code == 200
        assert call(c, QUERY_ROUTE).status_code == 401


@pytest.mark.parametrize("header", [{"Authorization": "Basic abc"}, {"Authorization": "Bearer"},
                                    {"X-API-Key": ""}])
def test_malformed_credentials_are_401_not_500(api, header):
    with api(dev_mode=False, auth={"admin_key": ADMIN}) as client:
        assert call(client, WRITE, header).status_code in (401, 403)


def test_keys_never_reach_the_log(api, caplog):
    with caplog.at_level("DEBUG"), api(dev_mode=False, auth={"admin_key": ADMIN, "query_key": QUERY}) as client:
        call(client, WRITE, {"Authorization": f"Bearer {ADMIN}"})
        call(client, WRITE, {"Authorization": "Bearer wrong-key"})
    assert ADMIN not in caplog.text and QUERY not in caplog.text and "wrong-key" not in caplog.text
