"""Encoder speed variants on CPU, side by side in one process: fp32, bf16, dynamic int8, torch.compile, thread
counts, length bucketing; each with its cosine to the fp32 reference. Also the forward's achieved FLOP/s against a
large-matmul peak measured on the same machine.

    .venv/bin/python -m bench.encoder_bench --model artifacts/flipmatch-default --out bench/results
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import random
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from bench import machine
from bench.data import load_queries
from service.engine.encoder import Encoder, load_encoder
from service.engine.engine import TokenizedText

logger = logging.getLogger("bench.encoder")


def matmul_peak(dtype: torch.dtype, *, n: int = 2048, seconds: float = 3.0) -> float:
    """FLOP/s of a large square torch.matmul in `dtype` with the current thread count."""
    a = torch.randn(n, n).to(dtype)
    b = torch.randn(n, n).to(dtype)
    torch.matmul(a, b)
    runs, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        torch.matmul(a, b)
        runs += 1
    return 2 * n**3 * runs / (time.perf_counter() - started)


def forward_flops(encoder: Encoder, batch: int, width: int) -> float:
    """Matmul FLOPs of one forward of `batch` x `width` padded tokens (linear layers + attention scores/values)."""
    cfg = encoder.model.config
    hidden, layers = int(cfg.hidden_size), int(cfg.num_hidden_layers)
    linear_params = sum(p.numel() for n, p in encoder.model.named_parameters()
                        if p.dim() == 2 and "embed" not in n)
    tokens = batch * width
    attention = layers * 2 * 2 * batch * width * width * hidden  # QK^T and AV
    return 2.0 * linear_params * tokens + attention


def time_encode(encode: Callable[[], np.ndarray], *, seconds: float, min_runs: int = 2) -> float:
    """Median seconds per call after one warm-up call."""
    encode()
    times: list[float] = []
    started = time.perf_counter()
    while len(times) < min_runs or time.perf_counter() - started < seconds:
        t0 = time.perf_counter()
        encode()
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def cosine_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1) + 1e-12)


def padded_cost_table(enc: Encoder, *, seconds: float, widths: tuple[int, ...] = (8, 16, 32, 48),
                      batches: tuple[int, ...] = (1, 8, 32)) -> list[dict[str, float]]:
    """ms per forward pass of `count` texts all `width` tokens long, and ms per padded token, on 1 and 2 threads."""
    rows = []
    for threads in (1, 2):
        torch.set_num_threads(threads)
        for width in widths:
            for count in batches:
                batch = [TokenizedText(tuple([1000 + i % 50] * width), None, False) for i in range(count)]
                ms = 1000 * time_encode(lambda batch=batch: enc.encode(batch), seconds=seconds)
                rows.append({"threads": threads, "width": width, "count": count, "ms": ms,
                             "ms_per_token": ms / (width * count)})
                logger.info("cost model %s", rows[-1])
    torch.set_num_threads(1)
    return rows


def profile_top_ops(enc: Encoder, tokens: list) -> list[dict[str, object]]:
    """torch.profiler over one batch: the ops that take the CPU time (is the forward matmul-bound?)."""
    from torch.profiler import ProfilerActivity, profile

    torch.set_num_threads(1)
    enc.encode(tokens)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        enc.encode(tokens)
    events = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)
    total = sum(e.self_cpu_time_total for e in events) or 1
    return [{"op": e.key, "self_cpu_ms": e.self_cpu_time_total / 1000, "pct": 100 * e.self_cpu_time_total / total,
             "calls": e.count} for e in events[:10]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default="artifacts/flipmatch-default")
    parser.add_argument("--data-dir", default="/work/shared/data")
    parser.add_argument("--out", default="bench/results")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=4.0, help="timing budget per variant")
    parser.add_argument("--no-compile", action="store_true", help="skip torch.compile (minutes to compile)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    queries = load_queries(Path(args.data_dir))
    random.Random(0).shuffle(queries)
    texts = queries[: args.batch]
    ref_texts = queries[:256]
    results: dict[str, object] = {"batch": args.batch, "torch": torch.__version__, "machine": machine.describe()}

    torch.set_num_threads(1)
    # Eager nn.Linear layers: the FLOP count and the int8 variants are built from them (a prepacked model can be
    # neither deep-copied nor quantized); the served prepacked encoders are timed beside them.
    base = load_encoder(args.model, device="cpu", dtype="float32", cpu_threads=1, prepack=False)
    results["model_class"] = type(base.model).__name__
    results["has_lm_head"] = any("lm_head" in n for n, _ in base.model.named_parameters())
    tokens = base.tokenize(texts)
    ref_tokens = base.tokenize(ref_texts)
    reference = np.concatenate([base.encode(ref_tokens[i:i + 64]) for i in range(0, len(ref_tokens), 64)])
    width = max(t.n_tokens for t in tokens)
    results["padded_width"] = width
    results["mean_tokens"] = float(np.mean([t.n_tokens for t in tokens]))

    peaks = {}
    for threads in (1, 2):
        torch.set_num_threads(threads)
        peaks[f"fp32_{threads}t"] = matmul_peak(torch.float32)
        peaks[f"bf16_{threads}t"] = matmul_peak(torch.bfloat16)
    results["matmul_peak_flops"] = peaks
    logger.info("matmul peaks %s", {k: f"{v / 1e9:.1f} GFLOP/s" for k, v in peaks.items()})

    bf16 = Encoder(base.spec, _placement(), "bfloat16", prepack=False)
    fp32_packed = Encoder(base.spec, _placement(), "float32")
    bf16_packed = Encoder(base.spec, _placement(), "bfloat16")
    int8 = copy.copy(base)
    int8.model = torch.ao.quantization.quantize_dynamic(copy.deepcopy(base.model), {torch.nn.Linear},
                                                       dtype=torch.qint8)
    # SmolLM2's outlier activations enter down_proj (the MLP output): keep those Linear layers in fp32 and
    # quantize the rest, to see whether int8 can keep cosine >= 0.99 at a useful speed-up.
    int8_partial = copy.copy(base)
    keep_fp32 = ("down_proj",)
    names = {n for n, m in base.model.named_modules() if isinstance(m, torch.nn.Linear) and not n.endswith(keep_fp32)}
    int8_partial.model = torch.ao.quantization.quantize_dynamic(copy.deepcopy(base.model), names, dtype=torch.qint8)
    variants: dict[str, tuple[Encoder, int]] = {
        "fp32 1 thread": (base, 1), "fp32 2 threads": (base, 2),
        "fp32 prepacked 1 thread": (fp32_packed, 1), "fp32 prepacked 2 threads": (fp32_packed, 2),
        "bf16 1 thread": (bf16, 1), "bf16 2 threads": (bf16, 2),
        "bf16 prepacked 1 thread": (bf16_packed, 1), "bf16 prepacked 2 threads": (bf16_packed, 2),
        "int8 dynamic 1 thread": (int8, 1), "int8 dynamic 2 threads": (int8, 2),
        "int8 dynamic except down_proj 1 thread": (int8_partial, 1),
    }
    rows = []
    flops = forward_flops(base, len(tokens), width)

    def measure(name: str, enc: Encoder, threads: int) -> dict[str, object]:
        torch.set_num_threads(threads)
        seconds = time_encode(lambda enc=enc: enc.encode(tokens), seconds=args.seconds)
        got = np.concatenate([enc.encode(ref_tokens[i:i + 64]) for i in range(0, len(ref_tokens), 64)])
        cos = cosine_rows(got, reference)
        peak_key = ("bf16" if enc.dtype == "bfloat16" else "fp32") + f"_{threads}t"
        row = {"variant": name, "threads": threads, "ms_per_batch": seconds * 1000,
               "texts_per_s": len(tokens) / seconds, "min_cosine": float(cos.min()), "mean_cosine": float(cos.mean()),
               "gflops": flops / seconds / 1e9, "pct_of_matmul_peak": 100 * flops / seconds / peaks[peak_key]}
        logger.info("%s", row)
        return row

    rows = [measure(name, enc, threads) for name, (enc, threads) in variants.items()]
    results["variants"] = rows

    # Length bucketing: one batch of 256 real queries padded to its longest vs split into length-sorted batches.
    torch.set_num_threads(1)
    served = bf16_packed if bf16_packed.prepacked else bf16
    best = served if any(r["variant"] == "bf16 1 thread" and r["min_cosine"] >= 0.99 for r in rows) else base
    unsorted_batches = [ref_tokens[i:i + 64] for i in range(0, 256, 64)]
    by_length = sorted(ref_tokens, key=lambda t: t.n_tokens)
    sorted_batches = [by_length[i:i + 64] for i in range(0, 256, 64)]
    pad_to_max = [[t for t in b] for b in unsorted_batches]
    bucket = {}
    for name, batches in (("arrival order (pad to batch max)", pad_to_max), ("length-sorted", sorted_batches)):
        seconds = time_encode(lambda batches=batches: [best.encode(b) for b in batches], seconds=args.seconds)
        padded = sum(len(b) * max(t.n_tokens for t in b) for b in batches)
        bucket[name] = {"texts_per_s": 256 / seconds, "padded_tokens": padded}
        logger.info("bucketing %s %s", name, bucket[name])
    results["bucketing"] = {"dtype": best.dtype, **bucket}
    (out / "encoder.json").write_text(json.dumps(results, indent=2))

    # Cost model behind the batcher's length split: forward time of uniform batches (width x count), so the
    # per-pass overhead and the per-padded-token cost can be read off (FLIPMATCH_BATCHING__BATCH_OVERHEAD_TOKENS).
    results["cost_model"] = padded_cost_table(best, seconds=min(1.5, args.seconds))
    (out / "encoder.json").write_text(json.dumps(results, indent=2))

    results["profile"] = profile_top_ops(best, tokens)
    (out / "encoder.json").write_text(json.dumps(results, indent=2))

    # torch.compile last: its first call (Inductor C++ codegen) took minutes on 2 shared cores, so only the
    # dtype the service runs is compiled.
    if not args.no_compile:
        compiled = copy.copy(best)
        try:
            compiled.model = torch.compile(best.model, dynamic=True)
            t0 = time.perf_counter()
            compiled.encode(tokens)
            results["compile_first_call_s"] = time.perf_counter() - t0
            row = measure(f"{best.dtype} torch.compile 1 thread", compiled, 1)
            rows.append(row)
        except Exception as err:  # compile needs a C++ toolchain; record why it was skipped
            results["compile_error"] = f"{type(err).__name__}: {err}"[:500]
            logger.warning("torch.compile failed: %s", err)
        (out / "encoder.json").write_text(json.dumps(results, indent=2))
    logger.info("wrote %s", out / "encoder.json")


def _placement():  # noqa: ANN202 - tiny local helper
    from service.engine.device import Placement

    return Placement("cpu", ("bfloat16",), "bench")


if __name__ == "__main__":
    main()
