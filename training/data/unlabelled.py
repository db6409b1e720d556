"""The unlabelled source: a pool of texts with no gold labels, where the teacher's (B, B) similarities are the
only signal (L_dist, and MCL on classes the teacher derives; L_sup is masked for these rows).

Each pool text is paired with its teacher-nearest other pool text, so every row of a batch holds at least one
candidate the teacher finds close: an all-random batch would give MCL no teacher-derived positive to order.
The pool is built from other sources' *training* units only, so it inherits their leakage guarantees.
"""

from __future__ import annotations

import random

import numpy as np

from training.config import DataConfig
from training.data.pairs import UNLABELLED, Pair, TaskData
from training.data.sources import EmbedFn


def pool_texts(parts: list[TaskData]) -> list[str]:
    """The questions (text_a) of the sources' training units, first occurrence order, de-duplicated."""
    return list(dict.fromkeys(p.text_a for part in parts for unit in part.train for p in unit))


def pool_units(parts: list[TaskData], cfg: DataConfig, embed: EmbedFn) -> list[tuple[Pair, ...]]:
    texts = pool_texts(parts)
    if len(texts) < 2:
        raise ValueError(f"the unlabelled pool (data.unlabelled_from={cfg.unlabelled_from}) has < 2 texts")
    rng = random.Random(cfg.seed + 1)
    rng.shuffle(texts)
    anchors = texts[: cfg.max_train_anchors]
    # Partners come from a bounded candidate pool: near neighbours, at a CPU cost the teacher can afford.
    candidates = texts[: max(2 * len(anchors), 500)]
    sims = embed(anchors) @ embed(candidates).T  # (A, C)
    where = {text: c for c, text in enumerate(candidates)}  # texts are distinct
    for row, text in enumerate(anchors):
        if text in where:
            sims[row, where[text]] = -np.inf  # not its own partner
    partners = np.argmax(sims, axis=1)
    return [(Pair(text, candidates[int(c)], UNLABELLED),) for text, c in zip(anchors, partners, strict=True)]
