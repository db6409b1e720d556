"""The benchmark runner end to end on tiny models and data: a shared teacher, zero-shot / teacher / distilled
systems over two seeds, the sweep's default point, results.json and docs/results.md in a tmp dir."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
import yaml

from training.evaluate.encoders import describe, load_encoder
from training.quality.__main__ import main
from training.quality.plan import FULL, SYSTEMS, ZERO_SHOT, tiny_plan
from training.quality.runner import BenchmarkRunner

pytestmark = pytest.mark.slow


@pytest.fixture
def tiny_yaml(tiny_student_dir, tiny_teacher_dir, tmp_path):
    cfg = {
        "data": {"dev_queries_per_intent": 2, "faq_alternates_per_intent": 2, "max_eval_pairs": 10},
        "teacher": {"model": str(tiny_teacher_dir), "batch_size": 4, "max_rows": 16},
        "student": {"model": str(tiny_student_dir), "max_seq_length": 24},
        "lora": {"rank": 4, "readout_rank": 8},
        "optim": {"lr": 1e-3, "batch_pairs": 4, "bf16": "off"},
    }
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_runner_end_to_end_writes_results_and_report(tiny_yaml, tiny_student_dir, tiny_data_dir, tmp_path):
    # A cut of the tiny plan (CPU time): one system of each kind, two seeds for the distilled row.
    keep = {ZERO_SHOT, "fine-tuned teacher (MiniLM)", FULL}
    plan = replace(
        tiny_plan(str(tiny_yaml)),
        systems=tuple(s for s in SYSTEMS if s.name in keep),
        overrides=("optim.steps=1", "run.eval_every=1", "run.checkpoint_every=1000", "run.log_every=1"),
        margins=(0.06,),
        filter_thresholds=(0.5,),
    )
    work = tmp_path / "work"
    results = BenchmarkRunner(plan, work, str(tiny_data_dir)).run()
    assert [(r["system"], r["seed"]) for r in results["runs"]] == [
        (ZERO_SHOT, 3),
        ("fine-tuned teacher (MiniLM)", 3),
        (FULL, 3),
        (FULL, 4),
    ]
    assert (work / "teacher" / "modules.json").exists()  # fine-tuned once, reused by every run
    full = [r for r in results["runs"] if r["system"] == FULL]
    assert full[0]["config_sha256"] != full[1]["config_sha256"] and len(full[0]["config_sha256"]) == 64
    assert full[0]["curve"] and "mqp/spearman_teacher" in full[0]["test"]
    assert "b77_nomatch/auroc" in full[0]["test"] and "b77_faq/r@1" in full[0]["dev"]
    teacher = results["runs"][1]["test"]
    assert teacher["mqp/spearman_teacher"] == pytest.approx(1.0)
    assert json.loads((work / "results.json").read_text())["runs"] == json.loads(json.dumps(results["runs"]))

    # Report from the saved results (the CLI's `report` path renders the same file).
    from training.quality.report import write_report

    text = write_report(results, "python -m training.quality run --tiny", tmp_path / "docs" / "results.md").read_text()
    assert f"| {FULL} | 2 |" in text and "±" in text
    assert all(r["config_sha256"] in text for r in results["runs"])

    # Any encoder loads for evaluation: a run folder (student + best LoRA), the teacher, the zero-shot student.
    run_dir = next((work / "runs").glob("flipped-full*-s3"))
    assert describe(str(run_dir)) == "run" and describe(f"student:{tiny_student_dir}@mean") == "zero_shot_student"
    for spec in (str(run_dir), str(work / "teacher"), f"student:{tiny_student_dir}@mean"):
        vectors = load_encoder(spec)(["where is my card", "top up"])
        np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-4)


def test_cli_eval_scores_an_encoder_on_test_at_dev_thresholds(tiny_yaml, tiny_teacher_dir, tiny_data_dir, capsys):
    args = ["eval", "--model", str(tiny_teacher_dir), "--config", str(tiny_yaml), "--data-dir", str(tiny_data_dir)]
    assert main([*args, "--tasks", "mqp", "--split", "test"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert {"mqp/f1", "mqp/threshold", "mqp/roc_auc", "primary"} <= set(out)


def test_cli_rejects_unknown_command():
    with pytest.raises(SystemExit):
        main(["bogus"])


def test_flipmatch_eval_scores_tasks_with_teacher_agreement(tiny_yaml, tiny_teacher_dir, tiny_data_dir):
    from typer.testing import CliRunner

    from training.cli import app

    args = [
        "eval",
        "--model",
        str(tiny_teacher_dir),
        "--config",
        str(tiny_yaml),
        "--set",
        f"data.data_dir={tiny_data_dir}",
    ]
    done = CliRunner().invoke(
        app, [*args, "--tasks", "banking77,mqp", "--split", "test", "--teacher", str(tiny_teacher_dir)]
    )
    assert done.exit_code == 0, done.output
    out = json.loads(done.output[done.output.index("{") :])
    assert {"b77_faq/r@1", "b77_pairs/f1", "mqp/f1", "mqp/threshold"} <= set(out)
    assert out["mqp/spearman_teacher"] == pytest.approx(1.0)  # the teacher agrees with itself
    bad = CliRunner().invoke(app, [*args, "--tasks", "nope"])
    assert bad.exit_code == 2 and "unknown quality task" in bad.output
