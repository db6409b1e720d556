"""Calibrator's scoring on hand-made unit vectors: per-entry grouping like a search, leave-one-out excludes only
the query's own vector, and the pool file loads."""

from __future__ import annotations

import numpy as np

from service.corpus.calibrator import load_pool, rank
from service.corpus.store import VectorRows


def rows(vectors: list[list[float]], entries: list[str]) -> VectorRows:
    matrix = np.asarray(vectors, np.float32)
    matrix /= np.linalg.norm(matrix, axis=1, keepdims=True)
    return VectorRows(np.arange(len(entries), dtype=np.int64), entries, [f"t{i}" for i in range(len(entries))],
                      matrix)


def test_scores_are_grouped_per_entry():
    corpus = rows([[1, 0, 0], [0.9, 0.1, 0], [0, 1, 0], [0, 0, 1]], ["a", "a", "b", "c"])
    query = np.asarray([[1, 0, 0]], np.float32)
    best, top1, top2 = rank(query, corpus)
    assert best == ["a"] and top1[0] == np.float32(1.0)
    # The runner-up is the best of another entry (b and c both score 0), not a's second vector.
    assert top2[0] == 0.0


def test_leave_one_out_excludes_only_the_own_vector():
    corpus = rows([[1, 0, 0], [0.8, 0.6, 0], [0, 0.7, 0.7], [0, 0, 1]], ["a", "a", "b", "c"])
    queries = corpus.vectors[[0, 1]]
    best, top1, _ = rank(queries, corpus, exclude=np.asarray([0, 1]))
    # Without itself each of a's questions finds the other one (0.8), above b (0 and 0.42).
    assert best == ["a", "a"]
    assert np.isclose(top1[0], 0.8) and np.isclose(top1[1], 0.8)
    # An entry with a single vector cannot find itself once excluded.
    best, _, _ = rank(corpus.vectors[[3]], corpus, exclude=np.asarray([3]))
    assert best[0] != "c"


def test_chunking_gives_the_same_answer(monkeypatch):
    rng = np.random.default_rng(0)
    corpus = rows(rng.standard_normal((50, 8)).tolist(), [f"e{i % 7}" for i in range(50)])
    queries = corpus.vectors[:20]
    whole = rank(queries, corpus, exclude=np.arange(20))
    monkeypatch.setattr("service.corpus.calibrator.MATMUL_CELLS", 60)  # one query per chunk
    chunked = rank(queries, corpus, exclude=np.arange(20))
    assert whole[0] == chunked[0] and np.allclose(whole[1], chunked[1]) and np.allclose(whole[2], chunked[2])


def test_single_entry_corpus_has_no_runner_up():
    corpus = rows([[1, 0], [0, 1]], ["only", "only"])
    best, top1, top2 = rank(np.asarray([[1, 0]], np.float32), corpus)
    assert best == ["only"] and top1[0] == 1.0 and top2[0] == -np.inf


def test_pool_loads_without_its_header():
    pool = load_pool()
    assert pool and not any(q.startswith("#") for q in pool)
