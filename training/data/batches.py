"""Training batches: seeded unit order (resumable by step), pair batches and their (B, B) label matrix."""

from __future__ import annotations

import random

import torch

from training.data.pairs import UNLABELLED, Pair


class UnitSampler:
    """Deterministic stream of batches: batch `step` depends only on (seed, step, rank), so a resumed or
    data-parallel run sees exactly the batches an uninterrupted run would."""

    def __init__(self, units: list[tuple[Pair, ...]], batch_pairs: int, seed: int, rank: int = 0, world: int = 1):
        if not units:
            raise ValueError("no training units")
        self.units, self.batch_pairs, self.seed = units, batch_pairs, seed
        self.rank, self.world = rank, world
        self.pairs_per_unit = max(1, round(sum(len(u) for u in units) / len(units)))
        self.units_per_batch = max(1, batch_pairs // self.pairs_per_unit)
        self._epoch, self._order = -1, list(range(len(units)))

    def _order_for(self, epoch: int) -> list[int]:
        if epoch != self._epoch:
            self._order = list(range(len(self.units)))
            random.Random(self.seed * 1_000_003 + epoch).shuffle(self._order)
            self._epoch = epoch
        return self._order

    def batch(self, step: int) -> list[Pair]:
        per_step = self.units_per_batch * self.world
        batches_per_epoch = max(1, len(self.units) // per_step)
        epoch, index = divmod(step, batches_per_epoch)
        order = self._order_for(epoch)
        start = index * per_step + self.rank * self.units_per_batch
        chosen = order[start : start + self.units_per_batch]
        return [pair for i in chosen for pair in self.units[i]][: self.batch_pairs]


def label_matrix(pairs: list[Pair]) -> torch.Tensor:
    """labels[i, j] = 1 when text_a of pair i and text_b of pair j mean the same (B, B).

    The diagonal is the gold label; elsewhere two texts match when they share a non-null group (an intent,
    a question id). An anchor's hard negative sits in the same batch as its positive, so it appears as a
    labelled negative column in the positive's row.

    An entry is UNLABELLED (-1) when pair i or pair j has no gold label (the unlabelled source): a pool
    text may well share a labelled anchor's meaning, so calling it a negative would be a guess."""
    n = len(pairs)
    labels = torch.zeros((n, n), dtype=torch.long)
    for i, pa in enumerate(pairs):
        for j, pb in enumerate(pairs):
            if UNLABELLED in (pa.label, pb.label):
                labels[i, j] = UNLABELLED
            elif i == j:
                labels[i, j] = pa.label
            elif pa.group_a is not None and pa.group_a == pb.group_b:
                labels[i, j] = 1
            elif pa.text_a == pb.text_a and pb.label == 1:
                labels[i, j] = 1  # same anchor, and that pair's text_b is its gold positive
    return labels
