"""The Gemma-3 student on small random Gemma3 models with the real Gemma-3 tokenizer: BOS/EOS, sliding-window
attention through the prefix cache and block truncation, padding, and export parity."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from tests.fixtures.tiny_models import GEMMA_LAYER_TYPES, build_tiny_gemma, perturb_block_lora
from training.config import LoraSection, StudentConfig
from training.export import PROBE_TEXTS, export_student
from training.prefix_cache import PrefixCache
from training.student import load_student

# Every text is longer than the 4-token window, so the sliding blocks really mask.
TEXTS = ["where is my card now", "a much longer question about a card that never came to my house at all",
         "top up my account please", "how do I change my PIN number at an ATM"]


@pytest.fixture(scope="module")
def tiny_gemma2_dir(tmp_path_factory):
    """2 blocks (sliding, full): the size the export parity check runs on."""
    return build_tiny_gemma(tmp_path_factory.mktemp("tiny_gemma2"), num_layers=2)


def _student(path, pooling="mean", **student):
    torch.manual_seed(0)
    model = load_student(StudentConfig(model=str(path), pooling=pooling, **student),
                         LoraSection(rank=4, readout_rank=8, top_layers=2))
    perturb_block_lora(model)
    model.eval()  # no LoRA dropout: paths must be comparable exactly
    return model


@pytest.fixture(scope="module")
def gemma_students(tiny_gemma_dir):
    """One student per pooling on the 4-block model, shared by the tests below (each load reads the 262k-token
    tokenizer, ~3 s). A test that changes one (padding side, prefix cache, gradients) puts it back."""
    return {pooling: _student(tiny_gemma_dir, pooling) for pooling in ("mean", "lasttoken")}


def test_gemma_tokenizer_keeps_bos_and_appends_eos(gemma_students):
    student = gemma_students["mean"]
    tok = student.tokenizer
    ids = tok(TEXTS[:2], padding=True)["input_ids"]
    assert (tok.bos_token, tok.eos_token, tok.pad_token) == ("<bos>", "<eos>", "<pad>")
    assert all(row[0] == tok.bos_token_id for row in ids)  # Gemma is trained with BOS first
    assert ids[0][len(tok(TEXTS[0])["input_ids"]) - 1] == tok.eos_token_id and ids[1][-1] == tok.eos_token_id
    assert tok.padding_side == "right" and tok.pad_token_id not in (tok.eos_token_id, tok.bos_token_id)


def test_truncation_keeps_the_attention_pattern(tiny_gemma_dir):
    student = _student(tiny_gemma_dir, num_layers=3)
    config = student.backbone.config
    assert config.num_hidden_layers == 3 and list(config.layer_types) == list(GEMMA_LAYER_TYPES[:3])
    assert [layer.self_attn.is_sliding for layer in student.backbone.layers] == [True, False, True]


def test_sliding_window_changes_the_embedding(gemma_students, tmp_path):
    """The window is live on these texts: the same weights with a window wider than the texts embed differently,
    so the prefix-cache check below exercises Gemma's sliding masks."""
    wide = build_tiny_gemma(tmp_path / "wide", sliding_window=256)
    narrow_vecs, wide_vecs = gemma_students["mean"].encode(TEXTS), _student(wide).encode(TEXTS)
    assert (narrow_vecs * wide_vecs).sum(axis=1).min() < 0.9999


@pytest.mark.parametrize("pooling", ["mean", "lasttoken"])
def test_cached_prefix_matches_full_forward_and_gradients(gemma_students, pooling):
    student = gemma_students[pooling]
    reference = student(**student.tokenize(TEXTS, "cpu"))
    reference.pow(2).sum().backward()
    expected = {n: p.grad.clone() for n, p in student.named_parameters() if p.grad is not None}
    student.zero_grad(set_to_none=True)

    student.prefix = PrefixCache(student, depth=2, dtype=torch.float32)  # blocks 0-1 cached, 2-3 run
    try:
        cached = student.forward_texts(TEXTS, "cpu")
        cached.pow(2).sum().backward()
        got = {n: p.grad.clone() for n, p in student.named_parameters() if p.grad is not None}
    finally:
        student.prefix = None
        student.zero_grad(set_to_none=True)
    assert torch.allclose(cached, reference, atol=1e-5)
    assert got.keys() == expected.keys() and any(".layers.3." in n for n in got)
    for name, grad in expected.items():
        assert torch.allclose(got[name], grad, atol=1e-5), name


# Two of the four (side, pooling) pairs: each side and each pooling once (the Llama student runs all four).
@pytest.mark.parametrize(("side", "pooling"), [("right", "mean"), ("left", "lasttoken")])
def test_embeddings_do_not_depend_on_padding(gemma_students, side, pooling):
    student = gemma_students[pooling]
    default_side, student.tokenizer.padding_side = student.tokenizer.padding_side, side
    texts = ["card", *TEXTS[1:3]]
    try:
        together = student.encode(texts)
        alone = np.stack([student.encode([t])[0] for t in texts])
    finally:
        student.tokenizer.padding_side = default_side
    assert (together * alone).sum(axis=1).min() > 0.999


@pytest.fixture(scope="module")
def gemma_export(tiny_gemma2_dir, tmp_path_factory):
    """One export (last-token pooling; mean is covered on the Llama student) shared by the checks below: the
    tiny Gemma still carries the real 262k-token embedding table, so each export writes tens of MB."""
    student = _student(tiny_gemma2_dir, "lasttoken")
    out = tmp_path_factory.mktemp("gemma_export") / "artifact"
    export_student(student, out, manifest={"student_id": "tiny-gemma"}, model_card="# c\n")  # raises below 0.999
    return student, out


def test_export_parity_with_merged_lora(gemma_export):
    from sentence_transformers import SentenceTransformer

    student, out = gemma_export
    config = json.loads((out / "config.json").read_text())
    assert config["model_type"] == "gemma3_text" and config["layer_types"] == list(GEMMA_LAYER_TYPES[:2])
    plain = SentenceTransformer(str(out), device="cpu")
    assert (plain.encode(PROBE_TEXTS, normalize_embeddings=True) * student.encode(PROBE_TEXTS)).sum(1).min() >= 0.999
    # the merge really moved the blocks: without the LoRA deltas the export would not reproduce the student
    features = student.tokenize(PROBE_TEXTS, "cpu")
    with student.model.disable_adapter():
        bare = student.backbone(**features).last_hidden_state
    assert not torch.allclose(plain[0].auto_model(**features).last_hidden_state, bare, atol=1e-4)


def test_service_serves_the_gemma_export(gemma_export):
    """The service's own loader (left padding for causal models, its own pooling) reproduces the student."""
    from service.engine.encoder import load_encoder

    student, out = gemma_export
    encoder = load_encoder(str(out), device="cpu", dtype="float32")  # raises unless the probes match
    texts = ["card", TEXTS[1]]
    served = encoder.encode(encoder.tokenize(texts))  # one padded batch
    assert (served * student.encode(texts)).sum(axis=1).min() >= 0.999
