"""Fill the shared caches (teacher scores, frozen-prefix states) before a budgeted training, so no training pays
them inside its time budget: a one-step run of the same config, once per cut of the caches."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from training.config import TrainConfig


def warm_caches(cfg: TrainConfig, prepared: Any, output_dir: Path, warmed: set[tuple]) -> None:
    """Run `cfg` for one step into `output_dir` unless a config with the same cut is in `warmed` (updated). The
    caches hold the texts a run will draw, so a new data mix, step plan or seed needs its own warm-up."""
    cut = (cfg.student.model, cfg.student.num_layers, cfg.student.max_seq_length, cfg.lora.top_layers,
           cfg.data.model_dump_json(), cfg.optim.steps, cfg.optim.batch_pairs, cfg.run.seed)
    if cut in warmed:
        return
    from training.distill import distill  # torch: only when a training runs (`report` stays light)

    warm = cfg.model_copy(deep=True)
    warm.run.output_dir, warm.run.stop_at_step, warm.optim.max_minutes = str(output_dir), 1, None
    distill(warm, prepared)
    warmed.add(cut)
