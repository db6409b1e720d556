"""int8 variants of the served encoder, measured in order (issue 14) against the fp32 forward in one process:
dynamic per-tensor int8 (`quantize_dynamic`, the baseline), then SmoothQuant-style outlier migration with static
per-channel weight scales, then per-token activation scales, then the worst layers kept in float. Each row: speed
(texts/s, batch of 32, 1 thread) and cosine to fp32 over 256 Banking77 test questions. The service's
FLIPMATCH_DTYPE=int8 runs `service.engine.quantize.quantize_int8` with its defaults (alpha 0.5, per token).

    .venv/bin/python -m bench.int8_bench --model artifacts/flipmatch-default --out bench/results
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import random
from pathlib import Path

import numpy as np
import torch

from bench import machine
from bench.data import load_queries
from bench.encoder_bench import cosine_rows, time_encode
from service.engine.autotune import CALIBRATION_TEXTS
from service.engine.encoder import Encoder, load_encoder
from service.engine.quantize import quantize_int8

logger = logging.getLogger("bench.int8")
TARGET = 0.99


def variant(base: Encoder, **options: object) -> Encoder:
    """A copy of `base` whose model is quantized like the service does (calibration on CALIBRATION_TEXTS)."""
    enc = copy.copy(base)
    features = base._collate(base.tokenize(CALIBRATION_TEXTS))
    enc.model = quantize_int8(copy.deepcopy(base.model), features, **options)  # type: ignore[arg-type]
    return enc


def encode_all(enc: Encoder, tokens: list) -> np.ndarray:
    return np.concatenate([enc.encode(tokens[i:i + 64]) for i in range(0, len(tokens), 64)])


def worst_layers(base: Encoder, tokens: list, reference: np.ndarray, **options: object) -> list[tuple[str, float]]:
    """Each Linear quantized alone: the mean cosine it leaves, worst first (a per-layer sensitivity scan)."""
    names = [n for n, m in base.model.named_modules() if isinstance(m, torch.nn.Linear)]
    scores = []
    features = base._collate(base.tokenize(CALIBRATION_TEXTS))
    for name in names:
        others = tuple(n for n in names if n != name)
        enc = copy.copy(base)
        enc.model = quantize_int8(copy.deepcopy(base.model), features, keep_float=others, **options)  # type: ignore[arg-type]
        scores.append((name, float(cosine_rows(encode_all(enc, tokens), reference).mean())))
    return sorted(scores, key=lambda item: item[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default="artifacts/flipmatch-default")
    parser.add_argument("--data-dir", default="/work/shared/data")
    parser.add_argument("--out", default="bench/results")
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--keep", type=int, nargs="+", default=[2, 4, 8], help="worst layers kept in float")
    parser.add_argument("--quick", action="store_true",
                        help="only the two SmoothQuant variants at alpha 0.5 (per-tensor, then per-token)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    queries = load_queries(Path(args.data_dir))
    random.Random(0).shuffle(queries)
    torch.set_num_threads(1)
    # Eager nn.Linear layers: the int8 variants are built from them, as the service's int8 path quantizes before
    # any prepacking (a prepacked model can be neither deep-copied nor quantized).
    base = load_encoder(args.model, device="cpu", dtype="float32", cpu_threads=1, prepack=False)
    tokens = base.tokenize(queries[:256])
    batch = tokens[:32]
    reference = encode_all(base, tokens)
    results: dict[str, object] = {"machine": machine.describe(), "model": args.model, "target_min_cosine": TARGET,
                                  "questions": len(tokens), "rows": []}
    rows: list[dict[str, object]] = results["rows"]  # type: ignore[assignment]

    def measure(name: str, enc: Encoder) -> dict[str, object]:
        # --seconds 0: accuracy only (speed needs a quiet machine)
        seconds = time_encode(lambda: enc.encode(batch), seconds=args.seconds) if args.seconds > 0 else None
        cos = cosine_rows(encode_all(enc, tokens), reference)
        row = {"variant": name, "texts_per_s": len(batch) / seconds if seconds else None,
               "min_cosine": float(cos.min()),
               "mean_cosine": float(cos.mean()), "meets_target": bool(cos.min() >= TARGET)}
        rows.append(row)
        logger.info("%s", row)
        (out / "int8.json").write_text(json.dumps(results, indent=2))
        return row

    measure("fp32 (reference)", base)
    if args.quick:
        measure("SmoothQuant alpha 0.5, per-channel weights, per-tensor activations",
                variant(base, alpha=0.5, per_token=False))
        measure("SmoothQuant alpha 0.5 + per-token activations (the service's int8)",
                variant(base, alpha=0.5, per_token=True))
        results["first_meeting_target"] = next((r["variant"] for r in rows[1:] if r["meets_target"]), None)
        (out / "int8.json").write_text(json.dumps(results, indent=2))
        return
    dynamic = copy.copy(base)
    dynamic.model = torch.ao.quantization.quantize_dynamic(copy.deepcopy(base.model), {torch.nn.Linear},
                                                           dtype=torch.qint8)
    measure("dynamic per-tensor int8 (quantize_dynamic)", dynamic)
    for alpha in (0.5, 0.8):
        measure(f"SmoothQuant alpha {alpha}, per-channel weights, per-tensor activations",
                variant(base, alpha=alpha, per_token=False))
    measure("per-token activations, per-channel weights, no smoothing", variant(base, alpha=None, per_token=True))
    for alpha in (0.5, 0.8):
        measure(f"SmoothQuant alpha {alpha} + per-token activations (the service's int8 at 0.5)",
                variant(base, alpha=alpha, per_token=True))
    if not any(r["meets_target"] for r in rows[1:]):
        scan = worst_layers(base, tokens[:64], reference[:64], alpha=0.5, per_token=True)
        results["sensitivity"] = scan[:16]
        for keep in args.keep:
            kept = tuple(name for name, _ in scan[:keep])
            measure(f"SmoothQuant 0.5 + per-token, {keep} worst layers in fp32 ({', '.join(kept)})",
                    variant(base, alpha=0.5, per_token=True, keep_float=kept))
    results["first_meeting_target"] = next((r["variant"] for r in rows[1:] if r["meets_target"]), None)
    (out / "int8.json").write_text(json.dumps(results, indent=2))
    logger.info("wrote %s; first variant at min cosine >= %.2f: %s", out / "int8.json", TARGET,
                results["first_meeting_target"])


if __name__ == "__main__":
    main()
