"""Serving cost per query of each student choice, side by side in one process: every choice is exported as the
service would serve it (Transformer cut at its readout block -> mean pooling -> Dense(r) -> Normalize; the
untrained adapters merge to the same shapes a distilled one has), loaded by the service's own encoder in fp32 on
the same thread count, and timed in interleaved rounds on real Banking77 test questions at batch 1 and batch 32.

    .venv/bin/python -m bench.student_cost --student packaged:smollm2-135m-instruct:15 --student packaged:gemma3-270m:9
"""

from __future__ import annotations

import argparse
import json
import logging
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from bench.data import load_queries

logger = logging.getLogger("bench.student_cost")


def export_choice(spec: str, root: Path) -> Path:
    """`<model>:<blocks>` -> an exported artifact folder of that cut (mean pooling, readout rank 256)."""
    from training.config import LoraSection, StudentConfig
    from training.export import export_student
    from training.student import load_student

    model, _, blocks = spec.rpartition(":")
    student = load_student(StudentConfig(model=model, pooling="mean", num_layers=int(blocks)), LoraSection())
    out = root / spec.replace(":", "_").replace("/", "_")
    export_student(student, out, manifest={"student_id": model}, model_card="# cost benchmark\n")
    return out


def ms_per_query(encoder, queries: list[str], batch: int, count: int) -> float:
    """Median over `count` calls of the forward time of `batch` queries (tokenized beforehand), per query."""
    tokens = encoder.tokenize(queries[: batch * count])
    times = []
    for i in range(count):
        chunk = tokens[i * batch : (i + 1) * batch]
        started = time.perf_counter()
        encoder.encode(chunk)
        times.append(time.perf_counter() - started)
    return 1000 * float(np.median(times)) / batch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--student", action="append", required=True, help="<model>:<blocks kept>, repeatable")
    parser.add_argument("--data-dir", default="../shared/data")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--dtype", default="float32", help="float32 or bfloat16 (what fast-bf16 CPUs serve)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--calls", type=int, default=24, help="timed calls per batch size per round")
    parser.add_argument("--out", help="also write the results as JSON here")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    from service.engine.encoder import load_encoder

    queries = load_queries(Path(args.data_dir))
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        encoders = {}
        for spec in args.student:
            path = export_choice(spec, Path(tmp))
            encoders[spec] = load_encoder(str(path), device="cpu", dtype=args.dtype, cpu_threads=args.threads)
            torch.set_num_threads(args.threads)
        samples: dict[str, dict[int, list[float]]] = {s: {1: [], 32: []} for s in encoders}
        for round_ in range(args.rounds):
            shuffled = [queries[i] for i in rng.permutation(len(queries))]  # same queries for every choice
            for spec, encoder in encoders.items():
                for batch in (1, 32):
                    encoder.encode(encoder.tokenize(shuffled[:batch]))  # warm-up
                    samples[spec][batch].append(ms_per_query(encoder, shuffled, batch, args.calls))
                logger.info("round %d %s: %s", round_ + 1, spec, {b: v[-1] for b, v in samples[spec].items()})
    rows = [{"student": spec, "threads": args.threads, "dtype": args.dtype,
             "ms_per_query_batch1": float(np.median(s[1])), "ms_per_query_batch32": float(np.median(s[32])),
             "rounds": args.rounds} for spec, s in samples.items()]
    base = rows[0]
    print(f"| student (blocks kept) | ms/query, batch 1 | ms/query, batch 32 | vs {base['student']} (batch 1, 32) |")
    print("|---|---|---|---|")
    for row in rows:
        print(f"| {row['student']} | {row['ms_per_query_batch1']:.2f} | {row['ms_per_query_batch32']:.2f} | "
              f"{row['ms_per_query_batch1'] / base['ms_per_query_batch1']:.2f}x, "
              f"{row['ms_per_query_batch32'] / base['ms_per_query_batch32']:.2f}x |")
    if args.out:
        Path(args.out).write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
