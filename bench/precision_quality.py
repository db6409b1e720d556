"""What each serving precision does to retrieval, not only to vector cosines: Banking77 test R@1 (query -> the
training question of the same intent, nearest neighbour over the training questions) with the service's own
Encoder in float32, bfloat16 and int8, side by side in one process, plus each one's min/mean cosine to float32
and how many top-1 answers change. Grounds the start-up calibration's parity bars (service/engine/device.py).

    .venv/bin/python -m bench.precision_quality --model artifacts/flipmatch-default --data-dir ../shared/data \
        --out bench/results/precision.json
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
from pathlib import Path

import numpy as np
import torch

from bench import machine
from service.engine.artifact import read_artifact, resolve_model_path
from service.engine.device import Placement
from service.engine.encoder import Encoder

logger = logging.getLogger("bench.precision")


def _rows(path: Path, limit: int | None) -> tuple[list[str], list[str]]:
    with path.open(newline="", encoding="utf-8") as handle:
        rows = [(r["text"], r["category"]) for r in csv.DictReader(handle) if r.get("text")]
    if limit is not None and limit < len(rows):
        rows = [rows[i] for i in sorted(np.random.default_rng(0).choice(len(rows), limit, replace=False))]
    return [t for t, _ in rows], [lbl for _, lbl in rows]


def _embed(encoder: Encoder, texts: list[str]) -> np.ndarray:
    parts = [encoder.encode(encoder.tokenize(texts[i : i + 32])) for i in range(0, len(texts), 32)]
    vectors = np.concatenate(parts)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="artifacts/flipmatch-default")
    parser.add_argument("--data-dir", type=Path, default=Path("../shared/data"))
    parser.add_argument("--dtypes", nargs="+", default=["float32", "bfloat16", "int8"])
    parser.add_argument("--corpus", type=int, default=2000, help="training questions searched (seeded sample)")
    parser.add_argument("--queries", type=int, default=None, help="test questions (seeded sample; default all)")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    torch.set_num_threads(2)
    root = resolve_model_path(args.model)
    spec = read_artifact(root, name=root.name)
    corpus, corpus_labels = _rows(args.data_dir / "banking77" / "train.csv", args.corpus)
    queries, query_labels = _rows(args.data_dir / "banking77" / "test.csv", args.queries)
    labels = np.asarray(corpus_labels)
    rows, reference, reference_top = [], None, None
    for dtype in args.dtypes:  # no parity gate here: measuring what a failing dtype would do is the point
        encoder = Encoder(spec, Placement("cpu", (dtype,), "bench"), dtype)
        query_vectors, corpus_vectors = _embed(encoder, queries), _embed(encoder, corpus)
        top = (query_vectors @ corpus_vectors.T).argmax(axis=1)
        row = {"dtype": dtype, "r@1": float((labels[top] == np.asarray(query_labels)).mean())}
        if reference is None:
            reference, reference_top = query_vectors, top
        cosines = (query_vectors * reference).sum(axis=1)
        row.update(min_cosine=float(cosines.min()), mean_cosine=float(cosines.mean()),
                   top1_changed=int((top != reference_top).sum()))
        rows.append(row)
        logger.info("%s", row)
    report = {"machine": machine.describe(), "model": args.model, "queries": len(queries), "corpus": len(corpus),
              "rows": rows}
    print("| dtype | Banking77 R@1 | min cosine vs fp32 | mean cosine | top-1 changed |")  # noqa: T201
    print("|---|---:|---:|---:|---:|")  # noqa: T201
    for r in rows:
        print(f"| {r['dtype']} | {r['r@1']:.4f} | {r['min_cosine']:.5f} | {r['mean_cosine']:.6f} | "  # noqa: T201
              f"{r['top1_changed']} of {len(queries)} |")
    if args.out:
        args.out.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
