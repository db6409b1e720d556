"""Interleaved load rounds: every system is up at once, and each load level runs short rounds A, B, C, A, B, C ...
so a drift of the machine (other jobs, thermal, caches) touches every system alike. Ratios are taken per round
and reported as a median with its spread; latencies are pooled over the rounds."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence

from bench.loadgen import run_level_samples
from bench.stats import LevelResult, LevelSamples, pooled, round_ratios
from bench.systems import System

logger = logging.getLogger("bench.interleave")

Samples = dict[str, list[LevelSamples]]  # system name -> one LevelSamples per round


def run_rounds(systems: Sequence[System], texts: Callable[[int], str], *, concurrency: int, rounds: int,
               round_seconds: float, requests: int) -> Samples:
    """`rounds` rounds at one concurrency, each system in turn per round. `texts(i)` is the i-th query of the
    round's stream; every system gets the same queries in a round and fresh ones in the next."""
    samples: Samples = {s.name: [] for s in systems}
    for round_ in range(rounds):
        offset = round_ * requests

        for system in systems:
            def body(i: int, system: System = system, offset: int = offset) -> dict[str, object]:
                return system.body(texts(offset + i))

            result = asyncio.run(run_level_samples(system.url + system.embed_path, body, concurrency=concurrency,
                                                   requests=requests, max_seconds=round_seconds))
            samples[system.name].append(result)
            logger.info("c=%d round %d %s: %.1f req/s, %d errors", concurrency, round_ + 1, system.name,
                        result.throughput, result.errors)
    return samples


def summarise(samples: Samples, concurrency: int) -> list[LevelResult]:
    return [pooled(name, concurrency, rounds) for name, rounds in samples.items()]


def ratios_against(samples: Samples, ours: str) -> dict[str, dict[str, dict[str, float]]]:
    """Median (and spread) over rounds of ours / each other system, throughput and p99."""
    if ours not in samples:
        return {}
    return {name: round_ratios(samples[ours], other) for name, other in samples.items() if name != ours}
