"""The training loop end to end on tiny models and data: runs, logs, resumes, and runs data-parallel."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from training.config import TrainConfig, save_config
from training.distill import distill

REPO = Path(__file__).resolve().parents[3]

pytestmark = pytest.mark.slow


def tiny_config(student_dir, teacher_dir, data_dir, out, stop_at_step=None, **optim) -> TrainConfig:
    return TrainConfig.model_validate(
        {
            "data": {
                "data_dir": str(data_dir),
                "dev_queries_per_intent": 2,
                "faq_alternates_per_intent": 2,
                "max_eval_pairs": 10,
                "max_test_queries": 8,
            },
            "teacher": {"model": str(teacher_dir), "batch_size": 4, "max_rows": 16},
            "student": {"model": str(student_dir), "max_seq_length": 24},
            "lora": {"rank": 4, "readout_rank": 8},
            "optim": {"lr": 1e-3, "batch_pairs": 4, "steps": 4, "bf16": "off", **optim},
            "run": {
                "output_dir": str(out),
                "eval_every": 2,
                "checkpoint_every": 2,
                "log_every": 1,
                "seed": 3,
                "stop_at_step": stop_at_step,
            },
        }
    )


def test_distill_runs_logs_and_reports(tiny_student_dir, tiny_teacher_dir, tiny_data_dir, tmp_path):
    result = distill(tiny_config(tiny_student_dir, tiny_teacher_dir, tiny_data_dir, tmp_path / "run"))
    run = tmp_path / "run"
    assert {"config.yaml", "scalars.jsonl", "metrics.json", "best_lora.pt", "checkpoint.pt"} <= {
        p.name for p in run.iterdir()
    }
    records = [json.loads(line) for line in (run / "scalars.jsonl").read_text().splitlines()]
    train = [r for r in records if r["tag"] == "train"]
    assert [r["step"] for r in train] == [1, 2, 3, 4]
    assert all({"total", "sup", "dist", "mcl", "drop_pos", "lr"} <= set(r) for r in train)
    for stage in ("teacher", "zero_shot", "distilled", "test_distilled"):
        assert "banking77/r@1" in result.metrics[stage] and "mqp/f1" in result.metrics[stage]
    assert "mqp" in result.thresholds


def test_resume_continues_where_it_stopped(tiny_student_dir, tiny_teacher_dir, tiny_data_dir, tmp_path):
    full = distill(tiny_config(tiny_student_dir, tiny_teacher_dir, tiny_data_dir, tmp_path / "full"))
    distill(tiny_config(tiny_student_dir, tiny_teacher_dir, tiny_data_dir, tmp_path / "cut", stop_at_step=2))
    resumed = distill(tiny_config(tiny_student_dir, tiny_teacher_dir, tiny_data_dir, tmp_path / "cut"))
    steps = [
        json.loads(line)["step"]
        for line in (tmp_path / "cut" / "scalars.jsonl").read_text().splitlines()
        if '"train"' in line
    ]
    assert steps == [1, 2, 3, 4]  # the second run started at step 3
    # Same batches, same RNG: the resumed run ends where the uninterrupted one does (last-step weights,
    # compared via the checkpoint both runs wrote at step 4).
    a = torch.load(tmp_path / "full" / "checkpoint.pt", weights_only=False)["lora"]
    b = torch.load(tmp_path / "cut" / "checkpoint.pt", weights_only=False)["lora"]
    assert all(torch.allclose(a[k], b[k], atol=1e-5) for k in a)
    assert full.metrics and resumed.metrics


def test_torchrun_two_gloo_ranks_train_one_model(tiny_student_dir, tiny_teacher_dir, tiny_data_dir, tmp_path):
    """The real launcher, as the README runs it: `torchrun --nproc_per_node 2 -m training distill` (gloo on CPU).
    Both ranks start, synchronise their gradients every step, and rank 0 writes the run; bounded in time."""
    cfg = tiny_config(tiny_student_dir, tiny_teacher_dir, tiny_data_dir, tmp_path / "ddp", steps=2)
    cfg.teacher.finetune = False
    config_file = tmp_path / "ddp.yaml"
    save_config(cfg, config_file)
    torchrun = Path(sys.executable).with_name("torchrun")
    logs = tmp_path / "torchrun-logs"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    result = subprocess.run(
        [str(torchrun), "--standalone", "--nproc_per_node", "2", "--log-dir", str(logs), "--redirects", "3",
         "-m", "training", "distill", "--config", str(config_file), "--no-export"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    rank_logs = {p.parent.name: p.read_text(errors="replace") for p in logs.rglob("stderr.log")}
    assert result.returncode == 0, (result.stderr[-3000:], {k: v[-2000:] for k, v in rank_logs.items()})
    assert set(rank_logs) == {"0", "1"}  # two workers ran
    steps = [json.loads(line)["step"] for line in (tmp_path / "ddp" / "scalars.jsonl").read_text().splitlines()
             if '"train"' in line]
    assert steps == [1, 2]  # rank 0 logged every step; a rank that did not all-reduce would have hung instead
    lora = torch.load(tmp_path / "ddp" / "checkpoint.pt", weights_only=False)["lora"]
    moved = [k for k in lora if "lora_B" in k and "lm_head" not in k]
    assert any(lora[k].abs().sum() > 0 for k in moved)  # a step really happened (B starts at zero)


def test_shared_preparation_and_dev_only_report(tiny_student_dir, tiny_teacher_dir, tiny_data_dir, tmp_path):
    """The quality benchmark's mode: one prepare_teacher for several runs, dev-only evaluation inside."""
    from training.distill import prepare_teacher
    from training.runs import RunDir

    cfg = tiny_config(tiny_student_dir, tiny_teacher_dir, tiny_data_dir, tmp_path / "a")
    prepared = prepare_teacher(cfg, RunDir(tmp_path / "prep"), "cpu")
    a = cfg.model_copy(update={"run": cfg.run.model_copy(update={"full_report": False})})
    result = distill(a, prepared)
    assert "distilled" in result.metrics and "teacher" in result.metrics  # the shared teacher report
    assert not {"zero_shot", "test_distilled", "test_teacher", "test_zero_shot"} & set(result.metrics)
    assert not (tmp_path / "a" / "teacher").exists()  # no second teacher fine-tune
    assert "zero_shot" not in prepared[2]  # the shared report is not mutated by a run
