"""Two real service processes on one real PostgreSQL database (a throwaway cluster, tests/fixtures/postgres.py):
writes on one replica become searchable on the other; deletes and corpus settings propagate; a replica SIGKILLed
during a bulk upsert loses nothing it acknowledged; a PostgreSQL outage leaves searches answering on both, turns
writes into fast 503s with Retry-After, and loses no acknowledged write. Loopback only, bounded polling."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.fixtures.server import ADMIN_KEY, ServiceProcess
from tests.hardening.live_server import call

pytestmark = [pytest.mark.integration, pytest.mark.serial]

CONVERGE_S = 2.0  # the bound: a write on A is searchable on B within 2 s


class Pair:
    def __init__(self, a: ServiceProcess, b: ServiceProcess) -> None:
        self.a, self.b = a, b

    @property
    def urls(self) -> tuple[str, str]:
        return self.a.url, self.b.url


def replica(tiny_artifact, tmp_path, name: str, url: str) -> ServiceProcess:
    return ServiceProcess(tiny_artifact, tmp_path / f"data-{name}", tmp_path / f"{name}.log",
                          FLIPMATCH_STORE__URL=url, FLIPMATCH_STORE__CATCHUP_INTERVAL_S="0.5",
                          FLIPMATCH_STORE__CONNECT_TIMEOUT_S="1")


@pytest.fixture(scope="module")
def pair(tiny_artifact, postgres_cluster, tmp_path_factory) -> Iterator[Pair]:
    """Replicas A and B on one database, shared by the tests of this module (each uses its own corpora)."""
    url = postgres_cluster.create_database()
    tmp = tmp_path_factory.mktemp("replicas")
    a, b = replica(tiny_artifact, tmp, "a", url), replica(tiny_artifact, tmp, "b", url)
    try:
        a.start(timeout=240)
        b.start(timeout=240)
        yield Pair(a, b)
    finally:
        a.stop()
        b.stop()


def until(check: Callable[[], Any], *, timeout: float, what: str) -> Any:
    """Poll `check` until it returns something truthy; fail with `what` at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, f"{what}: not within {timeout}s"
        time.sleep(0.01)  # poll interval, bounded by the deadline


def top_id(url: str, corpus: str, query: str) -> str | None:
    status, body = call("POST", f"{url}/v1/corpora/{corpus}/search", {"query": query, "top_k": 1}, timeout=10)
    if status != 200:
        return None
    candidates = body["results"][0]["candidates"]
    return candidates[0]["id"] if candidates and candidates[0]["score"] > 0.999 else None


def entry(i: int) -> dict[str, Any]:
    return {"id": f"e{i}", "question": f"question number {i}: how do I change limit {i * 7}?",
            "alt_questions": [f"limit {i} phrased another way {i * 13}"], "answer": f"answer {i}"}


def fields(i: int) -> dict[str, Any]:
    """The PUT body: the entry without its id (the path names it)."""
    return {k: v for k, v in entry(i).items() if k != "id"}


def create(url: str, name: str) -> None:
    status, body = call("POST", f"{url}/v1/corpora", {"name": name, "clarify_margin": 0.0})
    assert status == 201, body


def corpus_on(url: str, name: str) -> dict[str, Any] | None:
    status, body = call("GET", f"{url}/v1/corpora/{name}", timeout=10)
    return body if status == 200 else None


def test_a_write_on_one_replica_is_searchable_on_the_other_within_2s(pair):
    a, b = pair.urls
    create(a, "converge")
    until(lambda: corpus_on(b, "converge"), timeout=CONVERGE_S, what="corpus created on A visible on B")
    for i, (writer, reader) in enumerate([(a, b), (b, a), (a, b)]):
        e = entry(i)
        status, body = call("PUT", f"{writer}/v1/corpora/converge/entries/{e['id']}", fields(i))
        assert status == 200, body
        acknowledged = time.monotonic()
        until(lambda e=e, reader=reader: top_id(reader, "converge", e["question"]) == e["id"],
              timeout=CONVERGE_S, what=f"{e['id']} written on {writer} searchable on {reader}")
        assert time.monotonic() - acknowledged < CONVERGE_S
    # Both replicas report the same applied sequence once caught up, and export it for Prometheus.
    def caught_up() -> bool:
        stores = [call("GET", f"{u}/health/ready", key=None)[1]["store"] for u in (a, b)]
        return all(s["lag_changes"] == 0 and s["reachable"] for s in stores) and \
            stores[0]["applied_sequence"] == stores[1]["applied_sequence"] >= 4
    until(caught_up, timeout=10, what="both replicas caught up")
    status, metrics = 0, ""
    import urllib.request

    with urllib.request.urlopen(f"{b}/metrics", timeout=10) as response:
        status, metrics = response.status, response.read().decode()
    assert status == 200 and "flipmatch_store_applied_sequence" in metrics
    assert "flipmatch_store_lag_seconds 0.0" in metrics and "flipmatch_store_reachable 1.0" in metrics
    assert "flipmatch_store_apply_delay_seconds_count" in metrics


def test_deletes_and_corpus_settings_propagate(pair):
    a, b = pair.urls
    create(a, "settings")
    until(lambda: corpus_on(b, "settings"), timeout=CONVERGE_S, what="corpus on B")
    assert call("POST", f"{a}/v1/corpora/settings/entries", [entry(1), entry(2)])[0] == 200
    until(lambda: (corpus_on(b, "settings") or {}).get("entries") == 2, timeout=CONVERGE_S, what="entries on B")

    status, body = call("PATCH", f"{a}/v1/corpora/settings", {"answer_threshold": 0.93, "description": "shared"})
    assert status == 200, body
    until(lambda: (corpus_on(b, "settings") or {}).get("answer_threshold") == 0.93, timeout=CONVERGE_S,
          what="settings on B")
    assert corpus_on(b, "settings")["description"] == "shared"

    assert call("DELETE", f"{b}/v1/corpora/settings/entries/e1")[0] == 204
    until(lambda: top_id(a, "settings", entry(1)["question"]) is None, timeout=CONVERGE_S, what="delete on A")
    assert (corpus_on(a, "settings")["entries"], corpus_on(a, "settings")["vectors"]) == (1, 2)
    assert top_id(a, "settings", entry(2)["question"]) == "e2"

    assert call("DELETE", f"{a}/v1/corpora/settings")[0] == 204
    until(lambda: corpus_on(b, "settings") is None, timeout=CONVERGE_S, what="corpus deleted on B")
    create(b, "settings")  # the same name again, new corpus: A must not keep the old one's entries
    until(lambda: (corpus_on(a, "settings") or {}).get("entries") == 0, timeout=CONVERGE_S,
          what="recreated corpus on A")
    assert corpus_on(a, "settings")["answer_threshold"] != 0.93


class BulkWriter(threading.Thread):
    """POSTs batches of `size` new entries until stopped or failing; records every acknowledged id."""

    def __init__(self, url: str, corpus: str, *, size: int = 20, limit: int = 2000) -> None:
        super().__init__(daemon=True)
        self.url, self.corpus, self.size, self.limit = url, corpus, size, limit
        self.acked: list[int] = []
        self.in_flight: list[int] = []
        self.failures: list[tuple[int, Any]] = []
        self.stop_at = time.monotonic() + 120

    def run(self) -> None:
        next_id = 0
        while next_id < self.limit and time.monotonic() < self.stop_at:
            batch = list(range(next_id, next_id + self.size))
            self.in_flight = batch
            try:
                status, body = call("POST", f"{self.url}/v1/corpora/{self.corpus}/entries",
                                    [entry(i) for i in batch], timeout=15)
            except OSError:
                return  # the server died mid-request: this batch was never acknowledged
            if status != 200:
                self.failures.append((status, body))
                return
            self.acked.extend(batch)
            self.in_flight = []
            next_id += self.size


def searchable(url: str, corpus: str, ids: list[int]) -> set[int]:
    """Which of `ids` the replica's snapshot finds by their own question."""
    found = set()
    for start in range(0, len(ids), 64):
        chunk = ids[start : start + 64]
        status, body = call("POST", f"{url}/v1/corpora/{corpus}/search",
                            {"query": [entry(i)["question"] for i in chunk], "top_k": 1}, timeout=30)
        assert status == 200, body
        for i, result in zip(chunk, body["results"], strict=True):
            top = result["candidates"][:1]
            if top and top[0]["id"] == f"e{i}" and top[0]["score"] > 0.999:
                found.add(i)
    return found


def test_sigkill_during_a_bulk_upsert_loses_nothing_acknowledged(pair):
    a, b = pair.urls
    create(a, "bulk")
    until(lambda: corpus_on(b, "bulk"), timeout=CONVERGE_S, what="corpus on B")
    writer = BulkWriter(a, "bulk")
    writer.start()
    until(lambda: len(writer.acked) >= 100 or writer.failures, timeout=120, what="100 acknowledged writes")
    pair.a.kill()
    writer.join(timeout=30)
    assert not writer.failures, writer.failures
    acked, maybe = sorted(writer.acked), set(writer.in_flight)
    # B converges on every acknowledged entry (the last batch may or may not have committed: whole or absent).
    until(lambda: (corpus_on(b, "bulk") or {}).get("entries", 0) >= len(acked), timeout=10, what="B caught up")
    assert searchable(b, "bulk", acked) == set(acked)
    count = corpus_on(b, "bulk")["entries"]
    assert count in (len(acked), len(acked) + len(maybe)), (count, len(acked), len(maybe))
    pair.a.start(timeout=240)  # A restarts on the same database and serves the same corpus
    assert corpus_on(pair.a.url, "bulk")["entries"] == count


def test_a_postgres_outage_keeps_searches_up_and_fails_writes_fast(pair, postgres_cluster):
    a, b = pair.urls
    create(a, "outage")
    assert call("POST", f"{a}/v1/corpora/outage/entries", [entry(i) for i in range(5)])[0] == 200
    until(lambda: (corpus_on(b, "outage") or {}).get("entries") == 5, timeout=CONVERGE_S, what="entries on B")
    acked = set(range(5))
    postgres_cluster.stop()
    try:
        for url in (a, b):
            assert top_id(url, "outage", entry(3)["question"]) == "e3"  # searches serve from memory
            started = time.monotonic()
            status, body = call("PUT", f"{url}/v1/corpora/outage/entries/e100", fields(100), timeout=15)
            elapsed = time.monotonic() - started
            assert status == 503 and body["error"]["code"] == "store_unavailable", (status, body)
            assert elapsed < 5, f"a write took {elapsed:.1f}s to fail"
            status, _ = call("GET", f"{url}/health/ready", key=None)
            assert status == 200  # still ready: it answers searches
        until(lambda: all(not call("GET", f"{u}/health/ready", key=None)[1]["store"]["reachable"] for u in (a, b)),
              timeout=10, what="both replicas report the database unreachable")
        retry_after = _retry_after(a)
        assert retry_after is not None and int(retry_after) > 0
    finally:
        postgres_cluster.start()
    # Writes succeed again (the first tries may still find the connection being re-established).
    def write(url: str, i: int) -> bool:
        return call("PUT", f"{url}/v1/corpora/outage/entries/e{i}", fields(i), timeout=15)[0] == 200

    until(lambda: write(a, 100), timeout=30, what="writes on A after the restart")
    until(lambda: write(b, 101), timeout=30, what="writes on B after the restart")
    acked |= {100, 101}
    for url in (a, b):  # nothing acknowledged is lost, on either replica
        until(lambda url=url: searchable(url, "outage", sorted(acked)) == acked, timeout=10,
              what=f"every acknowledged write on {url}")
        assert corpus_on(url, "outage")["entries"] == len(acked)


def _retry_after(url: str) -> str | None:
    import json
    import urllib.error
    import urllib.request

    headers = {"Authorization": f"Bearer {ADMIN_KEY}", "Content-Type": "application/json"}
    request = urllib.request.Request(f"{url}/v1/corpora/outage/entries/e100", method="PUT",
                                     data=json.dumps(fields(100)).encode(), headers=headers)
    try:
        urllib.request.urlopen(request, timeout=15)
    except urllib.error.HTTPError as err:
        return err.headers.get("Retry-After") if err.code == 503 else None
    return None
