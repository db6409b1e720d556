"""L_dist: align the student's similarity structure with the teacher's.

Form: mean over rows of KL(softmax(T_i / tau_t) || softmax(S_i / tau_s)), over kept entries only. Row
softmaxes compare *rankings* of candidates, so the student need not match the teacher's absolute cosine
scale (a 576-d LM and a 384-d MiniLM live on different scales).

A row softmax cannot see a shift of one row against another: each anchor's cosines may sit on their own
offset, which a pair classifier (one threshold for every pair of a task) pays for. `axes="both"` adds the
same KL over columns (each candidate's anchors), and the two together leave only one global offset free, so
the in-batch matrix, diagonal pairs included, is ordered on the teacher's single scale.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn


def _row_kl(sim_student: torch.Tensor, t_scaled: torch.Tensor, s_scaled: torch.Tensor, keep: torch.Tensor):
    rows = keep.sum(dim=1) >= 2  # a distribution needs two candidates
    if not rows.any():
        return sim_student.sum() * 0.0
    neg_inf = float("-inf")
    t_logp = torch.log_softmax(t_scaled.masked_fill(~keep, neg_inf), dim=1)
    s_logp = torch.log_softmax(s_scaled.masked_fill(~keep, neg_inf), dim=1)
    # Masked entries have p_teacher = 0: their terms are 0 (guard the 0 * -inf = nan).
    kl = torch.where(keep, t_logp.exp() * (t_logp - s_logp), torch.zeros_like(s_logp)).sum(dim=1)
    return kl[rows].mean()


class SimilarityDistillationLoss(nn.Module):
    def __init__(
        self,
        teacher_temperature: float = 0.05,
        student_temperature: float = 0.05,
        axes: Literal["rows", "both"] = "rows",
    ):
        super().__init__()
        self.teacher_temperature = teacher_temperature
        self.student_temperature = student_temperature
        self.axes = axes

    def forward(
        self, sim_student: torch.Tensor, sim_teacher: torch.Tensor, labels: torch.Tensor, keep: torch.Tensor
    ) -> torch.Tensor:
        del labels
        t_scaled = sim_teacher / self.teacher_temperature
        s_scaled = sim_student / self.student_temperature
        loss = _row_kl(sim_student, t_scaled, s_scaled, keep)
        if self.axes == "both":
            loss = (loss + _row_kl(sim_student, t_scaled.T, s_scaled.T, keep.T)) / 2
        return loss
