"""Contrastive baselines that replace L_MCL in the paper's comparison (our readings; their code differs).

- ArcCSE-style: InfoNCE with an additive angular margin on the positive, logit cos(theta_ii + m) / tau.
  (ArcCSE's triplet ordering over augmented views needs augmentations we do not make: left out.)
- KDMCSE-style: the same positive margin, plus KDMCSE's teacher use: negatives the teacher scores above
  tau_neg are dropped as likely false negatives, and each negative's margin adapts to the teacher,
  cos(theta_in - m * (1 - t_in)): what the teacher calls clearly different is pushed hardest.
"""

from __future__ import annotations

import torch
from torch import nn

from training.losses.margin import angles


def _margin_infonce(
    pos_logit: torch.Tensor, logits: torch.Tensor, labels: torch.Tensor, keep: torch.Tensor
) -> torch.Tensor:
    """pos_logit (B,), logits (B, B): the diagonal of `logits` is replaced by pos_logit."""
    eye = torch.eye(labels.shape[0], dtype=torch.bool, device=labels.device)
    rows = (labels.bool() & keep & eye).any(dim=1)
    if not rows.any():
        return logits.sum() * 0.0
    allowed = keep & (eye | ~labels.bool())
    logits = torch.where(eye, pos_logit.unsqueeze(1).expand_as(logits), logits).masked_fill(~allowed, float("-inf"))
    return -(logits.diagonal() - torch.logsumexp(logits, dim=1))[rows].mean()


class ArcContrastiveLoss(nn.Module):
    def __init__(self, margin: float = 0.06, temperature: float = 0.05):
        super().__init__()
        self.margin, self.temperature = margin, temperature

    def forward(self, sim_student, sim_teacher, labels, keep):  # noqa: ARG002 - uniform loss signature
        theta = angles(sim_student)
        pos = torch.cos(theta.diagonal() + self.margin) / self.temperature
        return _margin_infonce(pos, sim_student / self.temperature, labels, keep)


class AdaptiveMarginDistillLoss(nn.Module):
    def __init__(self, margin: float = 0.06, temperature: float = 0.05, neg_threshold: float = 0.5):
        super().__init__()
        self.margin, self.temperature, self.neg_threshold = margin, temperature, neg_threshold

    def forward(self, sim_student, sim_teacher, labels, keep):
        theta = angles(sim_student)
        pos = torch.cos(theta.diagonal() + self.margin) / self.temperature
        neg_margin = self.margin * (1 - sim_teacher.clamp(0, 1))
        neg = torch.cos((theta - neg_margin).clamp(min=0)) / self.temperature
        keep = keep & ~(~labels.bool() & (sim_teacher > self.neg_threshold))
        return _margin_infonce(pos, neg, labels, keep)
