"""The cache horizon: count the new texts ahead, pick the most steps that fit, and a budgeted run that fills
caches only for the steps it trains."""

from __future__ import annotations

import time

import pytest

import training.distill as distill_module
from training.cache_plan import affordable_steps, batch_texts, new_text_counts
from training.data.pairs import Pair
from training.distill import distill

from .test_distill_loop import tiny_config


def test_new_text_counts_are_cumulative_distinct_and_skip_filled_texts():
    batches = [[Pair("a", "b", 1)], [Pair("b", "c", 0)], [Pair("a", "c", 1)], [Pair("d", "e", 1)]]
    assert new_text_counts(batches, filled=set()) == [0, 2, 3, 3, 5]
    assert new_text_counts(batches, filled={"a", "d"}) == [0, 1, 2, 2, 3]
    assert batch_texts(batches) == ["a", "b", "c", "d", "e"]


def test_affordable_steps_counts_fill_training_and_evaluations():
    counts = [0, 10, 15, 18, 20, 21]
    # k steps cost counts[k] * 0.1 s of fill + k * 1 s of training + (k // 2 + 1) evaluations of 0.5 s
    assert affordable_steps(counts, 0.1, 1.0, left_s=6.0, eval_s=0.5, eval_every=2) == 3  # 1.8+3+1.0 = 5.8
    assert affordable_steps(counts, 0.1, 1.0, left_s=5.7, eval_s=0.5, eval_every=2) == 2
    assert affordable_steps(counts, 0.0, 1.0, left_s=100.0) == 5  # never beyond the plan
    assert affordable_steps(counts, 0.1, 1.0, left_s=0.5) == 0


@pytest.mark.slow
def test_a_budgeted_run_fills_caches_only_for_the_steps_it_trains(
    tiny_student_dir, tiny_teacher_dir, tiny_data_dir, tmp_path, monkeypatch
):
    real_fill = distill_module._fill_caches
    filled: list[str] = []

    def slow_fill(scorer, prefix, texts):
        filled.extend(texts)
        time.sleep(0.15 * len(texts))  # a machine where computing the caches is the main cost
        teacher_s, fill_s = real_fill(scorer, prefix, texts)
        return teacher_s, fill_s + 0.15 * len(texts)

    samplers = []
    real_sampler = distill_module.make_sampler

    def keep_sampler(*args, **kwargs):
        samplers.append(real_sampler(*args, **kwargs))
        return samplers[-1]

    real_step = distill_module.forward_backward

    def slow_step(*args, **kwargs):
        time.sleep(0.05)  # a step costs a third of one text's caches
        return real_step(*args, **kwargs)

    monkeypatch.setattr(distill_module, "_fill_caches", slow_fill)
    monkeypatch.setattr(distill_module, "forward_backward", slow_step)
    monkeypatch.setattr(distill_module, "make_sampler", keep_sampler)
    monkeypatch.setattr(distill_module, "PROBE_STEPS", 4)
    cfg = tiny_config(tiny_student_dir, tiny_teacher_dir, tiny_data_dir, tmp_path / "run", steps=400, max_minutes=0.25)
    cfg.run.eval_every = 1000
    result = distill(cfg)
    schedule, horizon = result.training["schedule"], result.training["throughput"]["cache_horizon"]
    assert schedule["schedule_completed"] and 4 < schedule["planned"] < 400
    assert horizon["probe_steps"] == 4 and horizon["fill_s_per_text"] > 0.01
    assert horizon["steps"] >= schedule["planned"]  # a later replan may only shrink the plan
    # the caches hold the texts of the steps the horizon chose, each filled once, and not those of all 400
    chosen = batch_texts(samplers[0].batch(s) for s in range(horizon["steps"]))
    assert sorted(filled) == sorted(chosen) and horizon["texts_filled"] == len(chosen)
    assert len(chosen) < len(batch_texts(samplers[0].batch(s) for s in range(400)))
