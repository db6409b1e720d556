"""Score one encoder on the benchmark tasks: dev always (it picks the thresholds), test at those thresholds,
teacher-student agreement when a teacher is given. Shared by `flipmatch eval` and `python -m training.quality`."""

from __future__ import annotations

from training.config import DataConfig
from training.data.pairs import PairSet
from training.evaluate.encoders import load_encoder
from training.evaluate.evaluators import evaluate_agreement, evaluate_split
from training.quality.tasks import TaskLimits, build_tasks


def evaluate_encoder(
    model: str,
    data: DataConfig,
    tasks: list[str],
    split: str = "dev",
    teacher: str | None = None,
    device: str = "cpu",
    limits: TaskLimits | None = None,
) -> dict[str, float]:
    """model / teacher: any spec `training.evaluate.encoders.load_encoder` takes. The test split is scored at
    the thresholds chosen on dev (each pair set's F1-optimal cosine), never at thresholds fitted on test."""
    if split not in ("dev", "test"):
        raise ValueError(f"split must be dev or test, not {split!r}")
    sets = build_tasks(data, limits or TaskLimits(), tasks)
    encode = load_encoder(model, device)
    results = evaluate_split(encode, sets.dev, sets.test, split)
    if teacher is not None:
        encode_teacher = load_encoder(teacher, device)
        agreement = sets.agreement if split == "test" else [s for s in sets.dev if isinstance(s, PairSet)]
        for pairs in agreement:
            results[f"{pairs.name}/spearman_teacher"] = evaluate_agreement(encode, encode_teacher, pairs)["spearman"]
    return results
