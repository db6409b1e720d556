"""L_rank: one threshold per source. CoSENT over the batch's gold-labelled pairs (the diagonal).

The row-wise losses (L_sup, L_dist, MCL) only order the candidates of one anchor, so a student can rank each
row right while its cosines sit on a different scale from row to row; a pair classifier (MQP, RQE) then has
no single threshold that fits. CoSENT asks every kept gold positive to score above every kept gold negative
of the batch, whatever their anchors:
    L_rank = log(1 + sum_{p pos, n neg, same source} exp(scale * (s_n - s_p)))
(Su 2022; sentence-transformers' CoSENTLoss uses the same form and scale 20). Pairs are compared within their
source only: each task keeps its own threshold, and across sources the constraint is wrong (an RQE positive, a
long consumer question against a short FAQ, need not score above an MQP negative, a near-paraphrase); in the
dev round that compared all pairs, RQE F1 fell by 0.04 (docs/tuning-round5.md).
"""

from __future__ import annotations

import torch
from torch import nn


class PairRankingLoss(nn.Module):
    def __init__(self, scale: float = 20.0):
        super().__init__()
        self.scale = scale

    def forward(
        self, sim_student: torch.Tensor, labels: torch.Tensor, keep: torch.Tensor, groups: torch.Tensor | None = None
    ) -> torch.Tensor:
        """sim_student, labels, keep: (B, B); groups: (B,) each pair's source (None: all one source)."""
        scores = sim_student.diagonal()
        gold = labels.diagonal()
        kept = keep.diagonal()
        pos, neg = kept & (gold == 1), kept & (gold == 0)
        pairs = pos.unsqueeze(1) & neg.unsqueeze(0)  # (B, B): [p, n] a positive and a negative pair
        if groups is not None:
            pairs = pairs & (groups.unsqueeze(1) == groups.unsqueeze(0))
        if not pairs.any():
            return sim_student.sum() * 0.0
        diffs = self.scale * (scores.unsqueeze(0) - scores.unsqueeze(1))  # [p, n] = scale * (s_n - s_p)
        zero = diffs.new_zeros(1)  # the "1 +" inside the log
        return torch.logsumexp(torch.cat([zero, diffs[pairs]]), dim=0)
