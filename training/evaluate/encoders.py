"""Any encoder as `encode(texts) -> (N, D) L2-normalised`: a sentence-transformers folder or id (the teacher,
an exported FlipMatch artifact, any ST model), a distill run folder (student + its best LoRA), or the
zero-shot student (`student:<model>[@mean|@lasttoken[:blocks]]`, pooled hidden states, no adapters)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

EncodeFn = Callable[[list[str]], np.ndarray]


def describe(spec: str) -> str:
    """Which kind of encoder a spec names (no model is loaded)."""
    if spec.startswith("student:"):
        return "zero_shot_student"
    path = Path(spec)
    if (path / "config.yaml").exists() and (path / "best_lora.pt").exists():
        return "run"
    return "sentence_transformers"


def load_encoder(spec: str, device: str = "cpu") -> EncodeFn:
    kind = describe(spec)
    if kind == "zero_shot_student":
        from training.config import LoraSection, StudentConfig
        from training.student import load_student

        # student:<model>[@<pooling>[:<blocks kept>]], e.g. student:packaged:smollm2-135m-instruct@mean:15
        model, _, options = spec.removeprefix("student:").partition("@")
        pooling, _, layers = options.partition(":")
        config = StudentConfig(model=model, pooling=pooling or "lasttoken", num_layers=int(layers) if layers else None)
        student = load_student(config, LoraSection(), device)
        student.use_readout = False
        return student.encode
    if kind == "run":
        from training.config import load_config
        from training.runs import RunDir
        from training.student import load_student

        cfg = load_config(Path(spec) / "config.yaml")
        student = load_student(cfg.student, cfg.lora, device)
        RunDir(spec).load_best(student)
        student.eval()
        return student.encode
    from sentence_transformers import SentenceTransformer

    from training.teacher import TeacherScorer

    return TeacherScorer(SentenceTransformer(spec, device=device)).embed
