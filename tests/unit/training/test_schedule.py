"""The step plan: a run that would overrun its time budget shrinks its schedule and still ends fully decayed."""

from __future__ import annotations

import json
import time

import pytest

import training.distill as distill_module
from tests.unit.training.test_distill_loop import tiny_config
from training.distill import distill
from training.hardware import bf16_is_faster, resolve_bf16
from training.schedule import FLOOR, StepPlan, lr_factor, typical_step_s


def test_lr_factor_warms_up_then_decays_to_the_floor():
    assert lr_factor(0, 100, 0.1) == pytest.approx(0.1)
    assert lr_factor(9, 100, 0.1) == pytest.approx(1.0)
    assert lr_factor(100, 100, 0.1) == pytest.approx(FLOOR)
    assert lr_factor(55, 100, 0.1) > lr_factor(80, 100, 0.1)


def test_plan_shrinks_only_when_the_budget_would_be_overrun():
    plan = StepPlan.create(100, max_minutes=1.0)  # 60 s
    assert not plan.fit(10, elapsed_s=5.0, step_s=0.5)  # 90 more steps take 45 s: fits
    assert plan.planned == 100
    assert plan.fit(10, elapsed_s=5.0, step_s=1.0, evals_left=2, eval_s=5.0)  # 45 s left: 45 more steps
    assert plan.planned == 55 and plan.resized_at == 10
    assert plan.record(55)["steps_run"] == 55 and plan.record(40)["schedule_completed"] is False
    assert plan.record(55)["schedule_completed"] and plan.record(55)["resized"]
    assert not StepPlan.create(100, None).fit(10, 1e9, 1e9)  # no budget: the configured plan always


def test_a_burst_of_slow_steps_does_not_decide_the_plan():
    steady = [0.23] * 90 + [0.6] * 10  # 10 slow steps after 90 typical ones
    assert typical_step_s(steady) == pytest.approx(0.23)
    assert typical_step_s([0.23] * 20 + [0.6] * 80) == pytest.approx(0.6)  # a lasting slowdown is followed
    assert typical_step_s([0.4, 0.5]) == pytest.approx(0.45)  # the first steps: what there is


def test_bf16_chosen_only_when_measured_faster():
    assert bf16_is_faster([1.0, 1.1, 1.0], [0.5, 0.6, 0.5])
    assert not bf16_is_faster([1.0, 1.0, 1.0], [1.6, 1.7, 1.6])  # a CPU whose bf16 flag is slower (Xeon, no AMX)
    assert not bf16_is_faster([1.0, 1.0, 1.0], [0.97, 0.98, 0.96])  # within noise: stay in fp32
    assert resolve_bf16("off", "cpu", lambda bf16: None) == (False, {"decided_by": "setting"})


@pytest.mark.slow
def test_slowed_steps_still_end_with_a_fully_decayed_lr(
    tiny_student_dir, tiny_teacher_dir, tiny_data_dir, tmp_path, monkeypatch
):
    real = distill_module.forward_backward

    def slow(*args, **kwargs):
        time.sleep(0.3)  # a machine far slower than the budget was sized for
        return real(*args, **kwargs)

    monkeypatch.setattr(distill_module, "forward_backward", slow)
    monkeypatch.setattr(distill_module, "REPLAN_EVERY", 2)
    cfg = tiny_config(tiny_student_dir, tiny_teacher_dir, tiny_data_dir, tmp_path / "run", steps=200, max_minutes=0.1)
    cfg.run.eval_every = 1000
    result = distill(cfg)
    schedule = result.training["schedule"]
    assert schedule["configured"] == 200 and schedule["planned"] < 200
    assert schedule["schedule_completed"] and schedule["steps_run"] == schedule["planned"]
    lrs = [json.loads(line)["lr"] for line in (tmp_path / "run" / "scalars.jsonl").read_text().splitlines()
           if '"lr"' in line]
    assert lrs[-1] == pytest.approx(cfg.optim.lr * FLOOR, rel=1e-6)  # decayed all the way
    saved = json.loads((tmp_path / "run" / "metrics.json").read_text())["training"]["schedule"]
    assert saved == schedule
