"""FAISS at scale for the index types the service builds (service/corpus/index.py): exact inner product (flat)
and HNSW (M=32, efConstruction=100, efSearch max(64, 2k)). Clustered random unit vectors of the model's
dimension; p50/p99 single-query latency and recall@10 against exact search. Bounded: the HNSW build stops at
--hnsw-build-seconds and reports the size it reached.

    .venv/bin/python -m bench.faiss_bench --n 1000000 --dim 256 --out bench/results
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

import faiss
import numpy as np

from bench import machine
from bench.stats import percentile
from service.corpus.index import HNSW_EF_CONSTRUCTION, HNSW_EF_SEARCH_MIN, HNSW_M

logger = logging.getLogger("bench.faiss")


def clustered(n: int, dim: int, *, clusters: int = 1000, seed: int = 0) -> np.ndarray:
    """Unit vectors around `clusters` random centres (FAQ embeddings cluster by intent), float32 (n, dim)."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((clusters, dim), dtype=np.float32)
    out = np.empty((n, dim), np.float32)
    step = 100_000
    for start in range(0, n, step):
        size = min(step, n - start)
        out[start:start + size] = centres[rng.integers(0, clusters, size)] + \
            0.6 * rng.standard_normal((size, dim), dtype=np.float32)
    faiss.normalize_L2(out)
    return out


def latencies(index: faiss.Index, queries: np.ndarray, k: int, params: object = None) -> tuple[list[float], np.ndarray]:
    times, ids = [], []
    for q in queries:
        t0 = time.perf_counter()
        _, found = index.search(q[None, :], k, params=params)
        times.append((time.perf_counter() - t0) * 1000)
        ids.append(found[0])
    return times, np.stack(ids)


def recall_at(found: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean([len(set(f) & set(t)) / len(t) for f, t in zip(found, truth, strict=True)]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--dim", type=int, default=256)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--threads", type=int, default=1, help="FAISS threads (the service uses cpu_threads)")
    parser.add_argument("--hnsw-build-seconds", type=float, default=600.0,
                        help="build budget; stops early and reports the size reached (1M took ~4-8 min on 2 cores)")
    parser.add_argument("--out", type=Path, default=Path("bench/results"))
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    faiss.omp_set_num_threads(args.threads)
    k = 10
    data = clustered(args.n + args.queries, args.dim)
    base, queries = data[: args.n], data[args.n:]
    flat = faiss.IndexFlatIP(args.dim)
    flat.add(base)
    flat_ms, truth = latencies(flat, queries, k)
    result: dict[str, object] = {"n": args.n, "dim": args.dim, "threads": args.threads, "queries": args.queries,
                                 "flat": {"p50_ms": percentile(flat_ms, 50), "p99_ms": percentile(flat_ms, 99),
                                          "recall_at_10": 1.0}}
    logger.info("flat %s", result["flat"])

    hnsw = faiss.IndexHNSWFlat(args.dim, HNSW_M, faiss.METRIC_INNER_PRODUCT)
    hnsw.hnsw.efConstruction = HNSW_EF_CONSTRUCTION
    faiss.omp_set_num_threads(2)  # build with both cores; search below with --threads
    started, added, chunk = time.perf_counter(), 0, 50_000
    while added < args.n and time.perf_counter() - started < args.hnsw_build_seconds:
        hnsw.add(base[added:added + chunk])
        added += min(chunk, args.n - added)
    build_s = time.perf_counter() - started
    faiss.omp_set_num_threads(args.threads)
    if added < args.n:  # exact truth over the part that was built
        sub = faiss.IndexFlatIP(args.dim)
        sub.add(base[:added])
        _, truth = sub.search(queries, k)
    params = faiss.SearchParametersHNSW(efSearch=max(HNSW_EF_SEARCH_MIN, 2 * k))
    hnsw_ms, found = latencies(hnsw, queries, k, params)
    result["hnsw"] = {"vectors_built": added, "build_seconds": build_s, "build_vectors_per_s": added / build_s,
                      "p50_ms": percentile(hnsw_ms, 50), "p99_ms": percentile(hnsw_ms, 99),
                      "recall_at_10": recall_at(found, truth), "M": HNSW_M, "efSearch": params.efSearch}
    logger.info("hnsw %s", result["hnsw"])
    result["machine"] = machine.describe()
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "faiss.json").write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
