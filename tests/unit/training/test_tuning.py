"""`training.quality tune`: rows on one shared teacher, a table after every row, and a config edited mid-round
that does not reach (or break) the rows still to come."""

from __future__ import annotations

import json

import pytest
import yaml

import training.quality.tuning as tuning_module
from training.quality.tuning import tune

from .test_distill_loop import tiny_config

pytestmark = pytest.mark.slow


def test_rows_read_the_config_as_it_was_when_the_round_started(
    tiny_student_dir, tiny_teacher_dir, tiny_data_dir, tmp_path, monkeypatch
):
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(tiny_config(tiny_student_dir, tiny_teacher_dir, tiny_data_dir, "x").model_dump()))
    real = tuning_module.distill
    calls = []

    def distill_then_edit(cfg, prepared):
        calls.append(cfg.optim.lr)
        result = real(cfg, prepared)
        # someone edits the YAML while the round runs: a key this code does not know, and a new lr
        config.write_text(config.read_text().replace("lr: 0.001", "lr: 0.5") + "no_such_key: 1\n")
        return result

    monkeypatch.setattr(tuning_module, "distill", distill_then_edit)
    log = tmp_path / "round.json"
    rows = tune(str(config), ["base:optim.steps=2"], [], [3, 4], tmp_path / "work", log)
    assert [r["seed"] for r in rows] == [3, 4] and calls == [0.001, 0.001]
    assert len(json.loads(log.read_text())) == 2 and "| base |" in log.with_suffix(".md").read_text()
