"""The no-match and agreement evaluators with a fake encoder (fixed vectors per text): no models."""

from __future__ import annotations

import numpy as np
import pytest

from training.data.pairs import Pair, PairSet, RetrievalSet
from training.evaluate.evaluators import NoMatchSet, evaluate_agreement, evaluate_all, evaluate_no_match

ANGLES = {"card": 0.0, "where is my card": 0.1, "top up": 1.5, "exchange rate": 0.8, "lost card": 0.3}


def encode(texts: list[str]) -> np.ndarray:
    return np.array([[np.cos(ANGLES[t]), np.sin(ANGLES[t])] for t in texts])


def test_no_match_separates_out_of_scope_queries():
    data = NoMatchSet(
        "nm", ["card", "top up"], queries_in=["where is my card", "lost card"], queries_out=["exchange rate"]
    )
    # best cosines: in-scope cos(0.1), cos(0.2); out-of-scope cos(0.7) (to "top up") -> all in-scope above
    out = evaluate_no_match(encode, data)
    assert out == {"auroc": 1.0, "precision@90recall": 1.0}


def test_evaluate_all_routes_no_match_and_keeps_other_sets():
    sets = [
        RetrievalSet("faq", ["card", "top up"], ["c", "t"], ["where is my card"], ["c"]),
        NoMatchSet("nm", ["card"], ["where is my card"], ["top up"]),
    ]
    out = evaluate_all(encode, sets)
    assert out["faq/r@1"] == 1.0 and out["nm/auroc"] == 1.0
    assert out["primary"] == pytest.approx(1.0)


def test_agreement_is_rank_correlation_of_the_two_models():
    pairs = PairSet("p", [Pair("card", "where is my card", 1), Pair("card", "lost card", 1), Pair("card", "top up", 0)])
    assert evaluate_agreement(encode, encode, pairs)["spearman"] == pytest.approx(1.0)

    other = {"card": 0.0, "where is my card": 1.2, "lost card": 0.6, "top up": 0.1}  # opposite order of pairs

    def other_encode(texts: list[str]) -> np.ndarray:
        return np.array([[np.cos(other[t]), np.sin(other[t])] for t in texts])

    assert evaluate_agreement(other_encode, encode, pairs)["spearman"] == pytest.approx(-1.0)
