"""Start-up calibration: time each candidate CPU configuration on a probe batch and check its vectors.

Measures only; `device.select` decides. No torch here: the caller hands in a builder (dtype -> encoder), a
thread setter and tokenized probes, so the loop is tested with fake encoders and a fake clock.
"""

from __future__ import annotations

import logging
import statistics
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol

import numpy as np

from service.engine.device import PARITY_MIN_COSINE, Candidate, Measurement

logger = logging.getLogger(__name__)

# FAQ-style questions (Banking77/MedQuAD-like lengths, 6-20 tokens): the timed batches and, for artifacts
# without flipmatch.json probes, the texts whose fp32 vectors are the parity reference.
CALIBRATION_TEXTS = (
    "How do I reset my card PIN?",
    "Why was I charged twice for the same purchase?",
    "my card has not arrived yet, what should I do",
    "What are the symptoms of iron deficiency anemia?",
    "Can I change the currency of my account?",
    "top up failed",
    "How long does a bank transfer take to arrive from another country?",
    "Is there a fee for using my card abroad?",
    "What is the recommended treatment for high blood pressure in older adults?",
    "I lost my phone, how do I freeze my account",
    "Where can I see the exchange rate you applied?",
    "Who should get the flu vaccine?",
)


class ProbeEncoder(Protocol):
    def encode(self, batch: Sequence[Any]) -> np.ndarray: ...


def min_cosine(got: np.ndarray, expected: np.ndarray) -> float:
    num = (got * expected).sum(axis=1)
    den = np.linalg.norm(got, axis=1) * np.linalg.norm(expected, axis=1) + 1e-12
    return float((num / den).min()) if len(got) else 1.0


def measure(
    candidates: Sequence[Candidate],
    *,
    build: Callable[[str], ProbeEncoder],
    set_threads: Callable[[int], None],
    timed_batches: Sequence[Sequence[Any]],
    parity_batch: Sequence[Any],
    reference: np.ndarray,
    rounds: int = 3,
    budget_s: float = 5.0,
    clock: Callable[[], float] = time.perf_counter,
    pass_shape: Callable[[Sequence[Any]], tuple[int, int]] | None = None,
) -> tuple[list[Measurement], dict[str, ProbeEncoder]]:
    """Time every candidate that passes parity on each of `timed_batches`, up to `rounds` times, interleaved (c1,
    c2, ..., c1, c2, ...) so a drift of the machine touches every candidate alike; median per batch. The first
    batch is timed alone (a lone request's latency); each later one as `candidate.workers` passes at once, its
    time being the wall time over the workers (time per pass when every worker is busy: throughput). Rounds stop
    early once the timing has used `budget_s` (at least one round always runs): on a crowded machine start-up
    must not stall. `pass_shape`: the (rows, width) a batch's forward pass runs, for the cost-model fit (default:
    padded rows). Returns the measurements and the built encoders by dtype (the caller keeps the chosen one)."""
    encoders: dict[str, ProbeEncoder] = {}
    cosines: dict[str, float] = {}
    for dtype in dict.fromkeys(c.dtype for c in candidates):
        encoders[dtype] = build(dtype)
        cosines[dtype] = min_cosine(encoders[dtype].encode(parity_batch), reference)
        logger.info("calibration parity dtype=%s min_cosine=%.5f", dtype, cosines[dtype])
    timed = [c for c in candidates if cosines[c.dtype] >= PARITY_MIN_COSINE[c.dtype]]
    shapes = tuple((pass_shape or padded_shape)(b) for b in timed_batches)
    samples: dict[Candidate, list[list[float]]] = {c: [[] for _ in timed_batches] for c in timed}
    # Every pass runs on a pool thread, as served passes run on the batcher's worker threads, never on the calling
    # thread: measured on machine A, a 2-thread bf16 pass of 12 questions took 56-80 ms on the main thread and
    # 80-111 ms on another thread, so timing it on the main thread chose a layout that served 0.75x the req/s.
    pool = ThreadPoolExecutor(max(c.workers for c in timed), thread_name_prefix="calibration") if timed else None

    def passes(candidate: Candidate, batch: Sequence[Any], count: int) -> None:
        """`count` passes of `batch` at once, each on its own pool thread with the candidate's thread count."""
        def one() -> None:
            set_threads(candidate.threads)  # torch's thread count is per OS thread once that thread has run
            encoders[candidate.dtype].encode(batch)

        assert pool is not None
        for future in [pool.submit(one) for _ in range(count)]:
            future.result()

    for candidate in timed:  # warm-up: first-call allocations and lazy kernels per thread count
        set_threads(candidate.threads)
        for i, batch in enumerate(timed_batches):
            passes(candidate, batch, 1 if i == 0 else candidate.workers)
    timing_started = clock()
    for round_ in range(rounds):
        if round_ and clock() - timing_started > budget_s:
            logger.warning("calibration stopped after %d of %d rounds (timing budget %.1f s used)", round_, rounds,
                           budget_s)
            break
        for candidate in timed:
            set_threads(candidate.threads)
            for i, batch in enumerate(timed_batches):
                count = 1 if i == 0 else candidate.workers
                batch_started = clock()
                passes(candidate, batch, count)
                samples[candidate][i].append((clock() - batch_started) / count)
    if pool is not None:
        pool.shutdown()
    measurements = []
    for candidate in candidates:
        if candidate in samples:
            seconds = tuple(statistics.median(s) for s in samples[candidate])
        else:  # failed parity: never timed, never chosen
            seconds = tuple(float("inf") for _ in timed_batches)
        measurements.append(Measurement(candidate, shapes, seconds, cosines[candidate.dtype]))
        logger.info("calibration candidate=%s ms=%s min_cosine=%.5f", candidate,
                    "/".join(f"{1000 * s:.1f}" for s in seconds), cosines[candidate.dtype])
    return measurements, encoders


def padded_shape(batch: Sequence[Any]) -> tuple[int, int]:
    """(rows, width) of a padded pass: one row per text, padded to the longest."""
    return len(batch), max(int(getattr(item, "n_tokens", 1)) for item in batch)
