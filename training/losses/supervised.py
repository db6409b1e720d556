"""L_sup: supervised contrastive loss on gold labels over the student's in-batch similarities.

Choice: InfoNCE per anchor row whose labelled pair is a kept positive; the denominator holds that positive
and every kept negative in the row (other positives are left out, not pushed away). With an anchor's hard
negative in the same batch, this is MultipleNegativesRankingLoss with hard negatives, the strongest
retrieval signal per step we measured on CPU.
"""

from __future__ import annotations

import torch
from torch import nn


class SupervisedContrastiveLoss(nn.Module):
    def __init__(self, temperature: float = 0.05):
        super().__init__()
        self.temperature = temperature

    def forward(
        self, sim_student: torch.Tensor, sim_teacher: torch.Tensor, labels: torch.Tensor, keep: torch.Tensor
    ) -> torch.Tensor:
        del sim_teacher  # gold labels only
        eye = torch.eye(labels.shape[0], dtype=torch.bool, device=labels.device)
        rows = (labels.bool() & keep & eye).any(dim=1)  # anchors whose own pair is a kept positive
        if not rows.any():
            return sim_student.sum() * 0.0
        allowed = keep & (eye | ~labels.bool())  # own positive + kept negatives
        logits = (sim_student / self.temperature).masked_fill(~allowed, float("-inf"))
        log_prob = logits.diagonal() - torch.logsumexp(logits, dim=1)
        return -log_prob[rows].mean()
