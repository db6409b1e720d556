"""Calibration maths: scored, labelled queries -> answer_threshold + clarify_margin + the precision / coverage /
no-match curve. Pure functions of numbers (no I/O, no vectors); `decision.decide` is the rule being tuned.

Per query we know the best score (top1), the runner-up entry's score (top2), whether the query is in scope and,
if so, whether the best entry is the expected one. With `decide`'s rule at (threshold t, margin m):
- answer precision = correct answers / all answers (answers to out-of-scope queries count as wrong);
- coverage         = correct answers / in-scope queries;
- no_match         = out-of-scope queries with top1 < t / out-of-scope queries (what a FAQ bot must say to them).
We pick the (t, m) with the most coverage among those meeting both targets, where "meeting" is judged on the
Wilson lower bound of each rate (one-sided 95% by default), not on the point estimate: a point that reaches 0.9 on
a few hundred calibration queries by luck would fall short on the next ones (measured: 90.4% at calibration, 89.6%
on Banking77 test questions, before this bound).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

MARGIN_QUANTILES = np.linspace(0.0, 0.5, 26)[1:]  # margins tried: 0 and these quantiles of in-scope score gaps
MAX_THRESHOLDS = 400  # thresholds tried (quantiles of the observed top-1 scores)
CURVE_POINTS = 60  # points kept in the stored curve
CONFIDENCE_Z = 1.645  # one-sided 95% normal quantile for the Wilson lower bounds


@dataclass(frozen=True)
class ScoredQueries:
    """One row per calibration query: top1 (N,), top2 (N,) (-inf when the corpus has one entry), in_scope (N,)
    bool, correct (N,) bool (top-1 entry is the expected one; always False out of scope)."""

    top1: np.ndarray
    top2: np.ndarray
    in_scope: np.ndarray
    correct: np.ndarray

    @classmethod
    def of(cls, top1: Any, top2: Any, in_scope: Any, correct: Any) -> ScoredQueries:
        arrays = (np.asarray(top1, np.float64), np.asarray(top2, np.float64), np.asarray(in_scope, bool),
                  np.asarray(correct, bool))
        if len({a.shape for a in arrays}) != 1:
            raise ValueError("top1, top2, in_scope and correct must have the same length")
        return cls(arrays[0], arrays[1], arrays[2], arrays[3] & arrays[2])

    @property
    def positives(self) -> int:
        return int(self.in_scope.sum())

    @property
    def negatives(self) -> int:
        return int((~self.in_scope).sum())


@dataclass(frozen=True)
class CurvePoint:
    answer_threshold: float
    precision: float | None  # None: nothing answered
    coverage: float | None  # None: no in-scope query
    clarify: float | None  # share of in-scope queries answered "clarify"
    no_match: float | None  # None: no out-of-scope query


@dataclass(frozen=True)
class Calibration:
    answer_threshold: float
    clarify_margin: float
    target_precision: float
    target_no_match: float
    met: bool  # both targets met with some coverage (or, without positives, the no-match target met)
    point: CurvePoint  # the chosen operating point
    positives: int
    negatives: int
    curve: tuple[CurvePoint, ...]  # at the chosen margin, thresholds ascending

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def evaluate(scores: ScoredQueries, *, answer_threshold: float, clarify_margin: float) -> CurvePoint:
    """The metrics of one operating point (the same rule as `decision.decide`)."""
    return _grid(scores, np.asarray([answer_threshold]), clarify_margin)[0]


def _rates(num: np.ndarray, den: np.ndarray | int) -> np.ndarray:
    den = np.asarray(den, np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1), np.nan)


def wilson_lower(successes: np.ndarray, n: np.ndarray | int, z: float) -> np.ndarray:
    """Lower end of the Wilson score interval for successes / n (NaN where n = 0; the point estimate at z = 0)."""
    n_ = np.asarray(n, np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        p = successes / n_
        centre = p + z * z / (2 * n_)
        spread = z * np.sqrt(p * (1 - p) / n_ + z * z / (4 * n_ * n_))
        return np.where(n_ > 0, (centre - spread) / (1 + z * z / n_), np.nan)


def _grid_arrays(s: ScoredQueries, thresholds: np.ndarray, margin: float, z: float = 0.0) -> dict[str, np.ndarray]:
    """Metrics for every threshold at one margin, as arrays (T,); NaN where undefined. The `*_low` entries are
    the Wilson lower bounds at `z`."""
    reached = s.top1[None, :] >= thresholds[:, None]  # (T, N): not no_match
    tie = (s.top1 - s.top2) < margin  # (N,): clarify when reached
    answered = reached & ~tie[None, :]
    correct = (answered & s.correct[None, :]).sum(axis=1)
    clarified = (reached & tie[None, :] & s.in_scope[None, :]).sum(axis=1)
    n_answered = answered.sum(axis=1)
    rejected = (~reached & ~s.in_scope[None, :]).sum(axis=1)
    return {
        "precision": _rates(correct, n_answered),
        "coverage": _rates(correct, s.positives),
        "clarify": _rates(clarified, s.positives),
        "no_match": _rates(rejected, s.negatives),
        "precision_low": wilson_lower(correct, n_answered, z),
        "no_match_low": wilson_lower(rejected, s.negatives, z),
    }


def _point(threshold: float, metrics: dict[str, np.ndarray], i: int) -> CurvePoint:
    def value(name: str) -> float | None:
        v = float(metrics[name][i])
        return None if np.isnan(v) else round(v, 4)

    return CurvePoint(float(threshold), value("precision"), value("coverage"), value("clarify"),
                      value("no_match"))


def _grid(s: ScoredQueries, thresholds: np.ndarray, margin: float) -> list[CurvePoint]:
    metrics = _grid_arrays(s, thresholds, margin)
    return [_point(t, metrics, i) for i, t in enumerate(thresholds)]


def candidate_thresholds(top1: np.ndarray) -> np.ndarray:
    """Quantiles of the observed top-1 scores, plus one above the maximum (everything no_match)."""
    if top1.size == 0:
        return np.asarray([1.0])
    values = np.unique(np.quantile(top1, np.linspace(0, 1, MAX_THRESHOLDS)))
    return np.append(values, float(top1.max()) + 1e-6)


def candidate_margins(s: ScoredQueries) -> np.ndarray:
    """0 plus quantiles of the in-scope top1-top2 gaps: the student's cosine scale is compressed, so margins are
    drawn from the gaps this model actually produces rather than from a fixed grid."""
    gaps = (s.top1 - s.top2)[s.in_scope & np.isfinite(s.top2)]
    if gaps.size == 0:
        return np.asarray([0.0])
    return np.unique(np.concatenate([[0.0], np.round(np.quantile(gaps, MARGIN_QUANTILES), 6)]))


def calibrate(scores: ScoredQueries, *, target_precision: float, target_no_match: float,
              default_margin: float = 0.05, z: float = CONFIDENCE_Z) -> Calibration:
    """The (threshold, margin) with the most coverage among those with answer precision >= target_precision and
    no_match >= target_no_match on the out-of-scope queries, both judged on their Wilson lower bounds at `z`
    (0: on the point estimates); ties: fewer clarifications, then more no_match.
    Without in-scope queries only no_match can be measured: the lowest threshold meeting its target, margin
    `default_margin`. Nothing feasible: the most precise point, flagged met=False."""
    if scores.positives + scores.negatives == 0:
        raise ValueError("no calibration query")
    thresholds = candidate_thresholds(scores.top1)
    if scores.positives == 0:
        metrics = _grid_arrays(scores, thresholds, default_margin, z)
        ok = np.flatnonzero(metrics["no_match_low"] >= target_no_match)
        i = int(ok[0]) if ok.size else len(thresholds) - 1
        return _result(scores, thresholds, default_margin, metrics, i, target_precision, target_no_match,
                       met=bool(ok.size))
    best: tuple[tuple[float, ...], float, int, dict[str, np.ndarray]] | None = None
    fallback: tuple[tuple[float, ...], float, int, dict[str, np.ndarray]] | None = None
    for margin in candidate_margins(scores):
        metrics = _grid_arrays(scores, thresholds, float(margin), z)
        precision = np.nan_to_num(metrics["precision_low"], nan=0.0)
        coverage = np.nan_to_num(metrics["coverage"], nan=0.0)
        no_match = np.nan_to_num(metrics["no_match_low"], nan=1.0)  # no negatives: the target is vacuous
        clarify = np.nan_to_num(metrics["clarify"], nan=0.0)
        feasible = (precision >= target_precision) & (no_match >= target_no_match) & (coverage > 0)
        for i in np.flatnonzero(feasible):
            key = (coverage[i], -clarify[i], no_match[i])
            if best is None or key > best[0]:
                best = (key, float(margin), int(i), metrics)
        j = int(np.argmax(precision + 1e-3 * coverage))
        key = (precision[j], coverage[j])
        if fallback is None or key > fallback[0]:
            fallback = (key, float(margin), j, metrics)
    chosen, met = (best, True) if best is not None else (fallback, False)
    assert chosen is not None
    _, margin, i, metrics = chosen
    return _result(scores, thresholds, margin, metrics, i, target_precision, target_no_match, met=met)


def _result(s: ScoredQueries, thresholds: np.ndarray, margin: float, metrics: dict[str, np.ndarray], i: int,
            target_precision: float, target_no_match: float, *, met: bool) -> Calibration:
    keep = np.unique(np.linspace(0, len(thresholds) - 1, min(CURVE_POINTS, len(thresholds))).round().astype(int))
    curve = tuple(_point(thresholds[k], metrics, int(k)) for k in keep)
    return Calibration(float(thresholds[i]), margin, target_precision, target_no_match, met,
                       _point(thresholds[i], metrics, i), s.positives, s.negatives, curve)
