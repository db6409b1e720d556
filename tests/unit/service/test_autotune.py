"""The calibration loop with fake encoders and a fake clock: parity gates timing, rounds interleave, medians."""

from __future__ import annotations

import numpy as np
import pytest

from service.engine.autotune import measure
from service.engine.device import Candidate, select
from service.engine.engine import TokenizedText

REFERENCE = np.eye(3, 4, dtype=np.float32)


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class Timed:
    """encode() advances the fake clock by a cost that depends on dtype, the active thread count and the batch."""

    def __init__(self, dtype: str, clock: FakeClock, threads: list[int], log: list[str]) -> None:
        self.dtype, self.clock, self.threads, self.log = dtype, clock, threads, log

    def encode(self, batch):
        if batch and batch[0] == "parity":  # the parity batch: vectors, no timing
            return REFERENCE if self.dtype != "bfloat16" else REFERENCE + 0.2  # bf16 drifts here
        per_token = {"float32": 1.0, "bfloat16": 0.5, "int8": 0.3}[self.dtype] / self.threads[0]
        self.clock.now += (0.01 + per_token * 1e-3 * sum(t.n_tokens for t in batch))
        self.log.append(f"{self.dtype}/{self.threads[0]}t")
        return np.zeros((len(batch), 4), np.float32)


def run(candidates, budget_s=5.0):
    clock, threads, log = FakeClock(), [1], []
    batches = [[TokenizedText((1,) * 10, None, False)], [TokenizedText((1,) * 16, None, False)] * 8]
    measurements, encoders = measure(
        candidates, build=lambda dtype: Timed(dtype, clock, threads, log),
        set_threads=lambda n: threads.__setitem__(0, n), timed_batches=batches,
        parity_batch=["parity"] * 3, reference=REFERENCE, rounds=3, budget_s=budget_s, clock=clock)
    return measurements, encoders, log


def test_candidates_failing_parity_are_not_timed():
    measurements, encoders, log = run([Candidate("float32", 1), Candidate("bfloat16", 1)])
    assert set(encoders) == {"float32", "bfloat16"}
    assert not any(entry.startswith("bfloat16") for entry in log)
    bf16 = next(m for m in measurements if m.candidate.dtype == "bfloat16")
    assert not bf16.passes and bf16.min_cosine < 0.99
    assert select(measurements).candidate == Candidate("float32", 1)


def test_rounds_interleave_candidates_and_report_medians():
    candidates = [Candidate("float32", 1), Candidate("float32", 2), Candidate("int8", 1)]
    measurements, _, log = run(candidates)
    # warm-up (one pass of both batches each), then 3 rounds in candidate order
    timed = log[6:]
    assert timed[:6] == ["float32/1t", "float32/1t", "float32/2t", "float32/2t", "int8/1t", "int8/1t"]
    assert len(timed) == 3 * 3 * 2
    by = {m.candidate: m for m in measurements}
    assert by[Candidate("float32", 1)].seconds == pytest.approx((0.01 + 10e-3, 0.01 + 128e-3))
    assert by[Candidate("float32", 2)].shapes == ((1, 10), (8, 16))
    choice = select(measurements)
    assert choice.candidate == Candidate("int8", 1)
    assert choice.cost_model is not None
    assert choice.cost_model.overhead_tokens == pytest.approx(0.01 / 0.3e-3)  # fixed 10 ms / 0.3 ms per token


def test_a_slow_machine_stops_after_the_budget_with_at_least_one_round():
    candidates = [Candidate("float32", 1), Candidate("int8", 1)]
    measurements, _, log = run(candidates, budget_s=0.0)
    assert len(log) == 4 + 4  # warm-up, then one round only
    assert all(m.passes and all(s > 0 for s in m.seconds) for m in measurements)


def test_the_budget_counts_every_round_not_just_the_last_batch():
    # One round of these two candidates costs 0.219 fake seconds: a 0.3 s budget allows a second round, not a third.
    candidates = [Candidate("float32", 1), Candidate("int8", 1)]
    measurements, _, log = run(candidates, budget_s=0.3)
    assert len(log) == 4 + 2 * 4  # warm-up, then two rounds


def test_a_batch_is_timed_with_every_worker_busy_and_counted_per_pass():
    measurements, _, log = run([Candidate("float32", 1, 2)])
    # warm-up: the lone text once, the batch once per worker; then each round the same
    assert log == ["float32/1t"] * 3 * 4
    (m,) = measurements
    # The fake clock runs the two passes back to back, so wall time over workers is exactly one pass.
    assert m.seconds == pytest.approx((0.01 + 10e-3, 0.01 + 128e-3))


def test_every_timed_pass_runs_on_a_pool_thread_not_the_callers():
    """Served passes run on the batcher's worker threads; a 2-thread pass timed on the main thread measured
    0.7x its time on another thread (machine A), so the calibration must time where it serves."""
    import threading

    caller = threading.get_ident()
    where: list[int] = []

    class Recording(Timed):
        def encode(self, batch):
            if not (batch and batch[0] == "parity"):
                where.append(threading.get_ident())
            return super().encode(batch)

    clock, threads, log = FakeClock(), [1], []
    batches = [[TokenizedText((1,) * 10, None, False)], [TokenizedText((1,) * 16, None, False)] * 8]
    measure([Candidate("float32", 2, workers=1), Candidate("float32", 1, workers=2)],
            build=lambda dtype: Recording(dtype, clock, threads, log),
            set_threads=lambda n: threads.__setitem__(0, n), timed_batches=batches,
            parity_batch=["parity"] * 3, reference=REFERENCE, rounds=2, clock=clock)
    assert where and caller not in where
