"""Each loss on hand-built matrices: a known value, gradients flow, the keep-mask is respected."""

from __future__ import annotations

import math

import pytest
import torch

from training.config import LossConfig
from training.losses.baselines import AdaptiveMarginDistillLoss, ArcContrastiveLoss
from training.losses.combined import FlipLoss
from training.losses.distill import SimilarityDistillationLoss
from training.losses.filter import drop_rate, dual_threshold_keep
from training.losses.margin import MarginContrastiveLoss
from training.losses.supervised import SupervisedContrastiveLoss

EYE2 = torch.eye(2, dtype=torch.long)
ALL2 = torch.ones(2, 2, dtype=torch.bool)
ALL3 = torch.ones(3, 3, dtype=torch.bool)


def test_filter_drops_contradicted_pairs():
    teacher = torch.tensor([[0.9, 0.6], [0.2, 0.3]])
    keep = dual_threshold_keep(teacher, EYE2, pos_threshold=0.5, neg_threshold=0.5)
    # (0,1) negative scored 0.6 > 0.5 and (1,1) positive scored 0.3 < 0.5 are dropped.
    assert keep.tolist() == [[True, False], [True, False]]
    assert drop_rate(keep, EYE2) == {"drop_pos": 0.5, "drop_neg": 0.5}


def test_supervised_infonce_known_value():
    sim = torch.tensor([[0.8, 0.2], [0.1, 0.5]], requires_grad=True)
    loss = SupervisedContrastiveLoss(temperature=1.0)(sim, torch.zeros(2, 2), EYE2, ALL2)
    row0 = -math.log(math.exp(0.8) / (math.exp(0.8) + math.exp(0.2)))
    row1 = -math.log(math.exp(0.5) / (math.exp(0.1) + math.exp(0.5)))
    assert loss.item() == pytest.approx((row0 + row1) / 2, abs=1e-6)
    loss.backward()
    assert sim.grad[0, 0] < 0 < sim.grad[0, 1]  # pull the positive up, push the negative down


def test_supervised_ignores_dropped_and_negative_rows():
    sim = torch.tensor([[0.8, 0.2], [0.1, 0.5]])
    labels = torch.tensor([[1, 0], [0, 0]])  # row 1's own pair is a gold negative
    keep = torch.tensor([[True, False], [True, True]])  # row 0's only negative dropped
    loss = SupervisedContrastiveLoss(temperature=1.0)(sim, sim, labels, keep)
    assert loss.item() == pytest.approx(0.0, abs=1e-6)  # row 0: its positive alone -> log 1


def test_distill_kl_known_value_and_zero_when_equal():
    teacher = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    student = torch.zeros(2, 2, requires_grad=True)
    loss = SimilarityDistillationLoss(1.0, 1.0)(student, teacher, EYE2, ALL2)
    p = math.e / (math.e + 1)
    expected = p * math.log(p / 0.5) + (1 - p) * math.log((1 - p) / 0.5)
    assert loss.item() == pytest.approx(expected, abs=1e-6)
    loss.backward()
    assert student.grad.abs().sum() > 0
    same = SimilarityDistillationLoss(0.1, 0.1)(teacher, teacher, EYE2, ALL2)
    assert same.item() == pytest.approx(0.0, abs=1e-6)


def test_distill_masked_entries_do_not_count():
    teacher = torch.tensor([[0.9, 0.1, 0.8], [0.1, 0.9, 0.1], [0.3, 0.2, 0.9]])
    student = teacher.clone()
    student[0, 2] = -0.9  # disagreement only in an entry we drop
    keep = torch.ones(3, 3, dtype=torch.bool)
    keep[0, 2] = False
    loss = SimilarityDistillationLoss(0.1, 0.1)(student, teacher, torch.eye(3, dtype=torch.long), keep)
    assert loss.item() == pytest.approx(0.0, abs=1e-6)


def test_distill_both_axes_sees_a_row_offset_that_rows_alone_ignore():
    teacher = torch.tensor([[0.9, 0.1, 0.3], [0.2, 0.8, 0.1], [0.3, 0.2, 0.7]])
    shifted = teacher.clone()
    shifted[1] += 0.5  # anchor 1's cosines on their own offset: same ranking within its row
    rows = SimilarityDistillationLoss(0.1, 0.1, "rows")(shifted, teacher, torch.eye(3, dtype=torch.long), ALL3)
    assert rows.item() == pytest.approx(0.0, abs=1e-6)
    student = shifted.clone().requires_grad_(True)
    both = SimilarityDistillationLoss(0.1, 0.1, "both")(student, teacher, torch.eye(3, dtype=torch.long), ALL3)
    assert both.item() > 0.01
    both.backward()
    assert (student.grad[1] > 0).all()  # the offset row is pushed back down
    global_shift = SimilarityDistillationLoss(0.1, 0.1, "both")(
        teacher + 0.3, teacher, torch.eye(3, dtype=torch.long), ALL3
    )
    assert global_shift.item() == pytest.approx(0.0, abs=1e-6)  # one common offset stays free


def test_mcl_inter_class_margin_known_value():
    theta = torch.tensor([[0.5, 0.52], [1.0, 0.2]])
    sim = torch.cos(theta).requires_grad_()
    loss = MarginContrastiveLoss(margin=0.06)(sim, sim.detach(), EYE2, ALL2)
    # row 0: relu(0.5 + 0.06 - 0.52) = 0.04; row 1: relu(0.2 + 0.06 - 1.0) = 0
    assert loss.item() == pytest.approx(0.02, abs=1e-4)
    loss.backward()
    assert sim.grad[0, 0] < 0 and sim.grad[0, 1] > 0 and sim.grad[1].abs().sum() == 0


def test_mcl_teacher_ordering_within_negatives():
    theta = torch.tensor([[0.3, 1.2, 1.1], [0.0, 0.0, 0.0], [0.0, 0.0, 0.0]])
    teacher = torch.tensor([[0.9, 0.5, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    keep = torch.zeros(3, 3, dtype=torch.bool)
    keep[0] = True  # only row 0 counts
    loss = MarginContrastiveLoss(margin=0.06)(torch.cos(theta), teacher, torch.eye(3, dtype=torch.long), keep)
    # inter: relu(0.3+0.06-1.2)=relu(0.3+0.06-1.1)=0. intra: the teacher ranks column 1 closer than column 2
    # (phi 1.047 < 1.571), the student has it farther: relu(1.2 - 1.1 + min(0.524, 0.06)) = 0.16
    assert loss.item() == pytest.approx(0.16, abs=1e-4)


def test_mcl_zero_when_margins_hold():
    theta = torch.tensor([[0.2, 1.0], [1.2, 0.3]])
    loss = MarginContrastiveLoss(0.06)(torch.cos(theta), torch.cos(theta), EYE2, ALL2)
    assert loss.item() == pytest.approx(0.0, abs=1e-6)


def test_arccse_margin_makes_loss_larger_than_plain_infonce():
    sim = torch.tensor([[0.8, 0.2], [0.1, 0.5]])
    plain = SupervisedContrastiveLoss(0.05)(sim, sim, EYE2, ALL2)
    arc = ArcContrastiveLoss(margin=0.1, temperature=0.05)(sim, sim, EYE2, ALL2)
    assert arc.item() > plain.item()
    assert ArcContrastiveLoss(margin=0.0, temperature=0.05)(sim, sim, EYE2, ALL2).item() == pytest.approx(
        plain.item(), rel=1e-4
    )


def test_kdmcse_drops_teacher_similar_negatives():
    sim = torch.tensor([[0.8, 0.7], [0.1, 0.5]])
    teacher = torch.tensor([[0.9, 0.95], [0.0, 0.9]])  # teacher: (0,1) is no real negative
    loss = AdaptiveMarginDistillLoss(margin=0.0, temperature=1.0, neg_threshold=0.5)(sim, teacher, EYE2, ALL2)
    row1 = -math.log(math.exp(0.5) / (math.exp(0.1) + math.exp(0.5)))
    assert loss.item() == pytest.approx(row1 / 2, abs=1e-5)  # row 0 contributes log 1 = 0


@pytest.mark.parametrize("contrastive", ["mcl", "arccse", "kdmcse", "none"])
def test_combined_parts_and_switches(contrastive):
    torch.manual_seed(0)
    emb = torch.nn.functional.normalize(torch.randn(8, 16), dim=-1).requires_grad_()
    sim = emb[:4] @ emb[4:].T
    teacher = torch.rand(4, 4)
    labels = torch.eye(4, dtype=torch.long)
    parts = FlipLoss(LossConfig(contrastive=contrastive))(sim, teacher, labels)
    assert {"total", "sup", "dist", "drop_pos", "drop_neg"} <= set(parts)
    assert (contrastive in parts) == (contrastive != "none")
    parts["total"].backward()
    assert emb.grad is not None and torch.isfinite(emb.grad).all()


def test_sft_switch_keeps_only_supervised():
    cfg = LossConfig(distill_weight=0.0, contrastive="none", filter=False)
    sim, teacher = torch.rand(3, 3), torch.rand(3, 3)
    parts = FlipLoss(cfg)(sim, teacher, torch.eye(3, dtype=torch.long))
    assert set(parts) == {"sup", "total", "drop_pos", "drop_neg"}
    assert parts["total"].item() == pytest.approx(parts["sup"].item())
    assert parts["drop_pos"].item() == 0 and parts["drop_neg"].item() == 0


def test_filter_scope_labelled_keeps_in_batch_pairs():
    teacher = torch.tensor([[0.9, 0.8], [0.7, 0.2]])  # both off-diagonal "negatives" look similar to the teacher
    labels = torch.eye(2, dtype=torch.long)
    sim = torch.tensor([[0.5, 0.4], [0.3, 0.6]])
    labelled = FlipLoss(LossConfig(filter_scope="labelled"))(sim, teacher, labels)
    everything = FlipLoss(LossConfig(filter_scope="all"))(sim, teacher, labels)
    assert labelled["drop_neg"].item() == 0.0 and labelled["drop_pos"].item() == 0.5  # (1,1) scored 0.2
    assert everything["drop_neg"].item() == 1.0
    assert labelled["sup"].item() != everything["sup"].item()


def test_filter_calibrated_on_the_teacher_scale():
    from training.config import TrainConfig
    from training.distill import _filter_thresholds
    from training.losses.filter import calibrated_thresholds

    assert calibrated_thresholds({"mqp": 0.7, "rqe": 0.8}, 0.1) == pytest.approx((0.65, 0.85))
    assert calibrated_thresholds({}, 0.1) is None
    report = {"teacher": {"mqp/threshold": 0.73, "mqp/f1": 0.8}}
    fixed, record = _filter_thresholds(TrainConfig(), report)
    assert (fixed.loss.filter_pos_threshold, record["calibration"]) == (0.5, "fixed")
    cfg = TrainConfig.model_validate({"loss": {"filter_calibration": "teacher_dev", "filter_band": 0.05}})
    calibrated, record = _filter_thresholds(cfg, report)
    assert calibrated.loss.filter_pos_threshold == pytest.approx(0.68)
    assert calibrated.loss.filter_neg_threshold == pytest.approx(0.78)
    assert cfg.loss.filter_pos_threshold == 0.5  # the caller's config is not mutated
    assert record["teacher_dev_thresholds"] == {"mqp": 0.73}
