"""L_MCL: margin-aware contrastive learning in angular space (m_c, the paper's inter-class margin).

With theta = arccos(student cosine) and phi = arccos(teacher cosine), for every anchor row i:
- inter-class: every kept positive p must sit at least m_c radians closer than every kept negative n:
      relu(theta_ip + m_c - theta_in)
- intra-class, teacher-adaptive: inside the positives, and inside the negatives, the teacher's ordering
  holds, with a margin equal to the teacher's own angular gap capped at m_c (so orderings within a class
  never demand more than the separation between classes):
      relu(theta_ij - theta_ik + min(phi_ik - phi_ij, m_c))   for phi_ij < phi_ik
L_MCL = mean(inter) + mean(intra).
"""

from __future__ import annotations

import torch
from torch import nn

_EPS = 1e-6


def angles(sim: torch.Tensor) -> torch.Tensor:
    # Clamp away from +-1: d/dx arccos(x) is infinite there.
    return torch.arccos(sim.clamp(-1 + _EPS, 1 - _EPS))


def _masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    count = mask.sum()
    if count == 0:
        return values.sum() * 0.0
    return (values * mask).sum() / count


class MarginContrastiveLoss(nn.Module):
    def __init__(self, margin: float = 0.06):
        super().__init__()
        self.margin = margin

    def forward(
        self, sim_student: torch.Tensor, sim_teacher: torch.Tensor, labels: torch.Tensor, keep: torch.Tensor
    ) -> torch.Tensor:
        theta = angles(sim_student)  # (B, B)
        phi = angles(sim_teacher.to(theta.dtype))  # (B, B)
        pos = labels.bool() & keep
        neg = ~labels.bool() & keep
        # inter[i, p, n] = relu(theta_ip + m - theta_in), valid where p positive and n negative in row i
        inter = torch.relu(theta.unsqueeze(2) + self.margin - theta.unsqueeze(1))  # (B, B, B)
        inter_mask = pos.unsqueeze(2) & neg.unsqueeze(1)
        # intra[i, j, k]: j the teacher's closer one, both of one class
        teacher_gap = phi.unsqueeze(2) - phi.unsqueeze(1)  # phi_ij - phi_ik
        closer = teacher_gap < 0
        same_class = (pos.unsqueeze(2) & pos.unsqueeze(1)) | (neg.unsqueeze(2) & neg.unsqueeze(1))
        intra_margin = (-teacher_gap).clamp(max=self.margin)
        intra = torch.relu(theta.unsqueeze(2) - theta.unsqueeze(1) + intra_margin)
        return _masked_mean(inter, inter_mask) + _masked_mean(intra, same_class & closer)
