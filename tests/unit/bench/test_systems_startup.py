"""bench/systems.py starts its systems through the tests' one server helper: real processes on loopback, one
shared deadline, a system that never gets ready is reported (not raised) and every process is stopped."""

from __future__ import annotations

import sys

from bench.systems import System, running_all
from tests.fixtures.server import answers_200


def test_running_all_reports_ready_and_failed_systems_and_stops_them(tmp_path):
    served = tmp_path / "served"
    served.mkdir()
    (served / "ok").write_text("ok")
    ready = System("http.server", [sys.executable, "-m", "http.server", "{port}", "--bind", "127.0.0.1",
                                   "--directory", str(served)], "/ok", "/")
    dies = System("dies", [sys.executable, "-c", "import sys; print('boom'); sys.exit(3)"], "/ok", "/")
    with running_all([(ready, tmp_path / "ready.log"), (dies, tmp_path / "dies.log")], timeout=30) as (up, failed):
        assert [s.name for s in up] == ["http.server"]
        assert set(failed) == {"dies"} and "exited with 3" in failed["dies"] and "boom" in failed["dies"]
    # Leaving the block stops the server: its port no longer answers.
    assert not answers_200(ready.url + "/ok", timeout=1)
