"""Topic-aware batches: the neighbour table, the sampler's topical draws, and that share 0 changes nothing."""

from __future__ import annotations

import numpy as np
import pytest

from training.config import DataConfig
from training.data.mix import MixedSampler, make_sampler, topic_neighbours
from training.data.pairs import Pair, TaskData
from training.data.topics import neighbour_table


def _unit_circle(angles_deg: list[float]) -> np.ndarray:
    a = np.radians(angles_deg)
    return np.stack([np.cos(a), np.sin(a)], axis=1)


def test_neighbour_table_orders_the_closest_others_first_across_chunks():
    vectors = _unit_circle([0, 10, 90, 95, 180])
    table = neighbour_table(vectors, k=2, chunk=2)  # chunk < n: rows of later chunks keep their own exclusion
    assert table.tolist() == [[1, 2], [0, 2], [3, 1], [2, 1], [3, 2]]
    assert neighbour_table(vectors[:1], k=4).shape == (1, 0)


def _data(n: int) -> TaskData:
    units = [(Pair(f"q{i}", f"p{i}", 1),) for i in range(n)]
    return TaskData(train=units, origin=["a"] * n)


def test_share_one_draws_only_neighbours_of_the_batch_first_unit():
    data = _data(40)
    # unit i's neighbours are i+1 and i+2 (mod 40): a chain, so topical draws are easy to recognise
    table = np.array([[(i + 1) % 40, (i + 2) % 40] for i in range(40)])
    sampler = MixedSampler(data.train, data.origin, {"a": 1.0}, 3, seed=1, neighbours={"a": table}, topic_share=1.0)
    for step in range(20):
        first, *rest = [int(p.text_a[1:]) for p in sampler.batch(step)]
        assert sorted(rest) == sorted([(first + 1) % 40, (first + 2) % 40])


def test_share_zero_gives_exactly_the_random_batches():
    data = _data(40)
    table = np.array([[(i + 1) % 40] for i in range(40)])
    plain = MixedSampler(data.train, data.origin, {"a": 1.0}, 4, seed=3)
    zero = MixedSampler(data.train, data.origin, {"a": 1.0}, 4, seed=3, neighbours={"a": table}, topic_share=0.0)
    assert all(plain.batch(s) == zero.batch(s) for s in range(10))


def test_make_sampler_finds_neighbours_with_the_teacher_and_needs_a_mix():
    data = _data(6)
    data.origin = ["a", "a", "a", "b", "b", "b"]
    angles = {"q0": 0, "q1": 100, "q2": 5, "q3": 0, "q4": 50, "q5": 45}

    def embed(texts):
        return _unit_circle([angles[t] for t in texts])

    table = topic_neighbours(data, ["a", "b"], embed, k=1)
    assert table["a"].tolist() == [[2], [2], [0]] and table["b"].tolist() == [[2], [2], [1]]  # positions per source
    cfg = DataConfig(mix={"a": 1.0, "b": 1.0}, topic_share=0.5)
    assert isinstance(make_sampler(data, cfg, 4, seed=0, embed=embed), MixedSampler)
    with pytest.raises(ValueError, match="teacher"):
        make_sampler(data, cfg, 4, seed=0)
    with pytest.raises(ValueError, match="data.mix"):
        make_sampler(data, DataConfig(topic_share=0.5), 4, seed=0, embed=embed)
