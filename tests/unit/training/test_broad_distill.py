"""The loop on the broad pool: mixed sources with an unlabelled share and the generative label loss, on tiny
models; then the export carries the match head."""

from __future__ import annotations

import json

import pytest

from tests.fixtures.tiny_broad_data import build_broad_data
from tests.fixtures.tiny_models import build_tiny_data
from tests.unit.training.test_distill_loop import tiny_config
from training.distill import distill
from training.export import export_student

pytestmark = pytest.mark.slow


def test_mixed_unlabelled_and_generative_run(tiny_student_dir, tiny_teacher_dir, tmp_path):
    data_dir = build_broad_data(build_tiny_data(tmp_path / "data"))
    cfg = tiny_config(tiny_student_dir, tiny_teacher_dir, data_dir, tmp_path / "run", steps=3)
    cfg.data.sources = ["medical_question_pairs", "medical_rqe", "unlabelled"]
    cfg.data.mix = {"medical_question_pairs": 1.0, "medical_rqe": 1.0, "unlabelled": 2.0}
    cfg.data.unlabelled_from = ["medical_question_pairs", "medical_rqe"]
    cfg.loss.generative_weight = 0.5
    cfg.run.full_report = False
    result = distill(cfg)
    train = [json.loads(line) for line in (tmp_path / "run" / "scalars.jsonl").read_text().splitlines()]
    train = [r for r in train if r["tag"] == "train"]
    assert [r["step"] for r in train] == [1, 2, 3]
    assert all({"sup", "dist", "mcl"} <= set(r) for r in train)
    assert any("gen" in r for r in train)  # the label loss, on steps whose batch holds gold-labelled pairs
    out = export_student(result.student, tmp_path / "artifact", manifest={}, model_card="# c\n", match_head=True)
    assert json.loads((out / "flipmatch.json").read_text())["match_head"]["probes"]
