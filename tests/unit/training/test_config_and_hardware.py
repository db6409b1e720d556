from __future__ import annotations

import pytest
from pydantic import ValidationError

from training.config import load_config
from training.hardware import choose_device, use_bf16


def test_overrides_apply_and_unknown_keys_fail(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("loss:\n  margin: 0.04\n")
    cfg = load_config(path, ["loss.margin=0.08", "optim.steps=7", "loss.filter=false"])
    assert cfg.loss.margin == 0.08 and cfg.optim.steps == 7 and cfg.loss.filter is False
    with pytest.raises(ValidationError):
        load_config(path, ["loss.marginn=0.1"])
    with pytest.raises(ValueError, match="section.key=value"):
        load_config(path, ["loss.margin"])


def test_shipped_default_config_loads():
    from training.cli import DEFAULT_CONFIG

    cfg = load_config(DEFAULT_CONFIG)
    assert cfg.loss.margin == 0.06 and cfg.loss.filter_pos_threshold == 0.5  # paper defaults kept


@pytest.mark.parametrize(
    ("pref", "cuda", "expected"), [("auto", True, "cuda"), ("auto", False, "cpu"), ("cpu", True, "cpu")]
)
def test_choose_device(pref, cuda, expected):
    assert choose_device(pref, cuda) == expected


def test_choose_device_refuses_missing_cuda():
    with pytest.raises(ValueError, match="no CUDA"):
        choose_device("cuda", False)


def test_bf16_selection():
    assert use_bf16("auto", "cuda", cuda_bf16=True, cpu_bf16=False) is True
    assert use_bf16("auto", "cpu", cuda_bf16=True, cpu_bf16=False) is False
    assert use_bf16("off", "cpu", cuda_bf16=True, cpu_bf16=True) is False
    with pytest.raises(ValueError, match="no native bf16"):
        use_bf16("on", "cpu", cuda_bf16=False, cpu_bf16=False)
