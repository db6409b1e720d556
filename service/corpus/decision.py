"""The answer / clarify / no_match rule, as pure functions of scores and thresholds."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

Outcome = Literal["answer", "clarify", "no_match"]
OUTCOMES: tuple[Outcome, ...] = ("answer", "clarify", "no_match")


def decide(scores: Sequence[float], *, answer_threshold: float, clarify_margin: float) -> Outcome:
    """`scores`: the best score of each candidate entry, best first (one per entry, so top-2 is a different entry).

    no_match: nothing scores at least `answer_threshold`.
    clarify:  the runner-up is within `clarify_margin` of the best (the query fits two entries about as well).
    answer:   otherwise.
    """
    if not scores or scores[0] < answer_threshold:
        return "no_match"
    if len(scores) > 1 and scores[0] - scores[1] < clarify_margin:
        return "clarify"
    return "answer"


def clarify_options(scores: Sequence[float], *, clarify_margin: float) -> int:
    """How many leading candidates are within the margin of the best (at least 2 when clarifying)."""
    if not scores:
        return 0
    return sum(1 for s in scores if scores[0] - s < clarify_margin)
