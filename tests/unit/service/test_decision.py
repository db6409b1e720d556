"""The answer / clarify / no_match rule."""

from __future__ import annotations

import pytest

from service.corpus.decision import clarify_options, decide


@pytest.mark.parametrize(("scores", "expected"), [
    ([], "no_match"),
    ([0.49], "no_match"),
    ([0.49, 0.48], "no_match"),
    ([0.9], "answer"),
    ([0.9, 0.7], "answer"),
    ([0.9, 0.87], "clarify"),
    ([0.5, 0.5], "clarify"),
])
def test_decide(scores, expected):
    assert decide(scores, answer_threshold=0.5, clarify_margin=0.05) == expected


def test_a_gap_equal_to_the_margin_answers():
    assert decide([0.75, 0.5], answer_threshold=0.5, clarify_margin=0.25) == "answer"  # exact in binary


def test_clarify_options_are_the_candidates_within_the_margin():
    assert clarify_options([0.9, 0.88, 0.86, 0.7], clarify_margin=0.05) == 3
    assert clarify_options([], clarify_margin=0.05) == 0
