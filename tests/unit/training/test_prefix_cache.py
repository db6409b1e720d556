"""Frozen-prefix cache: running the adapted blocks from cached states gives the full forward's embeddings and
gradients; the cache key follows the frozen weights, not the adapters."""

from __future__ import annotations

import pytest
import torch

from tests.fixtures.tiny_models import perturb_block_lora
from training.config import LoraSection, StudentConfig
from training.prefix_cache import PrefixCache, base_fingerprint
from training.student import load_student

TEXTS = ["where is my card", "a much longer question about a card that never came to my house", "top up", "hi"]


@pytest.fixture
def student(tiny_student4_dir):
    torch.manual_seed(0)
    model = load_student(
        StudentConfig(model=str(tiny_student4_dir), pooling="mean"), LoraSection(rank=4, readout_rank=8, top_layers=2)
    )
    perturb_block_lora(model)
    model.eval()  # no LoRA dropout: both paths must be comparable exactly
    return model


def _full(student, texts):
    return student(**student.tokenize(texts, "cpu"))


def test_cached_prefix_matches_full_forward_and_its_gradients(student):
    reference = _full(student, TEXTS)
    reference.pow(2).sum().backward()
    expected = {n: p.grad.clone() for n, p in student.named_parameters() if p.grad is not None}
    student.zero_grad(set_to_none=True)

    student.prefix = PrefixCache(student, depth=2, dtype=torch.float32)
    cached = student.forward_texts(TEXTS, "cpu")
    cached.pow(2).sum().backward()
    assert torch.allclose(cached, reference, atol=1e-5)
    got = {n: p.grad for n, p in student.named_parameters() if p.grad is not None}
    assert got.keys() == expected.keys() and any(".layers.3." in n for n in got)
    assert not any(".layers.0." in n or ".layers.1." in n for n in got)  # the prefix has no adapter
    for name, grad in expected.items():
        assert torch.allclose(got[name], grad, atol=1e-5), name


def test_bf16_cache_stays_close_and_fills_each_text_once(student):
    reference = torch.nn.functional.normalize(_full(student, TEXTS), dim=-1)
    student.prefix = PrefixCache(student, depth=2)  # bf16 storage
    assert student.prefix.fill(TEXTS + TEXTS[:2]) == len(TEXTS)
    assert student.prefix.fill(TEXTS) == 0 and len(student.prefix) == len(TEXTS)
    vectors = torch.nn.functional.normalize(student.forward_texts(TEXTS, "cpu"), dim=-1)
    assert (vectors * reference).sum(-1).min() > 0.99


def test_encode_uses_the_cache_and_keeps_order(student):
    plain = student.encode(TEXTS)
    student.prefix = PrefixCache(student, depth=2, dtype=torch.float32)
    assert abs(student.encode(TEXTS) - plain).max() < 1e-5
    assert len(student.prefix) == len(TEXTS)


def test_fingerprint_follows_frozen_weights_not_adapters(student):
    before = base_fingerprint(student.backbone, 2)
    perturb_block_lora(student, seed=7)  # adapters live in blocks 2-3
    assert base_fingerprint(student.backbone, 2) == before
    with torch.no_grad():
        student.backbone.layers[0].mlp.up_proj.weight.add_(1e-3)
    assert base_fingerprint(student.backbone, 2) != before


def test_shared_cache_is_reused_for_the_same_base_and_depth(student):
    first = PrefixCache.shared(student, 2)
    first.fill(TEXTS[:1])
    assert PrefixCache.shared(student, 2) is first
    assert PrefixCache.shared(student, 1) is not first


def test_run_blocks_restores_the_model(student):
    hidden = student.run_blocks(
        0, 2, inputs=student.tokenize(TEXTS, "cpu")["input_ids"], mask=student.tokenize(TEXTS, "cpu")["attention_mask"]
    )
    assert hidden.shape[-1] == 64
    assert student.num_blocks == 4 and student.backbone.config.num_hidden_layers == 4
    assert not isinstance(student.backbone.norm, torch.nn.Identity)
    with pytest.raises(ValueError):
        student.run_blocks(1, 2, inputs=torch.zeros((1, 2), dtype=torch.long), mask=torch.ones((1, 2)))


def test_eval_texts_lists_every_embedded_text_once():
    from training.data.pairs import Pair, PairSet, RetrievalSet, eval_texts
    from training.evaluate.evaluators import NoMatchSet

    sets = [
        PairSet("p", [Pair("a", "b", 1), Pair("a", "c", 0)]),
        RetrievalSet("r", ["faq1", "faq2"], ["x", "y"], ["q1", "b"], ["x", "y"]),
        NoMatchSet("n", ["faq1"], ["in1"], ["out1"]),
    ]
    assert eval_texts(sets) == ["a", "b", "c", "faq1", "faq2", "q1", "in1", "out1"]
