"""Bounded closed-loop load generator (asyncio + httpx, loopback only): `concurrency` clients share a fixed
request count and stop early at a duration cap, whichever comes first."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Callable
from urllib.parse import urlparse

import httpx

from bench.stats import LevelResult, LevelSamples, summarize

Body = Callable[[int], dict[str, object]]


def _require_loopback(url: str) -> None:
    host = urlparse(url).hostname
    if host not in ("127.0.0.1", "localhost", "::1"):
        raise ValueError(f"the load generator only targets loopback, got {host}")


async def _timed_post(http: httpx.AsyncClient, url: str, body: dict[str, object]) -> float | None:
    """Seconds until a 200 answer; None for any other status or a transport error."""
    t0 = time.perf_counter()
    try:
        ok = (await http.post(url, json=body)).status_code == 200
    except httpx.HTTPError:
        return None
    return time.perf_counter() - t0 if ok else None


async def run_level(system: str, url: str, body_for: Body, *, concurrency: int, requests: int, max_seconds: float,
                    headers: dict[str, str] | None = None, warmup: int = 4) -> LevelResult:
    """Closed loop: each client sends its next request when the previous one is answered."""
    samples = await run_level_samples(url, body_for, concurrency=concurrency, requests=requests,
                                      max_seconds=max_seconds, headers=headers, warmup=warmup)
    return samples.summary(system, concurrency)


async def run_level_samples(url: str, body_for: Body, *, concurrency: int, requests: int, max_seconds: float,
                            headers: dict[str, str] | None = None, warmup: int = 4) -> LevelSamples:
    """The closed loop of `run_level`, returning every latency (for pooling rounds)."""
    _require_loopback(url)
    latencies: list[float] = []
    errors = 0
    counter = itertools.count()
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(timeout=120, limits=limits, headers=headers) as http:
        for i in range(warmup):
            await http.post(url, json=body_for(10_000_000 + i))
        started = time.perf_counter()
        deadline = started + max_seconds

        async def client() -> None:
            nonlocal errors
            while (i := next(counter)) < requests and time.perf_counter() < deadline:
                latency = await _timed_post(http, url, body_for(i))
                if latency is None:
                    errors += 1
                else:
                    latencies.append(latency)

        await asyncio.gather(*(client() for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    return LevelSamples(latencies, errors, elapsed)


async def run_open_loop(system: str, url: str, body_for: Body, *, rate: float, requests: int,
                        headers: dict[str, str] | None = None) -> LevelResult:
    """Open loop at a fixed arrival rate (requests/s): latency at a chosen fraction of saturation."""
    _require_loopback(url)
    latencies: list[float] = []
    errors = 0
    async with httpx.AsyncClient(timeout=120, limits=httpx.Limits(max_connections=512), headers=headers) as http:
        await http.post(url, json=body_for(10_000_000))

        async def one(i: int) -> None:
            nonlocal errors
            latency = await _timed_post(http, url, body_for(i))
            if latency is None:
                errors += 1
            else:
                latencies.append(latency)

        started = time.perf_counter()
        tasks = []
        for i in range(requests):
            delay = started + i / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)  # pacing the arrivals, not waiting for a condition
            tasks.append(asyncio.create_task(one(i)))
        await asyncio.gather(*tasks)
        elapsed = time.perf_counter() - started
    return summarize(system, int(rate), latencies, errors, elapsed)
