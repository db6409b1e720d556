"""How far ahead to fill the caches (the teacher's vectors and the frozen blocks' states, once per distinct text).

Filling them for the whole configured plan wastes the budget whenever the machine can train only part of it:
a default run of 2026-12-05 filled 18,039 training texts for 2,400 steps (with the dev texts and the zero-shot
dev evaluation, 6 of its 10 minutes) and trained 841. So the caches are first filled for a few probe steps;
after those, the measured fill time per text and step time pick the most steps whose new texts and training
both fit the budget left, and only their texts are filled. Both speeds are measured, so a slower machine gets a
shorter, complete schedule, as before."""

from __future__ import annotations

from collections.abc import Iterable

from training.data.pairs import Pair

PROBE_STEPS = 40  # steps trained on the first fill, to measure the step time before choosing the horizon


def batch_texts(batches: Iterable[list[Pair]]) -> list[str]:
    """The distinct texts of the batches, in first-use order."""
    return list(dict.fromkeys(t for pairs in batches for p in pairs for t in (p.text_a, p.text_b)))


def new_text_counts(batches: Iterable[list[Pair]], filled: set[str]) -> list[int]:
    """counts[k] = distinct texts of the first k batches that are not in `filled` (counts[0] = 0)."""
    seen, counts = set(filled), [0]
    for pairs in batches:
        fresh = {t for p in pairs for t in (p.text_a, p.text_b)} - seen
        seen |= fresh
        counts.append(counts[-1] + len(fresh))
    return counts


def affordable_steps(
    new_texts: list[int], fill_s: float, step_s: float, left_s: float, eval_s: float = 0.0, eval_every: int = 0
) -> int:
    """The largest k (0 .. len(new_texts) - 1) for which filling the first k batches' new texts, training them
    and the evaluations on the way (one every `eval_every` steps, plus the final one) take at most `left_s`."""
    best = 0
    for k in range(1, len(new_texts)):
        evals = (k // eval_every if eval_every else 0) + 1
        if new_texts[k] * fill_s + k * step_s + evals * eval_s > left_s:
            break  # every term grows with k
        best = k
    return best
