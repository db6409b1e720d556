"""Export on a tiny trained-looking student: a plain SentenceTransformer folder that reproduces it."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from tests.fixtures.tiny_models import perturb_block_lora
from training.config import LoraSection, StudentConfig
from training.export import PROBE_TEXTS, ParityError, check_parity, export_student
from training.student import load_student


@pytest.fixture(scope="module")
def exported(tiny_student_dir, tmp_path_factory):
    torch.manual_seed(1)
    student = load_student(StudentConfig(model=str(tiny_student_dir)), LoraSection(rank=4, readout_rank=8))
    perturb_block_lora(student, seed=1)
    out = tmp_path_factory.mktemp("export") / "artifact"
    export_student(student, out, manifest={"student_id": "tiny", "match_threshold": 0.7}, model_card="# card\n")
    return student, out


def test_layout_and_manifest(exported):
    _, out = exported
    modules = json.loads((out / "modules.json").read_text())
    assert [m["type"].rsplit(".", 1)[-1] for m in modules] == ["Transformer", "Pooling", "Dense", "Normalize"]
    assert not list(out.glob("adapter_*")) and not (out / "chat_template.jinja").exists()
    manifest = json.loads((out / "flipmatch.json").read_text())
    assert manifest["format_version"] == 2 and manifest["embedding_dim"] == 8 and "match_head" not in manifest
    assert len(manifest["probes"]) == len(PROBE_TEXTS)
    assert json.loads((out / "tokenizer_config.json").read_text()).get("chat_template") is None


def test_plain_sentence_transformers_reproduces_student(exported):
    from sentence_transformers import SentenceTransformer

    student, out = exported
    texts = ["hello", "a longer text about a card that never arrived in the post"]
    plain = SentenceTransformer(str(out), device="cpu").encode(texts, normalize_embeddings=True)
    assert (plain * student.encode(texts)).sum(axis=1).min() >= 0.999


def test_parity_check_fails_loudly(exported):
    _, out = exported
    wrong = np.roll(np.eye(len(PROBE_TEXTS), 8, dtype=np.float32), 1, axis=1)
    with pytest.raises(ParityError, match="cosine"):
        check_parity(out, PROBE_TEXTS, wrong)


def test_model_card_carries_the_students_license():
    from training.export import model_card

    def card(student: str) -> str:
        return model_card(student_id=student, teacher_id="t", metrics={}, threshold=0.5, config={})

    gemma = card("packaged:gemma3-270m")
    assert gemma.startswith("---\nlicense: gemma\n") and "Gemma Terms of Use" in gemma
    smol = card("packaged:smollm2-135m-instruct")
    assert "license:" not in smol.split("---")[1] and "under the license of `packaged:smollm2-135m-instruct`" in smol
