"""L_dist: align the student's similarity structure with the teacher's.

Form: mean over rows of KL(softmax(T_i / tau_t) || softmax(S_i / tau_s)), over kept entries only. Row
softmaxes compare *rankings* of candidates, so the student need not match the teacher's absolute cosine
scale (a 576-d LM and a 384-d MiniLM live on different scales).
"""

from __future__ import annotations

import torch
from torch import nn


class SimilarityDistillationLoss(nn.Module):
    def __init__(self, teacher_temperature: float = 0.05, student_temperature: float = 0.05):
        super().__init__()
        self.teacher_temperature = teacher_temperature
        self.student_temperature = student_temperature

    def forward(
        self, sim_student: torch.Tensor, sim_teacher: torch.Tensor, labels: torch.Tensor, keep: torch.Tensor
    ) -> torch.Tensor:
        del labels
        rows = keep.sum(dim=1) >= 2  # a distribution needs two candidates
        if not rows.any():
            return sim_student.sum() * 0.0
        neg_inf = float("-inf")
        t_logp = torch.log_softmax((sim_teacher / self.teacher_temperature).masked_fill(~keep, neg_inf), dim=1)
        s_logp = torch.log_softmax((sim_student / self.student_temperature).masked_fill(~keep, neg_inf), dim=1)
        # Masked entries have p_teacher = 0: their terms are 0 (guard the 0 * -inf = nan).
        kl = torch.where(keep, t_logp.exp() * (t_logp - s_logp), torch.zeros_like(s_logp)).sum(dim=1)
        return kl[rows].mean()
