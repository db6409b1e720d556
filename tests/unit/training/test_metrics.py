from __future__ import annotations

import numpy as np
import pytest

from training.evaluate.metrics import (
    average_precision,
    best_threshold,
    classification_at,
    retrieval_metrics,
    roc_auc,
)


def test_best_threshold_separates_and_f1():
    scores = np.array([0.9, 0.8, 0.7, 0.4, 0.3])
    labels = np.array([1, 1, 0, 1, 0])
    t = best_threshold(scores, labels)
    out = classification_at(scores, labels, t)
    # best F1: predict the top 4 positive -> tp=3 fp=1 fn=0 -> F1 = 6/7 (top 2: tp=2, fn=1 -> 0.8)
    assert out["f1"] == pytest.approx(6 / 7)
    assert 0.3 < t < 0.4


def test_ap_and_auc_hand_values():
    scores = np.array([0.9, 0.8, 0.7, 0.4])
    labels = np.array([1, 0, 1, 0])
    assert average_precision(scores, labels) == pytest.approx((1 / 1 + 2 / 3) / 2)
    assert roc_auc(scores, labels) == pytest.approx(3 / 4)


def test_retrieval_metrics_entry_max_over_alternates():
    corpus_labels = ["a", "a", "b", "c"]
    # query 0 (gold a): best a-alternate 0.9 beats b 0.5 -> rank 0
    # query 1 (gold c): b 0.8 > c 0.6 > a -> rank 1
    sim = np.array([[0.2, 0.9, 0.5, 0.1], [0.1, 0.3, 0.8, 0.6]])
    out = retrieval_metrics(sim, corpus_labels, ["a", "c"])
    assert out["r@1"] == 0.5 and out["r@5"] == 1.0
    assert out["mrr@10"] == pytest.approx((1 + 0.5) / 2)
    assert out["ndcg@10"] == pytest.approx((1 + 1 / np.log2(3)) / 2)
