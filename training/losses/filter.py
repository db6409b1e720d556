"""Dual-threshold filter: drop pairs on which the teacher contradicts the gold label."""

from __future__ import annotations

import torch


def dual_threshold_keep(
    sim_teacher: torch.Tensor, labels: torch.Tensor, pos_threshold: float, neg_threshold: float
) -> torch.Tensor:
    """Keep-mask (B, B): a positive is dropped when the teacher scores it below tau_pos, a negative when the
    teacher scores it above tau_neg. Applies to the labelled diagonal and to in-batch pairs alike, so an
    in-batch "negative" the teacher finds near-identical (a likely false negative) is dropped too."""
    positive = labels.bool()
    contradicts = (positive & (sim_teacher < pos_threshold)) | (~positive & (sim_teacher > neg_threshold))
    return ~contradicts


def drop_rate(keep: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
    """Fraction dropped among positives and among negatives (logged each step)."""
    positive = labels.bool()
    pos_n, neg_n = positive.sum().item(), (~positive).sum().item()
    return {
        "drop_pos": float((positive & ~keep).sum().item() / pos_n) if pos_n else 0.0,
        "drop_neg": float((~positive & ~keep).sum().item() / neg_n) if neg_n else 0.0,
    }


def calibrated_thresholds(teacher_thresholds: dict[str, float], band: float) -> tuple[float, float] | None:
    """(tau_pos, tau_neg) around the teacher's F1-optimal dev threshold t* (mean over its dev pair sets): a
    positive is contradicted when the teacher puts it clearly below its own decision point, a negative when
    clearly above. None when the teacher has no dev pair set to read t* from."""
    if not teacher_thresholds:
        return None
    center = sum(teacher_thresholds.values()) / len(teacher_thresholds)
    return center - band, center + band
