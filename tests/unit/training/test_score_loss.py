"""L_score (1 - Pearson r over the in-batch matrix): affine-invariant, sees row offsets, masks, the switch."""

from __future__ import annotations

import pytest
import torch

from training.config import LossConfig
from training.losses.combined import FlipLoss
from training.losses.score import ScoreCorrelationLoss

TEACHER = torch.tensor([[0.9, 0.2, 0.4], [0.1, 0.8, 0.3], [0.5, 0.0, 0.7]])
ALL = torch.ones(3, 3, dtype=torch.bool)


def test_one_global_affine_map_of_the_teacher_costs_nothing():
    student = 0.5 * TEACHER + 0.3
    assert ScoreCorrelationLoss()(student, TEACHER, ALL).item() == pytest.approx(0.0, abs=1e-6)


def test_a_row_shifted_against_the_others_is_penalised_and_pulled_back():
    student = TEACHER.clone()
    student[1] += 0.4  # row 1 on its own offset: a row softmax cannot see this, one pair threshold can
    student.requires_grad_(True)
    loss = ScoreCorrelationLoss()(student, TEACHER, ALL)
    assert loss.item() > 0.05
    loss.backward()
    assert (student.grad[1] > 0).all()  # descending the gradient lowers the shifted row


def test_masked_entries_are_ignored():
    student = TEACHER.clone()
    student[0, 2] = -5.0
    keep = ALL.clone()
    keep[0, 2] = False
    assert ScoreCorrelationLoss()(student, TEACHER, keep).item() == pytest.approx(0.0, abs=1e-6)


def test_the_combined_loss_adds_it_only_when_weighted():
    labels = torch.eye(3, dtype=torch.long)
    student = TEACHER.clone()
    student[1] += 0.4
    off = FlipLoss(LossConfig())(student, TEACHER, labels)
    on = FlipLoss(LossConfig(score_weight=2.0))(student, TEACHER, labels)
    assert "score" not in off and "score" in on
    assert on["total"].item() == pytest.approx(off["total"].item() + 2.0 * on["score"].item(), rel=1e-5)
