"""Convergence lag between replicas sharing a PostgreSQL store, under a steady write load, then an outage.

Starts a throwaway PostgreSQL cluster (Debian's binaries, tests/fixtures/postgres.py) and N replicas
(`python -m service`, tests/fixtures/server.py) on loopback. Replica A takes one single-entry PUT every 1/rate
seconds; every other replica is polled (GET /v1/corpora/<name>, which reads the served snapshot) every few
milliseconds. A write is visible on a replica when its entry count reaches it (writes are sequential and the change
sequence is applied in commit order, so a count is a prefix). Lag = first poll that sees it - A's acknowledgement.
The replicas' own flipmatch_store_apply_delay_seconds (commit -> applied) is reported beside it.

Then, with --outage-s > 0, PostgreSQL is stopped: searches and writes are sent to every replica, then it is
restarted and the time to the first accepted write is measured, and every acknowledged write is checked on every
replica.

    python -m bench.convergence_bench --model artifacts/flipmatch-default --rate 5 --duration 60 --outage-s 10
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from tests.fixtures.postgres import PostgresCluster
from tests.fixtures.server import ServiceProcess
from tests.hardening.live_server import call

CORPUS = "convergence"


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))] if ordered else float("nan")


def fields(i: int) -> dict[str, Any]:
    return {"question": f"write {i}: how do I change setting {i} on account {i * 7}?",
            "alt_questions": [f"setting {i} again {i * 13}"], "answer": f"answer {i}"}


class Observer(threading.Thread):
    """Polls one replica's entry count; records when each count was first seen."""

    def __init__(self, url: str, interval_s: float) -> None:
        super().__init__(daemon=True)
        self.url, self.interval = url, interval_s
        self.seen_at: dict[int, float] = {}  # write index -> first time visible
        self.stop = threading.Event()

    def run(self) -> None:
        count = 0
        while not self.stop.is_set():
            status, body = call("GET", f"{self.url}/v1/corpora/{CORPUS}", timeout=10)
            now = time.monotonic()
            if status == 200:
                for i in range(count, body["entries"]):
                    self.seen_at[i] = now
                count = max(count, body["entries"])
            self.stop.wait(self.interval)


def histogram_quantiles(url: str) -> dict[str, float]:
    """p50/p99 from the replica's flipmatch_store_apply_delay_seconds buckets (upper bounds)."""
    import urllib.request

    with urllib.request.urlopen(f"{url}/metrics", timeout=10) as response:
        text = response.read().decode()
    buckets = []
    for line in text.splitlines():
        if line.startswith("flipmatch_store_apply_delay_seconds_bucket"):
            le = line.split('le="')[1].split('"')[0]
            buckets.append((float("inf") if le == "+Inf" else float(le), float(line.rsplit(" ", 1)[1])))
    total = buckets[-1][1] if buckets else 0.0
    out = {"count": total}
    for name, q in (("p50_le", 0.5), ("p99_le", 0.99)):
        out[name] = next((le for le, n in buckets if total and n >= q * total), float("nan"))
    return out


def steady_writes(a: str, observers: list[Observer], *, rate: float, duration: float) -> dict[str, Any]:
    acked: dict[int, float] = {}
    start = time.monotonic()
    i = 0
    while time.monotonic() - start < duration:
        due = start + i / rate
        time.sleep(max(0.0, due - time.monotonic()))  # open-loop schedule: the write rate does not follow lag
        status, body = call("PUT", f"{a}/v1/corpora/{CORPUS}/entries/w{i:06d}", fields(i), timeout=30)
        if status != 200:
            raise RuntimeError(f"write {i} failed: {status} {body}")
        acked[i] = time.monotonic()
        i += 1
    deadline = time.monotonic() + 30
    while any(len(o.seen_at) < len(acked) for o in observers) and time.monotonic() < deadline:
        time.sleep(0.05)  # poll interval, bounded by the deadline
    lags = [max(0.0, o.seen_at[k] - acked[k]) for o in observers for k in acked if k in o.seen_at]
    missing = sum(1 for o in observers for k in acked if k not in o.seen_at)
    return {"writes": len(acked), "rate_per_s": round(len(acked) / (time.monotonic() - start), 2),
            "observations": len(lags), "missing": missing, "lag_p50_ms": round(1000 * quantile(lags, 0.5), 1),
            "lag_p99_ms": round(1000 * quantile(lags, 0.99), 1), "lag_max_ms": round(1000 * max(lags), 1),
            "lag_mean_ms": round(1000 * statistics.fmean(lags), 1)}


def outage(cluster: PostgresCluster, urls: list[str], *, seconds: float, first: int) -> dict[str, Any]:
    cluster.stop()
    stopped = time.monotonic()
    searches = writes = 0
    search_ok, write_statuses, write_ms, retry_after = 0, set(), [], set()
    i = first
    while time.monotonic() - stopped < seconds:
        for url in urls:
            status, _ = call("POST", f"{url}/v1/corpora/{CORPUS}/search", {"query": fields(0)["question"]})
            searches += 1
            search_ok += status == 200
            began = time.monotonic()
            status, body = call("PUT", f"{url}/v1/corpora/{CORPUS}/entries/w{i:06d}", fields(i), timeout=30)
            write_ms.append(1000 * (time.monotonic() - began))
            writes += 1
            write_statuses.add(status)
            if status == 503:
                retry_after.add(body["error"]["code"])
        time.sleep(0.2)  # pacing of the probe loop, bounded by `seconds`
    cluster.start()
    restarted = time.monotonic()
    while call("PUT", f"{urls[0]}/v1/corpora/{CORPUS}/entries/w{i:06d}", fields(i), timeout=30)[0] != 200:
        time.sleep(0.05)  # poll interval; bounded below
        if time.monotonic() - restarted > 60:
            raise RuntimeError("writes did not come back within 60 s of the restart")
    return {"outage_s": seconds, "searches": searches, "searches_ok": search_ok, "writes": writes,
            "write_statuses": sorted(write_statuses), "write_error_codes": sorted(retry_after),
            "write_fail_ms_max": round(max(write_ms), 1), "write_fail_ms_p50": round(quantile(write_ms, 0.5), 1),
            "first_write_after_restart_s": round(time.monotonic() - restarted, 2), "last_write": i}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--replicas", type=int, default=2)
    parser.add_argument("--rate", type=float, default=5.0, help="writes per second on replica A")
    parser.add_argument("--duration", type=float, default=60.0, help="seconds of steady writes")
    parser.add_argument("--poll-ms", type=float, default=5.0, help="how often other replicas are polled")
    parser.add_argument("--outage-s", type=float, default=10.0, help="0: skip the outage phase")
    parser.add_argument("--out", type=Path, default=Path("bench/results/convergence.json"))
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="flipmatch-convergence-") as tmp:
        cluster = PostgresCluster()
        replicas: list[ServiceProcess] = []
        try:
            url = cluster.create_database("convergence")
            for n in range(args.replicas):
                replicas.append(ServiceProcess(args.model.resolve(), Path(tmp) / f"data-{n}", Path(tmp) / f"{n}.log",
                                               FLIPMATCH_STORE__URL=url, FLIPMATCH_LOG_LEVEL="warning"))
                replicas[-1].start(timeout=600)
            urls = [r.url for r in replicas]
            assert call("POST", f"{urls[0]}/v1/corpora", {"name": CORPUS})[0] == 201
            observers = [Observer(u, args.poll_ms / 1000) for u in urls[1:]]
            for o in observers:
                o.start()
            result: dict[str, Any] = {"replicas": args.replicas, "poll_ms": args.poll_ms,
                                      "steady": steady_writes(urls[0], observers, rate=args.rate,
                                                              duration=args.duration)}
            for o in observers:
                o.stop.set()
            result["apply_delay_histogram"] = {u: histogram_quantiles(u) for u in urls[1:]}
            if args.outage_s > 0:
                result["outage"] = outage(cluster, urls, seconds=args.outage_s, first=1_000_000)
                expected = result["steady"]["writes"] + 1
                deadline = time.monotonic() + 30
                counts: list[int] = []
                while time.monotonic() < deadline:
                    counts = [call("GET", f"{u}/v1/corpora/{CORPUS}")[1]["entries"] for u in urls]
                    if all(c == expected for c in counts):
                        break
                    time.sleep(0.1)  # poll interval, bounded by the deadline
                result["outage"]["entries_after"] = counts
                result["outage"]["acknowledged"] = expected
        finally:
            for r in replicas:
                r.stop()
            cluster.destroy()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1))
    print(json.dumps(result, indent=1))  # noqa: T201 - a benchmark's report


if __name__ == "__main__":
    main()
