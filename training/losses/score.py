"""L_score: the student's cosines as one affine map of the teacher's, across the whole in-batch matrix.

L_dist's row softmaxes order each anchor's candidates but leave each row its own offset; a pair task (MQP, RQE)
scores every pair against one threshold, so it needs all pairs of the batch on one scale. L_score is
1 - Pearson r between the student's and the teacher's similarities over every kept entry of the (B, B) matrix:
invariant to one global scale and shift (a 576-d LM need not reproduce MiniLM's absolute cosines), but not to
a shift of one row against another.
"""

from __future__ import annotations

import torch
from torch import nn


class ScoreCorrelationLoss(nn.Module):
    def forward(self, sim_student: torch.Tensor, sim_teacher: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        s = sim_student[keep].float()
        t = sim_teacher[keep].float()
        if s.numel() < 3:
            return sim_student.sum() * 0.0
        s, t = s - s.mean(), t - t.mean()
        r = (s * t).sum() / (s.norm() * t.norm()).clamp_min(1e-8)
        return 1.0 - r
