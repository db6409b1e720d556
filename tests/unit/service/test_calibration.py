"""Calibration maths on hand-made score lists: the chosen point meets its targets with the most coverage, the
metrics agree with `decision.decide`, and the edge cases (no positives, nothing feasible) are explicit."""

from __future__ import annotations

import numpy as np
import pytest

from service.corpus.calibration import ScoredQueries, calibrate, evaluate, wilson_lower
from service.corpus.decision import decide


def scored(rows: list[tuple[float, float, str]]) -> ScoredQueries:
    """rows: (top1, top2, label) with label 'ok' (in scope, right entry), 'wrong' (in scope, wrong entry) or
    'oos' (out of scope)."""
    top1, top2, labels = zip(*rows, strict=True)
    return ScoredQueries.of(top1, top2, [lab != "oos" for lab in labels], [lab == "ok" for lab in labels])


def by_rule(s: ScoredQueries, t: float, m: float) -> dict[str, float]:
    """The metrics recomputed query by query with decision.decide: the reference for `evaluate`."""
    outcomes = [decide([a, b], answer_threshold=t, clarify_margin=m) for a, b in zip(s.top1, s.top2, strict=True)]
    answered = [i for i, o in enumerate(outcomes) if o == "answer"]
    correct = sum(1 for i in answered if s.correct[i])
    oos = [i for i in range(len(outcomes)) if not s.in_scope[i]]
    return {"precision": correct / len(answered), "coverage": correct / s.positives,
            "no_match": sum(outcomes[i] == "no_match" for i in oos) / len(oos)}


def test_metrics_match_the_decision_rule():
    rng = np.random.default_rng(3)
    top1 = rng.uniform(0.3, 1.0, 300)
    s = ScoredQueries.of(top1, top1 - rng.uniform(0, 0.2, 300), rng.uniform(size=300) < 0.7,
                         rng.uniform(size=300) < 0.8)
    for t, m in [(0.5, 0.0), (0.7, 0.03), (0.62, 0.1)]:
        point, ref = evaluate(s, answer_threshold=t, clarify_margin=m), by_rule(s, t, m)
        for name in ("precision", "coverage", "no_match"):
            assert getattr(point, name) == pytest.approx(ref[name], abs=1e-4), (t, m, name)


def test_threshold_separates_off_topic_from_answers():
    # In scope scores 0.8-0.9 (all right), off-topic 0.5-0.7: any threshold in (0.7, 0.8] is perfect.
    rows = [(0.8 + i / 100, 0.5, "ok") for i in range(10)] + [(0.5 + i / 50, 0.4, "oos") for i in range(10)]
    result = calibrate(scored(rows), target_precision=0.9, target_no_match=0.9, z=0)
    assert 0.68 < result.answer_threshold <= 0.8
    assert result.met and result.point.precision == 1.0 and result.point.coverage == 1.0
    assert result.point.no_match == 1.0 and result.positives == 10 and result.negatives == 10


def test_margin_buys_precision_when_wrong_answers_are_near_ties():
    # Right answers win clearly (gap 0.2); wrong ones are near ties (gap 0.01): a margin between turns the wrong
    # answers into clarify, which the target needs (precision without it: 6/10).
    rows = [(0.9, 0.7, "ok")] * 6 + [(0.9, 0.89, "wrong")] * 4 + [(0.3, 0.2, "oos")] * 5
    result = calibrate(scored(rows), target_precision=0.9, target_no_match=0.9, z=0)
    assert result.met and 0.01 < result.clarify_margin <= 0.2
    assert result.point.precision == 1.0 and result.point.coverage == 0.6 and result.point.clarify == 0.4


def test_most_coverage_wins_among_feasible_points():
    # Lowering the threshold from 0.85 to 0.65 adds 5 right answers and 1 off-topic answer: precision 15/16 >= 0.9.
    rows = ([(0.85, 0.5, "ok")] * 10 + [(0.65, 0.3, "ok")] * 5 + [(0.66, 0.3, "oos")]
            + [(0.3, 0.2, "oos")] * 9)
    result = calibrate(scored(rows), target_precision=0.9, target_no_match=0.9, z=0)
    assert result.answer_threshold <= 0.65 and result.point.coverage == 1.0
    assert result.point.precision == pytest.approx(15 / 16, abs=1e-3)
    # A stricter precision target gives up that coverage.
    strict = calibrate(scored(rows), target_precision=0.99, target_no_match=0.9, z=0)
    assert strict.answer_threshold > 0.66 and strict.point.coverage == pytest.approx(10 / 15, abs=1e-3)


def test_no_match_target_is_enforced():
    # Off-topic queries score like weak answers; precision allows answering them but the no-match target does not.
    rows = [(0.9, 0.5, "ok")] * 50 + [(0.7, 0.5, "ok")] * 50 + [(0.72, 0.5, "oos")] * 3 + [(0.3, 0.2, "oos")] * 7
    loose = calibrate(scored(rows), target_precision=0.9, target_no_match=0.0, z=0)
    assert loose.point.coverage == 1.0
    strict = calibrate(scored(rows), target_precision=0.9, target_no_match=0.9, z=0)
    assert strict.point.no_match >= 0.9 and strict.answer_threshold > 0.72


def test_without_positives_the_threshold_meets_the_no_match_target():
    rows = [(0.3 + i / 100, 0.1, "oos") for i in range(100)]
    result = calibrate(scored(rows), target_precision=0.9, target_no_match=0.9, default_margin=0.04, z=0)
    assert result.met and result.point.no_match == pytest.approx(0.9, abs=0.011)
    assert result.clarify_margin == 0.04 and result.point.coverage is None


def test_infeasible_target_is_flagged_not_hidden():
    rows = [(0.9, 0.5, "wrong")] * 5 + [(0.9, 0.5, "ok")] * 5
    result = calibrate(scored(rows), target_precision=0.9, target_no_match=0.9, z=0)
    assert not result.met


def test_curve_is_sorted_and_bounded():
    rng = np.random.default_rng(0)
    s = ScoredQueries.of(rng.uniform(size=2000), rng.uniform(size=2000) * 0.5, rng.uniform(size=2000) < 0.5,
                         np.ones(2000, bool))
    result = calibrate(s, target_precision=0.5, target_no_match=0.5, z=0)
    thresholds = [p.answer_threshold for p in result.curve]
    assert thresholds == sorted(thresholds) and 10 <= len(thresholds) <= 60
    assert result.curve[-1].coverage == 0.0 and result.curve[-1].no_match == 1.0  # above every score
    assert result.to_dict()["point"]["answer_threshold"] == result.answer_threshold


def test_lengths_must_agree():
    with pytest.raises(ValueError):
        ScoredQueries.of([0.1, 0.2], [0.0], [True, True], [True, True])
    with pytest.raises(ValueError):
        calibrate(ScoredQueries.of([], [], [], []), target_precision=0.9, target_no_match=0.9)


def test_wilson_lower_bound():
    assert wilson_lower(np.asarray(90), 100, 1.645) == pytest.approx(0.8396, abs=1e-3)
    assert wilson_lower(np.asarray(900), 1000, 1.645) == pytest.approx(0.8833, abs=2e-3)  # more data, tighter
    assert wilson_lower(np.asarray(9), 10, 0.0) == pytest.approx(0.9)
    assert np.isnan(wilson_lower(np.asarray(0), 0, 1.645))


def test_targets_are_judged_with_confidence():
    # 15 right answers of 16 (0.9375) meet 0.9 on the point estimate but not at 95% confidence; 150 of 155 do.
    few = [(0.85, 0.5, "ok")] * 15 + [(0.85, 0.5, "wrong")] + [(0.3, 0.2, "oos")] * 10
    assert calibrate(scored(few), target_precision=0.9, target_no_match=0.0, z=0).met
    assert not calibrate(scored(few), target_precision=0.9, target_no_match=0.0).met
    many = [(0.85, 0.5, "ok")] * 150 + [(0.85, 0.5, "wrong")] * 5 + [(0.3, 0.2, "oos")] * 100
    result = calibrate(scored(many), target_precision=0.9, target_no_match=0.9)
    assert result.met and result.point.coverage == pytest.approx(150 / 155, abs=1e-3)
