"""L_rank (CoSENT over the gold diagonal): known value, cross-anchor ordering, masks, the combined switch."""

from __future__ import annotations

import math

import pytest
import torch

from training.config import LossConfig
from training.losses.combined import FlipLoss
from training.losses.pair_rank import PairRankingLoss

ALL3 = torch.ones(3, 3, dtype=torch.bool)


def test_known_value_over_pairs_of_different_anchors():
    # Pair 0 positive (0.6), pair 1 negative (0.7, above the positive), pair 2 positive (0.9).
    sim = torch.tensor([[0.6, 0.0, 0.0], [0.0, 0.7, 0.0], [0.0, 0.0, 0.9]], requires_grad=True)
    labels = torch.diag(torch.tensor([1, 0, 1]))
    loss = PairRankingLoss(scale=10.0)(sim, labels, ALL3)
    expected = math.log(1 + math.exp(10 * (0.7 - 0.6)) + math.exp(10 * (0.7 - 0.9)))
    assert loss.item() == pytest.approx(expected, abs=1e-5)
    loss.backward()
    # The violated ordering dominates: push the negative down, pull the low positive up; off-diagonal untouched.
    assert sim.grad[1, 1] > 0 > sim.grad[0, 0]
    assert abs(sim.grad[0, 0]) > abs(sim.grad[2, 2])
    assert sim.grad[0, 1] == 0


def test_dropped_pairs_do_not_count_and_one_class_gives_zero():
    sim = torch.tensor([[0.6, 0.0, 0.0], [0.0, 0.7, 0.0], [0.0, 0.0, 0.9]])
    labels = torch.diag(torch.tensor([1, 0, 1]))
    keep = ALL3.clone()
    keep[1, 1] = False  # the only negative dropped by the filter
    assert PairRankingLoss()(sim, labels, keep).item() == 0.0


def test_pairs_of_different_sources_are_not_compared():
    sim = torch.diag(torch.tensor([0.6, 0.7, 0.9]))
    labels = torch.diag(torch.tensor([1, 0, 1]))
    # The negative (0.7) shares a source with the 0.9 positive only: no violated ordering within a source.
    loss = PairRankingLoss(scale=10.0)(sim, labels, ALL3, groups=torch.tensor([0, 1, 1]))
    assert loss.item() == pytest.approx(math.log(1 + math.exp(10 * (0.7 - 0.9))), abs=1e-5)
    alone = PairRankingLoss()(sim, labels, ALL3, groups=torch.tensor([0, 1, 2]))
    assert alone.item() == 0.0  # no source has both a positive and a negative


def test_combined_adds_rank_only_when_weighted():
    torch.manual_seed(0)
    emb = torch.nn.functional.normalize(torch.randn(8, 16), dim=-1)
    sim, teacher = emb[:4] @ emb[4:].T, torch.rand(4, 4)
    labels = torch.diag(torch.tensor([1, 0, 1, 0]))
    off = FlipLoss(LossConfig(filter=False))(sim, teacher, labels)
    on = FlipLoss(LossConfig(filter=False, pair_rank_weight=0.5))(sim, teacher, labels)
    assert "rank" not in off and on["rank"].item() > 0
    assert on["total"].item() == pytest.approx(off["total"].item() + 0.5 * on["rank"].item(), abs=1e-5)
