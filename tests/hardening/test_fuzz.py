"""Schema fuzzing: schemathesis generates requests (valid and invalid) for every operation of the service's own
OpenAPI document and sends them to the app in-process (tiny artifact, admin and query keys configured). Every
response must be < 500 and conform to the schema (status code, content type, headers, body). Each case goes out
with no key, the query key or the admin key in turn, so the auth paths are fuzzed too. At least 1,000 requests.
"""

from __future__ import annotations

import collections
import itertools
import json
import os
import time

import pytest

schemathesis = pytest.importorskip("schemathesis")
from fastapi.testclient import TestClient  # noqa: E402
from hypothesis import HealthCheck, Phase, given, settings  # noqa: E402
from hypothesis.errors import Unsatisfiable  # noqa: E402
from live_server import record_figures  # noqa: E402
from schemathesis import GenerationMode, checks  # noqa: E402

from service.app import create_app  # noqa: E402

ADMIN, QUERY = "fuzz-admin-key-0123456789", "fuzz-query-key-0123456789"
EXAMPLES_PER_OPERATION = int(os.environ.get("FLIPMATCH_FUZZ_EXAMPLES", "40"))  # x modes x operations >= 1000
MIN_REQUESTS = 1000
CHECKS = [checks.not_a_server_error, checks.status_code_conformance, checks.content_type_conformance,
          checks.response_headers_conformance, checks.response_schema_conformance]


def _ready(client: TestClient, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while client.get("/health/ready").status_code != 200:
        assert time.monotonic() < deadline, "app not ready"
        time.sleep(0.02)  # poll interval, bounded by the deadline


def _body(kwargs: dict) -> bytes | None:
    """The body schemathesis serialized (requests-style kwargs) as raw bytes for httpx."""
    if "json" in kwargs:
        return json.dumps(kwargs["json"]).encode()
    data = kwargs.get("data")
    if data is None:
        return None
    return data if isinstance(data, bytes) else str(data).encode()


def _fuzz(operation, mode, send) -> None:
    turn = itertools.count()

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(max_examples=EXAMPLES_PER_OPERATION, deadline=None, derandomize=True, database=None,
              phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))
    def run(case):
        # Every other case targets the existing corpus, so the deeper code paths are reached too (random names
        # mostly answer 404). Deleting that corpus stays random.
        deletes_corpus = operation.method.upper() == "DELETE" and operation.path == "/v1/corpora/{name}"
        if "name" in (case.path_parameters or {}) and next(turn) % 2 == 0 and not deletes_corpus:
            case.path_parameters["name"] = "faq"
        send(case, operation.label)

    try:
        run()
    except Unsatisfiable:
        # Nothing to make invalid (no parameters, no body): only positive cases exist for this operation.
        assert mode == GenerationMode.NEGATIVE, operation.label


def test_fuzz_every_operation(make_settings, store_settings):
    # store_settings: once with the SQLite default, once with a PostgreSQL store (tests/conftest.py).
    app = create_app(make_settings(dev_mode=False, auth={"admin_key": ADMIN, "query_key": QUERY},
                                   limits={"max_texts": 8, "max_corpora": 20}, batching={"max_queue": 64},
                                   **store_settings))
    schema = schemathesis.openapi.from_dict(app.openapi())
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 15
    keys = itertools.cycle([None, QUERY, ADMIN])
    statuses: collections.Counter[int] = collections.Counter()
    per_operation: collections.Counter[str] = collections.Counter()
    with TestClient(app, raise_server_exceptions=False, base_url="http://testserver") as client:
        _ready(client)
        auth = {"Authorization": f"Bearer {ADMIN}"}
        assert client.post("/v1/corpora", json={"name": "faq"}, headers=auth).status_code == 201
        assert client.post("/v1/corpora/faq/entries", headers=auth, json=[
            {"id": "pin", "question": "How do I reset my PIN?", "alt_questions": ["forgot pin"], "answer": "App."},
            {"id": "card", "question": "Where is my card?", "answer": "Mail."}]).status_code == 200

        def send(case, label: str) -> None:
            key = next(keys)
            headers = {"Authorization": f"Bearer {key}"} if key else {}
            kwargs = case.as_transport_kwargs(base_url="http://testserver", headers=headers)
            sent = dict(kwargs.pop("headers", None) or {})
            if "json" in kwargs and not any(k.lower() == "content-type" for k in sent):
                sent["Content-Type"] = "application/json"
            response = client.request(kwargs.pop("method"), kwargs.pop("url"), headers=sent,
                                      params=kwargs.pop("params", None), content=_body(kwargs),
                                      cookies=kwargs.pop("cookies", None))
            statuses[response.status_code] += 1
            per_operation[label] += 1
            case.validate_response(response, checks=CHECKS)

        for operation in operations:
            for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
                _fuzz(operation, mode, send)
    total = sum(statuses.values())
    record_figures("fuzz.json", "fuzz", {"requests": total, "operations": len(operations),
                                         "statuses": dict(sorted(statuses.items())),
                                         "per_operation": dict(per_operation)})
    assert total >= MIN_REQUESTS, f"only {total} requests"
    assert all(status < 500 for status in statuses)
    assert len(per_operation) == len(operations)
