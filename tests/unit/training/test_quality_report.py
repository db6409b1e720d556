"""docs/results.md rendering from a synthetic results.json: every system, mean ± std, hashes, sweep, figures."""

from __future__ import annotations

import numpy as np

from training.quality.plan import FULL, SYSTEMS, ZERO_SHOT, Plan
from training.quality.report import mean_std, write_report


def _results(plan: Plan) -> dict:
    rng = np.random.default_rng(0)
    runs = []
    for system, seed in plan.runs(("main", "ablation", "variant")):
        metrics = {"mqp/f1": rng.uniform(0.5, 0.9), "b77_faq/r@1": rng.uniform(), "b77_nomatch/auroc": rng.uniform()}
        curve = [(10.0 * i, 10 * i, rng.uniform()) for i in range(1, 4)] if system.kind == "distill" else []
        runs.append(
            {
                "system": system.name,
                "table": system.table,
                "seed": seed,
                "config_sha256": f"{abs(hash((system.name, seed))):064x}"[-64:],
                "wall_s": 12.0,
                "eval_s": 3.0,
                "dev": metrics,
                "test": metrics,
                "curve": curve,
                "filter_drop": {"drop_pos": 0.01, "drop_neg": 0.5} if system.kind == "distill" else {},
            }
        )
    pairs = {"set": "mqp", "sim": rng.uniform(-0.2, 1, 20).tolist(), "label": [0, 1] * 10}
    return {
        "plan": {"config": "cfg.yaml", "overrides": ["optim.steps=40"], "seeds": list(plan.seeds)},
        "hardware": {"Model name": "Test CPU", "usable cores": "2"},
        "splits": {"banking77": {"held_out_intents": ["a", "b"]}},
        "runs": runs,
        "sweep": [{"point": p, "dev": {"mqp/f1": 0.7}, "wall_s": 1.0} for p in ("default", "m_c=0.02", "tau=0.3")],
        "scores": {FULL: pairs, ZERO_SHOT: pairs, "teacher": pairs},
        "total_wall_s": 600.0,
        "skipped": ["sweep tau=0.7"],
    }


def test_mean_std():
    assert mean_std([0.5, 0.7]) == "0.600 ± 0.141"
    assert mean_std([0.5]) == "0.500" and mean_std([float("nan")]) == "–"


def test_report_has_every_system_stats_hashes_and_figures(tmp_path):
    plan = Plan(config="cfg.yaml", overrides=(), seeds=(42, 43, 44))
    results = _results(plan)
    path = write_report(results, "python -m training.quality run --budget-minutes 90", tmp_path / "docs" / "results.md")
    text = path.read_text()
    assert "`python -m training.quality run --budget-minutes 90`" in text
    table1, rest = text.split("## Table 1")[1].split("## Table 2")
    table2, rest = rest.split("## Table 3")
    table3, drops = rest.split("## Sensitivity")[0], rest.split("## Dual-threshold filter")[1]
    for system in SYSTEMS:
        assert f"| {system.name} |" in {"main": table1, "ablation": table2, "variant": table3}[system.table]
    assert f"| {FULL} | 42 | 0.010 | 0.500 |" in drops
    verdicts = text.split("### Does the flipped student")[1].split("## Table 2")[0]
    assert "- MQP F1: flipped full" in verdicts and "vs LoRA-SFT" in verdicts and "vs teacher" in verdicts

    assert f"| {FULL} | 3 |" in table1 and "±" in table1  # three seeds, mean ± std
    assert f"| {FULL} | 1 |" in table2 and f"| {FULL} | 1 |" in table3  # the reference row, seed 42 only
    assert not any(f"| {s.name} |" in table2 for s in SYSTEMS if s.table == "variant")
    for run in results["runs"]:
        assert run["config_sha256"] in text
    assert "Skipped to stay within the budget: sweep tau=0.7" in text
    assert "Test CPU" in text and "| m_c=0.02 |" in text and "| tau=0.3 |" in text
    assert (tmp_path / "docs" / "figures" / "similarity_distributions.png").stat().st_size > 0
    assert "![learning_curves](figures/learning_curves.png)" in text


def test_verdict_separates_a_gap_from_seed_noise():
    from training.quality.report import _verdict

    assert _verdict([0.80, 0.81, 0.82], [0.70, 0.71, 0.72]).endswith("higher")
    assert "within seed noise" in _verdict([0.70, 0.75, 0.80], [0.72, 0.74, 0.76])


def test_full_plan_runs_main_rows_first_with_three_seeds():
    from training.quality.plan import FULL, SFT, full_plan

    plan = full_plan("cfg.yaml", run_minutes=2.5)
    runs = plan.runs()
    distilled_main = [(s.name, seed) for s, seed in runs if s.kind == "distill" and s.table == "main"]
    # flipped full and its SFT twin on 3 seeds (the comparison the report judges), the other styles on seed 42
    assert sorted(seed for name, seed in distilled_main if name in (FULL, SFT)) == [42, 42, 43, 43, 44, 44]
    assert all(seed == 42 for name, seed in distilled_main if name not in (FULL, SFT)) and len(distilled_main) == 8
    first_ablation = next(i for i, (s, _) in enumerate(runs) if s.table == "ablation")
    assert {s.name for s, _ in runs[:first_ablation] if s.kind == "distill"} == {FULL, SFT}
    assert [label for label, _ in plan.sweep()] == [
        "m_c=0.02",
        "m_c=0.04",
        "m_c=0.08",
        "m_c=0.12",
        "tau=0.3",
        "tau=0.7",
    ]
    assert "optim.max_minutes=2.50" in plan.overrides
    assert not any(o.startswith("optim.steps=") for o in plan.overrides)  # the budget sizes the step plan


def test_budget_stops_runs_that_would_end_past_it(tmp_path):
    import time

    from training.quality.plan import tiny_plan
    from training.quality.runner import BenchmarkRunner

    done = [{"wall_s": 50.0, "eval_s": 10.0, "curve": [(0.0, 1, 0.5)]}]
    now = time.time()
    assert BenchmarkRunner(tiny_plan("c.yaml"), tmp_path, budget_minutes=1)._out_of_budget(now - 10, done)
    assert not BenchmarkRunner(tiny_plan("c.yaml"), tmp_path, budget_minutes=2)._out_of_budget(now - 10, done)
    assert not BenchmarkRunner(tiny_plan("c.yaml"), tmp_path)._out_of_budget(now - 1e6, done)


def test_a_benchmark_run_keeps_the_preset_records(tmp_path):
    """results.json also holds what `flipmatch distill --record` wrote (the README's preset table reads it):
    a new benchmark run replaces its own keys and keeps those."""
    import json

    from training.quality.__main__ import with_preset_records

    existing = tmp_path / "results.json"
    existing.write_text(json.dumps({"runs": ["old"], "default_run": {"wall_s": 845.5}, "long_run": {"wall_s": 1}}))
    merged = with_preset_records({"runs": ["new"], "sweep": []}, existing)
    assert merged == {"runs": ["new"], "sweep": [], "default_run": {"wall_s": 845.5}, "long_run": {"wall_s": 1}}
    assert with_preset_records({"runs": []}, tmp_path / "absent.json") == {"runs": []}


def test_paired_comparison_matches_runs_by_seed():
    from training.quality.plan import SFT
    from training.quality.report import _paired

    def run(system, seed, value):
        return {"system": system, "seed": seed, "test": {"m": value}}

    runs = [run(FULL, 1, 0.80), run(FULL, 2, 0.70), run(SFT, 2, 0.69), run(SFT, 1, 0.81), run(FULL, 3, 0.9)]
    assert _paired(runs, FULL, SFT, "m") == "; per seed -0.010, +0.010: ahead on 1 of 2"  # seed 3 has no twin
    assert _paired(runs[:3], FULL, SFT, "m") == ""  # one matched seed is no comparison
