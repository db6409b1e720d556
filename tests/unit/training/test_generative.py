"""The decoder reading: a yes/no match label loss through the LM head's LoRA B, and its export as an optional
part of the artifact that reproduces the training-time probabilities."""

from __future__ import annotations

import json

import pytest
import torch

from tests.fixtures.tiny_models import perturb_block_lora
from training.config import LoraSection, StudentConfig
from training.data.pairs import UNLABELLED, Pair
from training.export import ParityError, check_head_parity, export_student
from training.generative import (
    PROBE_PAIRS,
    answer_token_ids,
    generative_loss,
    match_probabilities,
    match_prompts,
    reload_probabilities,
)
from training.student import load_student

PAIRS = [Pair("where is my card", "card has not arrived", 1), Pair("where is my card", "rate for euros", 0)]


def _student(tiny_student_dir, seed: int = 4):
    torch.manual_seed(seed)
    student = load_student(
        StudentConfig(model=str(tiny_student_dir), max_seq_length=16), LoraSection(rank=4, readout_rank=8)
    )
    perturb_block_lora(student, seed=seed)
    with torch.no_grad():  # B starts at zero: give the decoder half values so the head depends on it
        student.model.base_model.model.lm_head.lora_B["default"].weight.normal_(0, 0.05)
    return student


def test_prompts_cut_each_text_and_keep_the_question(tiny_student_dir):
    student = _student(tiny_student_dir)
    long = "word " * 200
    (prompt,) = match_prompts(student.tokenizer, [(long, long)], part_tokens=8)
    assert prompt.endswith("Answer yes or no:") and len(student.tokenizer(prompt)["input_ids"]) < 60
    assert len(set(answer_token_ids(student.tokenizer))) == 2


def test_label_loss_trains_lora_b_and_skips_unlabelled_pairs(tiny_student_dir):
    student = _student(tiny_student_dir)
    loss = generative_loss(student, PAIRS, "cpu")
    loss.backward()
    lm = student.model.base_model.model.lm_head
    assert lm.lora_B["default"].weight.grad.abs().sum() > 0  # the decoder half learns
    assert lm.lora_A["default"].weight.grad.abs().sum() > 0  # and so does the shared readout
    assert generative_loss(student, [Pair("a", "b", UNLABELLED)], "cpu") is None
    # a few steps on the label loss alone move the probabilities toward the labels
    params = [p for p in student.parameters() if p.requires_grad]
    optim = torch.optim.AdamW(params, lr=5e-3)
    before = match_probabilities(student, [(p.text_a, p.text_b) for p in PAIRS])
    for _ in range(15):
        optim.zero_grad()
        generative_loss(student, PAIRS, "cpu").backward()
        optim.step()
    after = match_probabilities(student, [(p.text_a, p.text_b) for p in PAIRS])
    assert after[0] > before[0] and after[1] < before[1]


def test_label_loss_limit_takes_the_first_labelled_pairs(tiny_student_dir):
    student = _student(tiny_student_dir)
    student.eval()
    first = match_probabilities(student, [(PAIRS[0].text_a, PAIRS[0].text_b)])[0]
    with torch.no_grad():
        limited = generative_loss(student, [Pair("a", "b", UNLABELLED), *PAIRS], "cpu", limit=1)
    # BCE of the first labelled pair (label 1) alone: -log p(yes)
    assert limited.item() == pytest.approx(-torch.log(torch.tensor(first)).item(), rel=1e-4)
    with torch.no_grad():
        assert generative_loss(student, PAIRS, "cpu", limit=None).item() != pytest.approx(limited.item())


@pytest.fixture(scope="module")
def exported_with_head(tiny_student_dir, tmp_path_factory):
    student = _student(tiny_student_dir, seed=5)
    out = tmp_path_factory.mktemp("gen_export") / "artifact"
    export_student(student, out, manifest={"student_id": "tiny"}, model_card="# c\n", match_head=True)
    return student, out


def test_export_load_gives_the_same_probabilities(exported_with_head):
    student, out = exported_with_head
    manifest = json.loads((out / "flipmatch.json").read_text())
    entry = manifest["match_head"]
    assert manifest["format_version"] == 2 and (out / entry["path"]).exists()
    expected = match_probabilities(student, PROBE_PAIRS)
    assert [p["probability"] for p in entry["probes"]] == pytest.approx(expected, abs=1e-6)
    assert reload_probabilities(out, entry) == pytest.approx(expected, abs=1e-4)
    assert max(expected) - min(expected) > 1e-3  # the probes tell pairs apart: the check can fail


def test_plain_sentence_transformers_reading_is_unchanged(exported_with_head):
    from sentence_transformers import SentenceTransformer

    student, out = exported_with_head
    modules = json.loads((out / "modules.json").read_text())
    assert [m["type"].rsplit(".", 1)[-1] for m in modules] == ["Transformer", "Pooling", "Dense", "Normalize"]
    texts = ["hello", "a card that never arrived"]
    plain = SentenceTransformer(str(out), device="cpu").encode(texts, normalize_embeddings=True)
    assert (plain * student.encode(texts)).sum(axis=1).min() >= 0.999


def test_head_parity_check_fails_loudly(exported_with_head):
    _, out = exported_with_head
    entry = json.loads((out / "flipmatch.json").read_text())["match_head"]
    wrong = {**entry, "probes": [{**p, "probability": 1 - p["probability"]} for p in entry["probes"]]}
    with pytest.raises(ParityError, match="match head"):
        check_head_parity(out, wrong)
