"""Loss masking for rows without a gold label (the unlabelled source): L_sup ignores them entirely, L_dist and
MCL train on them, MCL with classes the teacher derives."""

from __future__ import annotations

import torch

from training.config import LossConfig
from training.losses.combined import FlipLoss
from training.losses.margin import MarginContrastiveLoss

U = -1  # UNLABELLED
# rows 0-1: a labelled anchor's positive and hard negative; rows 2-3: unlabelled pool texts
LABELS = torch.tensor([[1, 0, U, U], [1, 0, U, U], [U, U, U, U], [U, U, U, U]])
TEACHER = torch.tensor(
    [[0.9, 0.2, 0.1, 0.1], [0.9, 0.2, 0.1, 0.1], [0.1, 0.1, 0.8, 0.3], [0.2, 0.1, 0.3, 0.7]]
)


def _student(seed: int = 0) -> torch.Tensor:
    torch.manual_seed(seed)
    return (torch.rand(4, 4) * 1.6 - 0.8).requires_grad_()


def test_sup_is_masked_on_rows_and_columns_without_gold():
    loss = FlipLoss(LossConfig(distill_weight=0, contrastive="none", filter=False))
    student = _student()
    parts = loss(student, TEACHER, LABELS)
    parts["sup"].backward()
    assert student.grad[:, 2:].abs().sum() == 0 and student.grad[2:].abs().sum() == 0
    assert student.grad[0, :2].abs().sum() > 0
    # the same value as the labelled 2x2 block on its own
    alone = FlipLoss(LossConfig(distill_weight=0, contrastive="none", filter=False))(
        student.detach()[:2, :2], TEACHER[:2, :2], LABELS[:2, :2]
    )
    assert torch.isclose(parts["sup"], alone["sup"])


def test_sup_is_zero_on_an_all_unlabelled_batch_but_dist_and_mcl_train():
    loss = FlipLoss(LossConfig(filter=False))
    student = _student(1)
    labels = torch.full((4, 4), U)
    parts = loss(student, TEACHER, labels)
    assert parts["sup"].item() == 0.0
    assert parts["dist"].item() > 0 and parts["mcl"].item() > 0
    parts["total"].backward()
    assert student.grad[2:].abs().sum() > 0


def test_mcl_reads_teacher_derived_classes_on_unlabelled_entries():
    """Pseudo classes at the filter's midpoint (0.5): teacher >= 0.5 is a positive."""
    loss = FlipLoss(LossConfig(supervised_weight=0, distill_weight=0, filter=False))
    student = _student(2)
    expected_labels = torch.where(LABELS >= 0, LABELS, (TEACHER >= 0.5).long())
    expected = MarginContrastiveLoss(0.06)(student, TEACHER, expected_labels, torch.ones(4, 4, dtype=torch.bool))
    assert torch.isclose(loss(student, TEACHER, LABELS)["mcl"], expected)
    # a different threshold changes the classes, hence the loss
    strict = FlipLoss(LossConfig(supervised_weight=0, distill_weight=0, filter=False, pseudo_threshold=0.95))
    assert not torch.isclose(strict(student, TEACHER, LABELS)["mcl"], expected)


def test_filter_never_drops_teacher_derived_entries():
    loss = FlipLoss(LossConfig(filter_scope="all", filter_pos_threshold=0.99, filter_neg_threshold=0.0))
    parts = loss(_student(3), TEACHER, LABELS)
    # every gold entry contradicts these thresholds, but the 12 unlabelled entries are out of scope
    assert parts["drop_pos"].item() == 1.0 and parts["drop_neg"].item() == 1.0
    labelled = FlipLoss(LossConfig(filter_scope="all", filter_pos_threshold=0.99, filter_neg_threshold=0.0))(
        _student(3), TEACHER, torch.full((4, 4), U)
    )
    assert labelled["drop_pos"].item() == 0.0 and labelled["drop_neg"].item() == 0.0
