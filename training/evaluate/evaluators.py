"""Evaluate any encoder, given as `encode(texts) -> (N, D) normalised`, on pair and retrieval sets.
Every set returns flat `name/metric` keys; `primary` is the mean of each set's primary metric."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from training.data.pairs import PairSet, RetrievalSet
from training.evaluate.metrics import (
    average_precision,
    best_threshold,
    classification_at,
    no_match_metrics,
    retrieval_metrics,
    roc_auc,
    spearman,
)

EncodeFn = Callable[[list[str]], np.ndarray]
PRIMARY = {"pairs": "f1", "retrieval": "r@1", "no_match": "auroc"}


@dataclass(frozen=True)
class NoMatchSet:
    """No-match detection: in-scope queries have their entry in the corpus, out-of-scope queries do not
    (their intent was held out of the corpus). Scored by each query's best corpus similarity."""

    name: str
    corpus_texts: list[str]
    queries_in: list[str]
    queries_out: list[str]


def pair_scores(encode: EncodeFn, pairs: PairSet) -> tuple[np.ndarray, np.ndarray]:
    a = encode([p.text_a for p in pairs.pairs])
    b = encode([p.text_b for p in pairs.pairs])
    return (a * b).sum(axis=1), np.array([p.label for p in pairs.pairs])


def evaluate_pairs(encode: EncodeFn, pairs: PairSet, threshold: float | None = None) -> dict[str, float]:
    """F1 at the best threshold on this set, or at a given (dev-chosen) threshold; plus AP and ROC-AUC."""
    scores, labels = pair_scores(encode, pairs)
    chosen = best_threshold(scores, labels) if threshold is None else threshold
    out = classification_at(scores, labels, chosen)
    out.update(ap=average_precision(scores, labels), roc_auc=roc_auc(scores, labels))
    return out


def evaluate_retrieval(encode: EncodeFn, data: RetrievalSet) -> dict[str, float]:
    corpus, queries = encode(data.corpus_texts), encode(data.queries)
    return retrieval_metrics(queries @ corpus.T, data.corpus_labels, data.query_labels)


def evaluate_no_match(encode: EncodeFn, data: NoMatchSet) -> dict[str, float]:
    corpus = encode(data.corpus_texts)
    best_in = (encode(data.queries_in) @ corpus.T).max(axis=1)
    best_out = (encode(data.queries_out) @ corpus.T).max(axis=1)
    return no_match_metrics(best_in, best_out)


def evaluate_agreement(encode_student: EncodeFn, encode_teacher: EncodeFn, pairs: PairSet) -> dict[str, float]:
    """Teacher-student agreement: Spearman of the two models' cosine similarities on the same pairs."""
    student, _ = pair_scores(encode_student, pairs)
    teacher, _ = pair_scores(encode_teacher, pairs)
    return {"spearman": spearman(student, teacher)}


def evaluate_all(
    encode: EncodeFn, sets: list[PairSet | RetrievalSet | NoMatchSet], thresholds: dict[str, float] | None = None
) -> dict[str, float]:
    results: dict[str, float] = {}
    primaries = []
    for data in sets:
        if isinstance(data, PairSet):
            metrics = evaluate_pairs(encode, data, (thresholds or {}).get(data.name))
            primaries.append(metrics[PRIMARY["pairs"]])
        elif isinstance(data, NoMatchSet):
            metrics = evaluate_no_match(encode, data)
            primaries.append(metrics[PRIMARY["no_match"]])
        else:
            metrics = evaluate_retrieval(encode, data)
            primaries.append(metrics[PRIMARY["retrieval"]])
        results.update({f"{data.name}/{k}": v for k, v in metrics.items()})
    results["primary"] = float(np.mean(primaries)) if primaries else float("nan")
    return results


def thresholds_from(results: dict[str, float]) -> dict[str, float]:
    """Per-set thresholds chosen on dev, to apply unchanged to test."""
    return {k.split("/")[0]: v for k, v in results.items() if k.endswith("/threshold")}


def evaluate_split(
    encode: EncodeFn,
    dev: list[PairSet | RetrievalSet | NoMatchSet],
    test: list[PairSet | RetrievalSet | NoMatchSet],
    split: str,
) -> dict[str, float]:
    """The dev results, or the test results at the thresholds chosen on dev (never refitted on test)."""
    dev_results = evaluate_all(encode, dev)
    return dev_results if split == "dev" else evaluate_all(encode, test, thresholds_from(dev_results))
