"""Rerank benchmark: test R@1 on Banking77 FAQ retrieval and MedQuAD question -> answer, with the embedding
alone and with the artifact's match head reordering the top-k entries, and the head's added latency per query
at concurrency 1 and 32, all measured side by side in one run on the service's own engine modules.

    python -m bench.rerank_bench --model artifacts/flipmatch-gen --top-k 10 --out bench/results/rerank.json

The model must carry a match_head (trained with loss.generative_weight > 0; docs/artifact.md).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from service.engine.encoder import load_encoder
from service.engine.reranker import load_reranker
from training.config import DataConfig
from training.data.pairs import RetrievalSet
from training.quality.tasks import TaskLimits, build_tasks


def _entries(rs: RetrievalSet, sims: np.ndarray, k: int) -> list[list[int]]:
    """Per query: corpus rows of the top-k distinct entries (best-scoring row per entry), best first."""
    out = []
    for row in sims:
        seen: dict[str, int] = {}
        for index in np.argsort(-row):
            seen.setdefault(rs.corpus_labels[index], int(index))
            if len(seen) == k:
                break
        out.append(list(seen.values()))
    return out


def _sample(rs: RetrievalSet, n: int | None, seed: int) -> RetrievalSet:
    """The set with a seeded random sample of n queries (all of them when n is None or larger)."""
    if n is None or n >= len(rs.queries):
        return rs
    keep = sorted(np.random.default_rng(seed).choice(len(rs.queries), n, replace=False))
    return RetrievalSet(rs.name, rs.corpus_texts, rs.corpus_labels, [rs.queries[i] for i in keep],
                        [rs.query_labels[i] for i in keep])


def evaluate(encoder, reranker, rs: RetrievalSet, k: int) -> dict[str, float]:
    def embed(texts: list[str]) -> np.ndarray:
        vecs = np.concatenate([encoder.encode(encoder.tokenize(texts[i : i + 64])) for i in range(0, len(texts), 64)])
        return vecs / np.linalg.norm(vecs, axis=1, keepdims=True)

    tops = _entries(rs, embed(rs.queries) @ embed(rs.corpus_texts).T, k)
    plain = reranked = 0
    for query, label, top in zip(rs.queries, rs.query_labels, tops, strict=True):
        plain += rs.corpus_labels[top[0]] == label
        probs = reranker.probabilities(query, [rs.corpus_texts[i] for i in top])
        reranked += rs.corpus_labels[top[int(np.argmax(probs))]] == label
    n = len(rs.queries)
    return {"queries": n, "r@1_embedding": plain / n, "r@1_rerank": reranked / n,
            "recall@k_ceiling": sum(label in {rs.corpus_labels[i] for i in top}
                                    for label, top in zip(rs.query_labels, tops, strict=True)) / n}


def latency(reranker, query: str, candidates: list[str], requests: int, concurrency: int) -> dict[str, float]:
    """Wall-clock ms per rerank call (one query, len(candidates) pairs) with `concurrency` callers."""

    def one(_: int) -> float:
        started = time.perf_counter()
        reranker.probabilities(query, candidates)
        return (time.perf_counter() - started) * 1000

    started = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        each = list(pool.map(one, range(requests)))
    wall = time.perf_counter() - started
    return {"concurrency": concurrency, "p50_ms": statistics.median(each), "max_ms": max(each),
            "queries_per_s": requests / wall}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--top-k", type=int, default=10)
    parser.add_argument("--requests", type=int, default=64)
    parser.add_argument("--data-dir", default=DataConfig().data_dir)
    parser.add_argument("--max-queries", type=int, default=None,
                        help="a seeded random sample of N queries per set (test files are ordered by label)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    encoder = load_encoder(args.model, device="cpu", dtype="float32")
    reranker = load_reranker(encoder)
    if reranker is None:
        raise SystemExit(f"{args.model} has no match_head: export a student trained with loss.generative_weight > 0")
    tasks = build_tasks(DataConfig(data_dir=args.data_dir), TaskLimits(), ["banking77", "medquad"])
    sets = [_sample(rs, args.max_queries, args.seed) for rs in tasks.test if isinstance(rs, RetrievalSet)]
    quality = {rs.name: evaluate(encoder, reranker, rs, args.top_k) for rs in sets}
    faq = sets[0]
    candidates = faq.corpus_texts[: args.top_k]
    timing = [latency(reranker, faq.queries[0], candidates, args.requests, c) for c in (1, 32)]
    report = {"model": args.model, "top_k": args.top_k, "max_queries": args.max_queries, "seed": args.seed,
              "quality": quality, "rerank_latency": timing}
    print("| set | queries | R@1 embedding | R@1 + rerank | top-k ceiling |")
    print("|---|---|---|---|---|")
    for name, q in quality.items():
        print(f"| {name} | {q['queries']} | {q['r@1_embedding']:.3f} | {q['r@1_rerank']:.3f} "
              f"| {q['recall@k_ceiling']:.3f} |")
    for t in timing:
        print(f"rerank top-{args.top_k} at concurrency {t['concurrency']}: p50 {t['p50_ms']:.1f} ms, "
              f"{t['queries_per_s']:.1f} queries/s")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
