"""Run folder: resolved config, scalar logs, seeds, checkpoints with everything needed to resume."""

from __future__ import annotations

import json
import random
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from training.config import TrainConfig, save_config


def set_seed(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def trainable_state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.named_parameters() if v.requires_grad}


CHECKPOINT = "checkpoint.pt"  # what a resumable run folder holds (training/records.py checks for it too)


class RunDir:
    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.mkdir(parents=True, exist_ok=True)
        self._scalars = self.path / "scalars.jsonl"

    @property
    def checkpoint(self) -> Path:
        return self.path / CHECKPOINT

    @property
    def best(self) -> Path:
        return self.path / "best_lora.pt"

    def save_config(self, config: TrainConfig) -> None:
        save_config(config, self.path / "config.yaml")

    def log_scalars(self, step: int, values: dict[str, float], tag: str = "train") -> None:
        """TensorBoard-style scalars as JSON lines: one record per step and tag."""
        record = {"step": step, "tag": tag, "time": time.time(), **{k: float(v) for k, v in values.items()}}
        with self._scalars.open("a") as fh:
            fh.write(json.dumps(record) + "\n")

    def write_json(self, name: str, payload: Any) -> None:
        tmp = self.path / f".{name}.tmp"
        tmp.write_text(json.dumps(payload, indent=2, default=str))
        tmp.replace(self.path / name)

    def save_checkpoint(
        self, *, model: nn.Module, optimizer, scheduler, step: int, best: float, extra: dict | None = None
    ) -> None:
        state = {
            "lora": trainable_state(model),
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "step": step,
            "best": best,
            "extra": extra or {},
            "rng": {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()},
        }
        tmp = self.checkpoint.with_suffix(".tmp")
        torch.save(state, tmp)
        tmp.replace(self.checkpoint)  # a crash mid-save leaves the previous checkpoint intact

    def load_checkpoint(self, *, model: nn.Module, optimizer, scheduler) -> tuple[int, float, dict]:
        state = torch.load(self.checkpoint, weights_only=False)
        model.load_state_dict(state["lora"], strict=False)
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        random.setstate(state["rng"]["python"])
        np.random.set_state(state["rng"]["numpy"])
        torch.set_rng_state(state["rng"]["torch"])
        return int(state["step"]), float(state["best"]), dict(state.get("extra", {}))

    def save_best(self, model: nn.Module) -> None:
        tmp = self.best.with_suffix(".tmp")
        torch.save(trainable_state(model), tmp)
        tmp.replace(self.best)

    def load_best(self, model: nn.Module) -> None:
        model.load_state_dict(torch.load(self.best, weights_only=True), strict=False)
