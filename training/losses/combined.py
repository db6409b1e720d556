"""Total loss L = w_sup * L_sup + lambda_dist * L_dist + lambda_mcl * L_MCL (+ w_score * L_score
+ w_rank * L_rank), after the dual-threshold filter.
Returns named parts so the loop logs each one."""

from __future__ import annotations

import torch
from torch import nn

from training.config import LossConfig
from training.losses.baselines import AdaptiveMarginDistillLoss, ArcContrastiveLoss
from training.losses.distill import SimilarityDistillationLoss
from training.losses.filter import drop_rate, dual_threshold_keep
from training.losses.margin import MarginContrastiveLoss
from training.losses.pair_rank import PairRankingLoss
from training.losses.score import ScoreCorrelationLoss
from training.losses.supervised import SupervisedContrastiveLoss


def contrastive_loss(cfg: LossConfig) -> nn.Module | None:
    registry = {
        "mcl": lambda: MarginContrastiveLoss(cfg.margin),
        "arccse": lambda: ArcContrastiveLoss(cfg.margin, cfg.sup_temperature),
        "kdmcse": lambda: AdaptiveMarginDistillLoss(cfg.margin, cfg.sup_temperature, cfg.filter_neg_threshold),
        "none": lambda: None,
    }
    return registry[cfg.contrastive]()


class FlipLoss(nn.Module):
    def __init__(self, cfg: LossConfig):
        super().__init__()
        self.cfg = cfg
        self.supervised = SupervisedContrastiveLoss(cfg.sup_temperature)
        self.distill = SimilarityDistillationLoss(cfg.teacher_temperature, cfg.student_temperature, cfg.distill_axes)
        self.contrastive = contrastive_loss(cfg)
        self.pair_rank = PairRankingLoss(cfg.pair_rank_scale)
        self.score = ScoreCorrelationLoss()
        midpoint = (cfg.filter_pos_threshold + cfg.filter_neg_threshold) / 2
        self.pseudo_threshold = midpoint if cfg.pseudo_threshold is None else cfg.pseudo_threshold

    def forward(
        self,
        sim_student: torch.Tensor,
        sim_teacher: torch.Tensor,
        labels: torch.Tensor,
        groups: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        """sim_student, sim_teacher, labels: (B, B); groups: (B,) source of each pair, for L_rank (None: one).
        Returns {'total', 'sup', 'dist', 'mcl', 'drop_pos', ...}."""
        cfg = self.cfg
        sim_teacher = sim_teacher.to(sim_student.dtype)
        eye = torch.eye(len(labels), dtype=torch.bool, device=labels.device)
        # Entries without a gold label (the unlabelled source, -1) get classes from the teacher: MCL and the
        # drop statistics read them; L_sup never does, and the filter cannot contradict the teacher's own call.
        gold = labels >= 0  # (B, B)
        if not gold.all():
            labels = torch.where(gold, labels, (sim_teacher >= self.pseudo_threshold).long())
        # The filter's scope: the gold-labelled pairs (diagonal) by default; in-batch pairs carry no gold
        # label to contradict, and the teacher-similar ones among them are the most useful negatives.
        scope = (eye if cfg.filter_scope == "labelled" else torch.ones_like(eye)) & gold
        keep = torch.ones_like(eye)
        if cfg.filter:
            verdict = dual_threshold_keep(sim_teacher, labels, cfg.filter_pos_threshold, cfg.filter_neg_threshold)
            keep = verdict | ~scope
        parts: dict[str, torch.Tensor] = {}
        total = sim_student.sum() * 0.0
        if cfg.supervised_weight > 0:
            parts["sup"] = self.supervised(sim_student, sim_teacher, labels, keep & gold)
            total = total + cfg.supervised_weight * parts["sup"]
        if cfg.distill_weight > 0:
            parts["dist"] = self.distill(sim_student, sim_teacher, labels, keep)
            total = total + cfg.distill_weight * parts["dist"]
        if self.contrastive is not None and cfg.contrastive_weight > 0:
            parts[cfg.contrastive] = self.contrastive(sim_student, sim_teacher, labels, keep)
            total = total + cfg.contrastive_weight * parts[cfg.contrastive]
        if cfg.score_weight > 0:
            parts["score"] = self.score(sim_student, sim_teacher, keep)
            total = total + cfg.score_weight * parts["score"]
        if cfg.pair_rank_weight > 0:
            parts["rank"] = self.pair_rank(sim_student, labels, keep & gold, groups)
            total = total + cfg.pair_rank_weight * parts["rank"]
        parts["total"] = total
        for key, value in drop_rate(keep[scope], labels[scope]).items():
            parts[key] = torch.tensor(value)
        return parts
