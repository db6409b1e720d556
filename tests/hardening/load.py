"""Load generation against a live server: closed-loop saturation measurement and open-loop (fixed arrival rate)
phases, recording status and latency per request. asyncio + httpx; every phase is bounded by a duration and a
request count, and outstanding requests are capped so a stalled server cannot make the client grow."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

TEXTS_PER_REQUEST = 16
# Request numbers, and so texts, never repeat within a process: a phase that replayed an earlier phase's texts
# would be answered from the server's query cache (a warm-up-inflated "saturation", then an open loop offered
# more than the real capacity, whose queue grew memory in the soak).
_REQUEST_NUMBERS = itertools.count()
WORDS = ("card pin transfer limit account fee refund cash atm exchange rate payment blocked arrived lost stolen "
         "activate verify identity top up salary direct debit contactless").split()


def texts(seed: int, n: int = TEXTS_PER_REQUEST, words: int = 24) -> list[str]:
    """Deterministic, distinct FAQ-like texts (about 30 tokens each)."""
    return [" ".join(WORDS[(seed * 7 + i * 3 + j * 5) % len(WORDS)] for j in range(words)) + f" {seed}-{i}"
            for i in range(n)]


@dataclass
class Outcome:
    status: int  # 0: connection error or timeout
    latency_s: float
    kind: str = "embeddings"


@dataclass
class Phase:
    outcomes: list[Outcome] = field(default_factory=list)
    elapsed_s: float = 0.0

    def by_status(self) -> dict[int, int]:
        counts: dict[int, int] = {}
        for o in self.outcomes:
            counts[o.status] = counts.get(o.status, 0) + 1
        return dict(sorted(counts.items()))

    def latencies(self, status: int) -> list[float]:
        return sorted(o.latency_s for o in self.outcomes if o.status == status)

    def rate(self, status: int = 200) -> float:
        return sum(1 for o in self.outcomes if o.status == status) / max(self.elapsed_s, 1e-9)


def quantile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


RequestFn = Callable[[int], tuple[str, str, Any]]  # request number -> (kind, path, JSON body)


def embeddings_request(n: int) -> tuple[str, str, Any]:
    return "embeddings", "/v1/embeddings", {"input": texts(n)}


async def _send(http: httpx.AsyncClient, make: RequestFn, n: int, phase: Phase) -> None:
    kind, path, body = make(n)
    started = time.perf_counter()
    try:
        response = await http.post(path, json=body)
        status = response.status_code
    except httpx.HTTPError:
        status = 0
    phase.outcomes.append(Outcome(status, time.perf_counter() - started, kind))


async def closed_loop(url: str, *, concurrency: int, duration_s: float, make: RequestFn = embeddings_request,
                      headers: dict[str, str] | None = None) -> Phase:
    """`concurrency` clients, each sending its next request when the last is answered."""
    phase, counter = Phase(), _REQUEST_NUMBERS
    deadline = time.monotonic() + duration_s
    async with httpx.AsyncClient(base_url=url, timeout=60, headers=headers,
                                 limits=httpx.Limits(max_connections=concurrency)) as http:
        async def client() -> None:
            while time.monotonic() < deadline:
                await _send(http, make, next(counter), phase)

        started = time.perf_counter()
        await asyncio.gather(*(client() for _ in range(concurrency)))
        phase.elapsed_s = time.perf_counter() - started
    return phase


async def open_loop(url: str, *, rate_per_s: float, duration_s: float, make: RequestFn = embeddings_request,
                    max_outstanding: int = 256, headers: dict[str, str] | None = None,
                    on_tick: Callable[[], None] | None = None) -> Phase:
    """Requests start at a fixed rate whatever the answers (arrivals do not wait for the server), evenly spaced.
    At most `max_outstanding` in flight; beyond that, arrivals are counted as status -1 (the client's own
    back-pressure, reported, not hidden). `on_tick` runs about once a second (RSS sampling)."""
    phase = Phase()
    total = int(rate_per_s * duration_s)
    interval = 1.0 / rate_per_s
    tasks: set[asyncio.Task[None]] = set()
    async with httpx.AsyncClient(base_url=url, timeout=60, headers=headers,
                                 limits=httpx.Limits(max_connections=max_outstanding)) as http:
        started = time.perf_counter()
        next_tick = started
        for i, n in zip(range(total), _REQUEST_NUMBERS, strict=False):
            wait = started + i * interval - time.perf_counter()
            if wait > 0:
                await asyncio.sleep(wait)  # pacing the arrival schedule, not waiting for a condition
            if on_tick is not None and time.perf_counter() >= next_tick:
                on_tick()
                next_tick += 1.0
            if len(tasks) >= max_outstanding:
                phase.outcomes.append(Outcome(-1, 0.0))
                continue
            task = asyncio.create_task(_send(http, make, n, phase))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        await asyncio.wait_for(asyncio.gather(*tasks), timeout=120)
        phase.elapsed_s = time.perf_counter() - started
    return phase


def saturation(url: str, *, concurrency: int, duration_s: float, make: RequestFn = embeddings_request,
               headers: dict[str, str] | None = None) -> tuple[float, Phase]:
    """Requests/s the server completes with `concurrency` clients keeping it busy (the saturation throughput)."""
    asyncio.run(closed_loop(url, concurrency=concurrency, duration_s=1.5, make=make, headers=headers))  # warm-up
    phase = asyncio.run(closed_loop(url, concurrency=concurrency, duration_s=duration_s, make=make, headers=headers))
    return phase.rate(200), phase
