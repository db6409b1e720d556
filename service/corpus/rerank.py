"""Reordering search candidates by a match probability: a pure function (the probabilities come from the
engine's match head, handed in by the route)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

T = TypeVar("T")

MATCH_PROBABILITY_THRESHOLD = 0.5  # the head's own decision point: softmax over (yes, no)


def rerank(candidates: Sequence[T], probabilities: Sequence[float]) -> list[tuple[T, float]]:
    """Candidates with their probabilities, by descending probability; ties keep the retrieval order."""
    if len(candidates) != len(probabilities):
        raise ValueError(f"{len(candidates)} candidates but {len(probabilities)} probabilities")
    order = sorted(range(len(candidates)), key=lambda i: -probabilities[i])
    return [(candidates[i], float(probabilities[i])) for i in order]
