"""The teacher fine-tune is a function of its own seed: random numbers the caller drew before it (the student's
LoRA init, which differs by preset) must not change the teacher, and the caller's stream must not move."""

from __future__ import annotations

import torch

from training.config import TeacherConfig
from training.data.pairs import Pair
from training.teacher import finetune_teacher, load_teacher

TEXTS = ["reset my pin", "change my pin", "card lost", "where is my card", "top up failed", "top up declined",
         "fee on transfer", "why a transfer fee", "refund please", "get my money back"]


def _units() -> list[tuple[Pair, ...]]:
    units = []
    for i in range(0, len(TEXTS), 2):
        negative = TEXTS[(i + 2) % len(TEXTS)]
        units.append((Pair(TEXTS[i], TEXTS[i + 1], 1), Pair(TEXTS[i], negative, 0)))
    return units


def _finetuned(teacher_dir, drawn_before: int) -> dict[str, torch.Tensor]:
    model = load_teacher(str(teacher_dir), "cpu")
    torch.manual_seed(123)
    torch.rand(drawn_before)  # what a larger LoRA init would consume
    finetune_teacher(model, _units(), TeacherConfig(batch_size=2, max_rows=10, lr=1e-3), seed=7)
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def test_teacher_does_not_depend_on_the_callers_rng(tiny_teacher_dir) -> None:
    a = _finetuned(tiny_teacher_dir, drawn_before=1)
    b = _finetuned(tiny_teacher_dir, drawn_before=10_000)
    base = load_teacher(str(tiny_teacher_dir), "cpu").state_dict()
    assert any(not torch.equal(a[k], base[k]) for k in a), "the fine-tune did not change the teacher"
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_teacher_finetune_leaves_the_callers_stream_alone(tiny_teacher_dir) -> None:
    model = load_teacher(str(tiny_teacher_dir), "cpu")
    torch.manual_seed(5)
    expected = torch.rand(4)
    torch.manual_seed(5)
    finetune_teacher(model, _units(), TeacherConfig(batch_size=2, max_rows=10), seed=7)
    assert torch.equal(torch.rand(4), expected)
