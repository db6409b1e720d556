"""No-match detection and teacher-student agreement metrics on hand-computed values."""

from __future__ import annotations

import numpy as np
import pytest

from training.evaluate.metrics import average_ranks, no_match_metrics, precision_at_recall, spearman


def test_precision_at_recall_hand_value():
    # positives 0.9, 0.7, 0.5; negatives 0.8, 0.6, 0.2. 90% recall of 3 positives needs all 3 -> threshold 0.5
    # -> predicted: 0.9 0.8 0.7 0.6 0.5 -> 3 of 5 are positive.
    scores = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.2])
    labels = np.array([1, 0, 1, 0, 1, 0])
    assert precision_at_recall(scores, labels, 0.9) == pytest.approx(3 / 5)
    # 60% recall needs 2 positives -> threshold 0.7 -> 0.9 0.8 0.7 -> 2 of 3.
    assert precision_at_recall(scores, labels, 0.6) == pytest.approx(2 / 3)


def test_precision_at_recall_counts_ties_against_precision():
    scores = np.array([0.5, 0.5, 0.4])
    labels = np.array([1, 0, 0])
    assert precision_at_recall(scores, labels, 0.9) == pytest.approx(1 / 2)


def test_no_match_hand_values():
    in_scope = np.array([0.9, 0.7, 0.5])  # best corpus cosine of answerable queries
    out_of_scope = np.array([0.8, 0.6, 0.2])  # queries whose intent is absent from the corpus
    out = no_match_metrics(in_scope, out_of_scope)
    # pairs (in > out): 0.9 beats 3, 0.7 beats 2, 0.5 beats 1 -> 6 of 9
    assert out["auroc"] == pytest.approx(6 / 9)
    assert out["precision@90recall"] == pytest.approx(3 / 5)
    perfect = no_match_metrics(np.array([0.9, 0.8]), np.array([0.1, 0.2]))
    assert perfect == {"auroc": 1.0, "precision@90recall": 1.0}


def test_average_ranks_share_ties():
    np.testing.assert_allclose(average_ranks(np.array([10.0, 20.0, 20.0, 5.0])), [2.0, 3.5, 3.5, 1.0])


def test_spearman_hand_values():
    a = np.array([1.0, 2.0, 3.0, 4.0])
    assert spearman(a, a * 10 + 3) == pytest.approx(1.0)
    assert spearman(a, -a) == pytest.approx(-1.0)
    # ranks (1,2,3,4) vs (2,1,4,3): d^2 = 1+1+1+1 = 4 -> 1 - 6*4/(4*15) = 0.6
    assert spearman(a, np.array([0.2, 0.1, 0.4, 0.3])) == pytest.approx(0.6)
    assert np.isnan(spearman(a, np.ones(4)))
    with pytest.raises(ValueError, match="lengths differ"):
        spearman(a, a[:3])


def test_spearman_matches_scipy_with_ties():
    stats = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng(0)
    a, b = rng.integers(0, 5, 40).astype(float), rng.normal(size=40)
    assert spearman(a, b) == pytest.approx(stats.spearmanr(a, b).statistic)
