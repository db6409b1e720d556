"""Source mixing (data.mix): each batch slot draws a source with the configured weights, then a unit of it.

Like UnitSampler, batch `step` depends only on (seed, step, rank): resumed and data-parallel runs see the
batches an uninterrupted run would. With `neighbours` (training/data/topics.py), a share of each source's draws
after its first in a batch come from the teacher's nearest neighbours of that first unit (topic-aware batches).
Units are drawn without replacement inside a batch and with replacement across batches (a weighted mix has no
natural epoch: a small source with a large weight repeats).
"""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Callable

import numpy as np

from training.config import DataConfig
from training.data.batches import UnitSampler
from training.data.pairs import Pair, TaskData
from training.data.topics import neighbour_table


class MixedSampler:
    def __init__(
        self,
        units: list[tuple[Pair, ...]],
        origin: list[str],
        weights: dict[str, float],
        batch_pairs: int,
        seed: int,
        rank: int = 0,
        neighbours: dict[str, np.ndarray] | None = None,
        topic_share: float = 0.0,
    ):
        """neighbours: per source, row i = positions (in that source's unit list) of unit i's teacher
        neighbours; topic_share: the probability that a draw after the source's first comes from them."""
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
        self.neighbours = neighbours or {}
        self.topic_share = topic_share

    def batch(self, step: int) -> list[Pair]:
        rng = random.Random(f"{self.seed}:{step}:{self.rank}")
        taken: dict[str, set[int]] = defaultdict(set)
        first: dict[str, int] = {}  # each source's first unit in this batch (a position in its pool)
        pairs: list[Pair] = []
        while len(pairs) < self.batch_pairs:
            name = rng.choices(self.names, self.weights)[0]
            pool = self.by_source[name]
            if len(taken[name]) == len(pool):
                taken[name].clear()  # a tiny source: allow repeats rather than loop forever
            position = self._topical(name, first, taken[name], rng)
            if position is None:
                position = rng.randrange(len(pool))
                while position in taken[name]:
                    position = rng.randrange(len(pool))
            first.setdefault(name, position)
            taken[name].add(position)
            pairs.extend(self.units[pool[position]])
        return pairs[: self.batch_pairs]

    def _topical(self, name: str, first: dict[str, int], taken: set[int], rng: random.Random) -> int | None:
        """A not-yet-taken teacher neighbour of the source's first unit, with probability topic_share."""
        table = self.neighbours.get(name)
        if table is None or self.topic_share <= 0 or name not in first or rng.random() >= self.topic_share:
            return None
        free = [int(p) for p in table[first[name]] if int(p) not in taken]
        return rng.choice(free) if free else None


def topic_neighbours(
    data: TaskData, names: list[str], embed: Callable[[list[str]], np.ndarray], k: int
) -> dict[str, np.ndarray]:
    """Per source, each unit's k teacher-nearest units of the same source, by their first anchor text."""
    out = {}
    for name in names:
        members = [i for i, origin in enumerate(data.origin) if origin == name]
        vectors = np.asarray(embed([data.train[i][0].text_a for i in members]), dtype=np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True).clip(min=1e-12)
        out[name] = neighbour_table(vectors, k)
    return out


def make_sampler(
    data: TaskData,
    cfg: DataConfig,
    batch_pairs: int,
    seed: int,
    rank: int = 0,
    world: int = 1,
    embed: Callable[[list[str]], np.ndarray] | None = None,
) -> UnitSampler | MixedSampler:
    """data.mix empty: the one shuffled pool (UnitSampler, unchanged behaviour); else the weighted mix.
    data.topic_share > 0 needs `embed` (the teacher) to find each unit's neighbours."""
    if not cfg.mix:
        if cfg.topic_share > 0:
            raise ValueError("data.topic_share needs data.mix: topic-aware batches are drawn per source")
        return UnitSampler(data.train, batch_pairs, seed, rank, world)
    neighbours = None
    if cfg.topic_share > 0:
        if embed is None:
            raise ValueError("data.topic_share > 0 needs the teacher's embed function")
        neighbours = topic_neighbours(data, sorted(cfg.mix), embed, cfg.topic_neighbours)
    return MixedSampler(data.train, data.origin, cfg.mix, batch_pairs, seed, rank, neighbours, cfg.topic_share)
