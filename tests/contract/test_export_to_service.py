"""The one contract: what training exports, the service loads and serves with the same vectors."""

from __future__ import annotations

import json

import pytest
import torch

from service.engine.artifact import read_card
from service.engine.encoder import load_encoder
from tests.fixtures.tiny_models import perturb_block_lora
from training.config import LoraSection, StudentConfig
from training.export import export_student
from training.student import load_student

TEXTS = ["card", "How do I activate my new card?", "Is it safe to take ibuprofen while pregnant, or should I wait?"]


@pytest.fixture(scope="module")
def exported(tiny_student_dir, tmp_path_factory):
    torch.manual_seed(2)
    student = load_student(
        StudentConfig(model=str(tiny_student_dir), num_layers=1), LoraSection(rank=4, readout_rank=8)
    )
    perturb_block_lora(student, seed=2)
    out = tmp_path_factory.mktemp("contract") / "artifact"
    export_student(student, out, manifest={"student_id": "tiny", "match_threshold": 0.42}, model_card="# c\n")
    return student, out


def test_service_loads_export_with_same_vectors(exported):
    student, out = exported
    encoder = load_encoder(str(out), device="cpu", dtype="float32")
    assert encoder.probe_cosines().min() >= 0.999  # the service's own load-time check
    served = encoder.encode(encoder.tokenize(TEXTS))
    expected = student.encode(TEXTS)
    assert served.shape == expected.shape == (3, 8)
    assert (served * expected).sum(axis=1).min() >= 0.999


def test_service_reads_the_manifest_the_exporter_wrote(exported):
    _, out = exported
    card = read_card(out)
    manifest = json.loads((out / "flipmatch.json").read_text())
    assert card.match_threshold == pytest.approx(0.42)
    assert manifest["format_version"] == 2
    assert json.loads((out / "config.json").read_text())["num_hidden_layers"] == 1  # truncated readout position
