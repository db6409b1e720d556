"""Pure metric functions on numpy arrays: pair classification and FAQ retrieval. No models here."""

from __future__ import annotations

import numpy as np


def best_threshold(scores: np.ndarray, labels: np.ndarray) -> float:
    """Cosine threshold that maximises F1 (midpoint between neighbouring scores)."""
    order = np.argsort(-scores)
    s, y = scores[order], labels[order].astype(bool)
    tp = np.cumsum(y)
    fp = np.cumsum(~y)
    f1 = 2 * tp / (tp + fp + y.sum())  # predicting the first i+1 as positive
    best = int(np.argmax(f1))
    nxt = s[best + 1] if best + 1 < len(s) else s[best] - 1e-3
    return float((s[best] + nxt) / 2)


def classification_at(scores: np.ndarray, labels: np.ndarray, threshold: float) -> dict[str, float]:
    pred, y = scores >= threshold, labels.astype(bool)
    tp, fp, fn = (pred & y).sum(), (pred & ~y).sum(), (~pred & y).sum()
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {
        "accuracy": float((pred == y).mean()),
        "precision": float(precision),
        "recall": float(recall),
        "f1": float(f1),
        "threshold": float(threshold),
    }


def average_precision(scores: np.ndarray, labels: np.ndarray) -> float:
    order = np.argsort(-scores)
    y = labels[order].astype(bool)
    if not y.any():
        return 0.0
    hits = np.cumsum(y)
    return float((hits[y] / (np.flatnonzero(y) + 1)).mean())


def roc_auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Probability a random positive outscores a random negative (ties count half)."""
    y = labels.astype(bool)
    pos, neg = scores[y], scores[~y]
    if len(pos) == 0 or len(neg) == 0:
        return float("nan")
    greater = (pos[:, None] > neg[None, :]).sum()
    ties = (pos[:, None] == neg[None, :]).sum()
    return float((greater + 0.5 * ties) / (len(pos) * len(neg)))


def entry_scores(sim: np.ndarray, corpus_labels: np.ndarray, entries: np.ndarray) -> np.ndarray:
    """(Q, C) text similarities -> (Q, E) entry scores: an entry scores its best question or alternate."""
    out = np.full((sim.shape[0], len(entries)), -np.inf, dtype=np.float32)
    for e, entry in enumerate(entries):
        out[:, e] = sim[:, corpus_labels == entry].max(axis=1)
    return out


def retrieval_metrics(sim: np.ndarray, corpus_labels: list[str], query_labels: list[str]) -> dict[str, float]:
    """R@1/5/10, MRR@10 and nDCG@10 (one relevant entry per query)."""
    labels = np.asarray(corpus_labels)
    entries = np.unique(labels)
    scores = entry_scores(sim, labels, entries)
    gold = np.searchsorted(entries, np.asarray(query_labels))
    gold_score = scores[np.arange(len(gold)), gold]
    rank = (scores > gold_score[:, None]).sum(axis=1)  # 0-based rank of the gold entry
    out = {f"r@{k}": float((rank < k).mean()) for k in (1, 5, 10)}
    out["mrr@10"] = float(np.where(rank < 10, 1.0 / (rank + 1), 0.0).mean())
    out["ndcg@10"] = float(np.where(rank < 10, 1.0 / np.log2(rank + 2), 0.0).mean())
    return out


def precision_at_recall(scores: np.ndarray, labels: np.ndarray, recall: float = 0.9) -> float:
    """Precision at the highest threshold whose recall of the positives reaches `recall`.

    Thresholds are the scores themselves; everything scoring >= the threshold is predicted positive (ties
    included, so a tie never flatters precision)."""
    y = labels.astype(bool)
    if not y.any():
        return float("nan")
    pos_sorted = np.sort(scores[y])[::-1]
    need = int(np.ceil(recall * len(pos_sorted) - 1e-9))  # positives that must score >= threshold
    threshold = pos_sorted[max(need, 1) - 1]
    pred = scores >= threshold
    return float((pred & y).sum() / pred.sum())


def no_match_metrics(in_scope: np.ndarray, out_of_scope: np.ndarray, recall: float = 0.9) -> dict[str, float]:
    """No-match detection from each query's best corpus score.

    In-scope queries (their answer is in the corpus) are the positives: a good encoder scores them above the
    answer threshold and out-of-scope queries below it. `auroc`: P(in-scope score > out-of-scope score).
    `precision@90recall`: set the answer threshold so 90% of in-scope queries are answered; the share of
    answered queries that are in scope."""
    scores = np.concatenate([in_scope, out_of_scope])
    labels = np.concatenate([np.ones(len(in_scope)), np.zeros(len(out_of_scope))])
    return {
        "auroc": roc_auc(scores, labels),
        f"precision@{round(recall * 100)}recall": precision_at_recall(scores, labels, recall),
    }


def average_ranks(values: np.ndarray) -> np.ndarray:
    """1-based ranks; tied values share the mean of their ranks (as scipy.stats.rankdata 'average')."""
    values = np.asarray(values, dtype=np.float64)
    order = np.argsort(values, kind="mergesort")
    ranks = np.empty(len(values), dtype=np.float64)
    sorted_vals = values[order]
    start = 0
    while start < len(values):
        end = start
        while end + 1 < len(values) and sorted_vals[end + 1] == sorted_vals[start]:
            end += 1
        ranks[order[start : end + 1]] = (start + end) / 2 + 1
        start = end + 1
    return ranks


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman rank correlation: Pearson correlation of the average ranks (NaN when either side is constant)."""
    if len(a) != len(b):
        raise ValueError(f"spearman: lengths differ ({len(a)} vs {len(b)})")
    ra, rb = average_ranks(a), average_ranks(b)
    ra, rb = ra - ra.mean(), rb - rb.mean()
    denom = np.sqrt((ra**2).sum() * (rb**2).sum())
    return float((ra * rb).sum() / denom) if denom > 0 else float("nan")
