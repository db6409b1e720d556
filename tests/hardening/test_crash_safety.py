"""Crash safety on the real server: SIGKILL during a stream of acknowledged upserts, and during an index save (at
two points: half-written temporary file; index renamed but manifest not yet written). After a restart every
acknowledged entry is there and searchable, an unacknowledged one is either whole or absent, and the index holds
exactly the entries' vectors."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest
from live_server import LiveServer, call, record_figures

pytestmark = pytest.mark.integration

LAUNCHER = Path(__file__).with_name("paused_save_server.py")
MAX_WRITES = 400


def entry(i: int) -> dict[str, Any]:
    return {"question": f"entry {i}: how do I change setting {i} on account {i * 7}?",
            "alt_questions": [f"setting {i} alternative phrasing {i * 13}"], "answer": f"answer {i}"}


class Writer(threading.Thread):
    """Sequential single-entry PUTs e0, e1, ...; records each acknowledged id, stops at the first failure
    (the server died), after MAX_WRITES or at its deadline."""

    def __init__(self, url: str, *, start_at: int = 0, deadline_s: float = 60.0) -> None:
        super().__init__(daemon=True)
        self.url, self.next, self.deadline = url, start_at, time.monotonic() + deadline_s
        self.acked: list[int] = []
        self.in_flight: int | None = None
        self.errors: list[str] = []

    def run(self) -> None:
        while self.next < MAX_WRITES and time.monotonic() < self.deadline:
            self.in_flight = self.next
            try:
                status, body = call("PUT", f"{self.url}/v1/corpora/faq/entries/e{self.next}", entry(self.next),
                                    timeout=10)
            except OSError:
                return  # killed mid-request: e{in_flight} was never acknowledged
            if status != 200:
                self.errors.append(f"e{self.next}: {status} {body}")
                return
            self.acked.append(self.next)
            self.in_flight = None
            self.next += 1

    def wait_for(self, count: int, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while len(self.acked) < count:
            assert not self.errors, self.errors
            assert self.is_alive() and time.monotonic() < deadline, f"only {len(self.acked)} writes acknowledged"
            time.sleep(0.01)  # poll interval, bounded by the deadline


def check_consistent(url: str, acked: set[int], maybe: set[int]) -> dict[str, int]:
    """Every acknowledged entry present and whole; others in `maybe` whole or absent; index == entries."""
    status, page = call("GET", f"{url}/v1/corpora/faq/entries?limit=1000")
    assert status == 200, page
    stored = {e["id"]: e for e in page["data"]}
    ids = {int(i[1:]) for i in stored}
    assert acked <= ids, f"lost acknowledged entries: {sorted(acked - ids)[:10]}"
    assert ids - acked <= maybe, f"entries nobody wrote: {sorted(ids - acked - maybe)}"
    for i in ids:  # whole: every field as written
        expected = entry(i)
        got = stored[f"e{i}"]
        assert (got["question"], got["alt_questions"], got["answer"]) == (
            expected["question"], expected["alt_questions"], expected["answer"]), got
    status, corpus = call("GET", f"{url}/v1/corpora/faq")
    assert status == 200 and corpus["status"] == "ready", corpus
    assert corpus["entries"] == len(ids) == page["count"]
    assert corpus["vectors"] == 2 * len(ids)  # question + one alternate each: no orphan, no missing vector
    # Every text finds its own entry (the index holds it), and absent entries are found by none of theirs.
    texts = [(i, t) for i in sorted(ids | maybe) for t in [entry(i)["question"], *entry(i)["alt_questions"]]]
    for start in range(0, len(texts), 64):
        chunk = texts[start : start + 64]
        status, body = call("POST", f"{url}/v1/corpora/faq/search", {"query": [t for _, t in chunk], "top_k": 3})
        assert status == 200, body
        for (i, text), result in zip(chunk, body["results"], strict=True):
            found = {c["id"]: c["score"] for c in result["candidates"]}
            if i in ids:
                assert found.get(f"e{i}", 0) > 0.999, (text, result)
            else:
                assert f"e{i}" not in found, (text, result)
    return {"entries": len(ids), "acknowledged": len(acked)}


def test_sigkill_during_a_stream_of_upserts(tiny_artifact, tmp_path, store_settings):
    data_dir, log = tmp_path / "data", tmp_path / "server.log"
    # Once with the SQLite default, once with a PostgreSQL store (tests/conftest.py's store_settings).
    url_setting = store_settings.get("store", {}).get("url")
    server = LiveServer(tiny_artifact, data_dir, log, FLIPMATCH_STORE__URL=url_setting)
    try:
        url = server.start()
        assert call("POST", f"{url}/v1/corpora", {"name": "faq"})[0] == 201
        writer = Writer(url)
        writer.start()
        writer.wait_for(60)
        server.kill()
        writer.join(timeout=30)
        assert not writer.errors, writer.errors
        maybe = {writer.in_flight} if writer.in_flight is not None else set()
        url = server.start()  # same data folder
        figures = check_consistent(url, set(writer.acked), maybe)
        # The restarted server takes writes again and they are searchable.
        resumed = Writer(url, start_at=MAX_WRITES - 5)
        resumed.run()
        assert len(resumed.acked) == 5 and not resumed.errors
        check_consistent(url, set(writer.acked) | set(resumed.acked), maybe)
        record_figures("crash.json", "sigkill_during_upserts" + ("_postgres" if url_setting else ""),
                       {**figures, "in_flight_at_kill": len(maybe)})
    finally:
        server.stop()


@pytest.mark.parametrize("point", ["mid-index", "after-index"])
def test_sigkill_during_an_index_save(tiny_artifact, tmp_path, point):
    data_dir, log, marker = tmp_path / "data", tmp_path / "server.log", tmp_path / "paused"
    # Saves 1-5 complete; the 6th .faiss save pauses at `point` (writes keep being acknowledged meanwhile).
    paused = LiveServer(tiny_artifact, data_dir, log, launcher=LAUNCHER, FLIPMATCH_TEST_PAUSE_SAVE=point,
                        FLIPMATCH_TEST_PAUSE_SAVE_AT="6", FLIPMATCH_TEST_PAUSE_MARKER=str(marker))
    try:
        url = paused.start()
        assert call("POST", f"{url}/v1/corpora", {"name": "faq"})[0] == 201
        writer = Writer(url)
        writer.start()
        deadline = time.monotonic() + 60
        while not marker.exists():
            assert writer.is_alive() and time.monotonic() < deadline, f"save never paused:\n{paused.tail()}"
            time.sleep(0.01)  # poll interval, bounded by the deadline
        writer.wait_for(len(writer.acked) + 10)  # writes after the stuck save: only the store has them
        paused.kill()
        writer.join(timeout=30)
        assert not writer.errors, writer.errors
        indexes = data_dir / "indexes"
        if point == "mid-index":
            assert (indexes / ".faq.faiss.tmp").exists()
        maybe = {writer.in_flight} if writer.in_flight is not None else set()
    finally:
        paused.stop()

    server = LiveServer(tiny_artifact, data_dir, log)
    try:
        url = server.start()
        figures = check_consistent(url, set(writer.acked), maybe)
        assert "from=rebuild" in log.read_text()  # the stale index file was not trusted
        server.terminate()
        url = server.start()  # the clean shutdown saved a matching index: loaded, not rebuilt
        check_consistent(url, set(writer.acked), maybe)
        assert log.read_text().count("from=index file") == 1
        record_figures("crash.json", f"sigkill_during_index_save_{point}", figures)
    finally:
        server.stop()
