"""Source mixing (data.mix): each batch slot draws a source with the configured weights, then a unit of it.

Like UnitSampler, batch `step` depends only on (seed, step, rank): resumed and data-parallel runs see the
batches an uninterrupted run would. Units are drawn without replacement inside a batch and with replacement
across batches (a weighted mix has no natural epoch: a small source with a large weight repeats).
"""

from __future__ import annotations

import random
from collections import defaultdict

from training.config import DataConfig
from training.data.batches import UnitSampler
from training.data.pairs import Pair, TaskData


class MixedSampler:
    def __init__(
        self,
        units: list[tuple[Pair, ...]],
        origin: list[str],
        weights: dict[str, float],
        batch_pairs: int,
        seed: int,
        rank: int = 0,
    ):
        if len(origin) != len(units):
            raise ValueError("every training unit needs its source name (TaskData.origin) to mix sources")
        by_source: dict[str, list[int]] = defaultdict(list)
        for index, name in enumerate(origin):
            by_source[name].append(index)
        empty = sorted(name for name in weights if not by_source.get(name))
        if empty:
            raise ValueError(f"data.mix names sources with no training units: {empty}")
        self.units, self.batch_pairs, self.seed, self.rank = units, batch_pairs, seed, rank
        self.names = sorted(weights)
        self.weights = [weights[n] for n in self.names]
        self.by_source = {n: by_source[n] for n in self.names}

    def batch(self, step: int) -> list[Pair]:
        rng = random.Random(f"{self.seed}:{step}:{self.rank}")
        taken: dict[str, set[int]] = defaultdict(set)
        pairs: list[Pair] = []
        while len(pairs) < self.batch_pairs:
            name = rng.choices(self.names, self.weights)[0]
            pool = self.by_source[name]
            if len(taken[name]) == len(pool):
                taken[name].clear()  # a tiny source: allow repeats rather than loop forever
            index = rng.choice(pool)
            while index in taken[name]:
                index = rng.choice(pool)
            taken[name].add(index)
            pairs.extend(self.units[index])
        return pairs[: self.batch_pairs]


def make_sampler(
    data: TaskData, cfg: DataConfig, batch_pairs: int, seed: int, rank: int = 0, world: int = 1
) -> UnitSampler | MixedSampler:
    """data.mix empty: the one shuffled pool (UnitSampler, unchanged behaviour); else the weighted mix."""
    if not cfg.mix:
        return UnitSampler(data.train, batch_pairs, seed, rank, world)
    return MixedSampler(data.train, data.origin, cfg.mix, batch_pairs, seed, rank)
