"""Student on a tiny random Llama with the real SmolLM2 tokenizer: EOS, pooling under padding, readout."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from training.config import LoraSection, StudentConfig
from training.pooling import last_token_index, pool
from training.student import load_student


@pytest.fixture(scope="module")
def student(tiny_student_dir):
    torch.manual_seed(0)
    return load_student(StudentConfig(model=str(tiny_student_dir)), LoraSection(rank=4, readout_rank=8))


def test_tokenizer_appends_eos_and_has_no_chat_template(student):
    tok = student.tokenizer
    ids = tok(["hello there", "a much longer sentence about cards"])["input_ids"]
    assert all(row[-1] == tok.eos_token_id for row in ids)
    assert tok.chat_template is None


def test_last_token_index_left_and_right_padding():
    right = torch.tensor([[1, 1, 1, 0], [1, 1, 1, 1]])
    left = torch.tensor([[0, 1, 1, 1], [1, 1, 1, 1]])
    assert last_token_index(right).tolist() == [2, 3]
    assert last_token_index(left).tolist() == [3, 3]


def test_mean_pool_ignores_padding():
    hidden = torch.tensor([[[1.0], [3.0], [100.0]]])
    assert pool(hidden, torch.tensor([[1, 1, 0]]), "mean").item() == pytest.approx(2.0)


@pytest.mark.parametrize("side", ["right", "left"])
def test_embeddings_do_not_depend_on_padding(student, side):
    student.tokenizer.padding_side = side
    try:
        texts = ["card", "my card has still not arrived after two weeks, what should I do"]
        together = student.encode(texts)
        alone = np.stack([student.encode([t])[0] for t in texts])
    finally:
        student.tokenizer.padding_side = "right"
    assert together.shape == (2, 8)  # readout rank
    assert (together * alone).sum(axis=1).min() > 0.999


def test_readout_is_lora_a_of_lm_head(student):
    assert student.readout.weight.shape == (8, 64)  # (r, hidden)
    trainable = {n for n, p in student.named_parameters() if p.requires_grad}
    assert any("lm_head.lora_A" in n for n in trainable)
    assert any("q_proj.lora_A" in n for n in trainable)
    assert not any("embed_tokens" in n for n in trainable)


def test_top_layers_limits_block_lora(tiny_student_dir):
    student = load_student(StudentConfig(model=str(tiny_student_dir)), LoraSection(rank=2, top_layers=1))
    names = [n for n, p in student.named_parameters() if p.requires_grad and "q_proj.lora_A" in n]
    assert len(names) == 1 and ".layers.1." in names[0]
    assert any("lm_head.lora_A" in n for n, p in student.named_parameters() if p.requires_grad)


def test_zero_shot_mode_returns_hidden_size(student):
    student.use_readout = False
    try:
        assert student.encode(["hi"]).shape == (1, 64)
    finally:
        student.use_readout = True


def test_embed_batch_dedupes_and_keeps_order(student):
    from training.distill import _embed_batch

    texts = ["where is my card", "a much longer question about a card that never came", "where is my card", "hi"]
    with torch.no_grad():
        batch = _embed_batch(student, texts, "cpu", chunk=2)
        single = torch.cat([student(**student.tokenize([t], "cpu")) for t in texts])
    assert batch.shape == (4, 8)
    assert torch.nn.functional.cosine_similarity(batch, single).min() > 0.999
    assert torch.equal(batch[0], batch[2])


def test_gradient_checkpointing_still_trains_lora(tiny_student_dir):
    student = load_student(
        StudentConfig(model=str(tiny_student_dir), gradient_checkpointing=True), LoraSection(rank=2, readout_rank=4)
    )
    student.train()
    out = student(**student.tokenize(["where is my card", "top up failed"], "cpu"))
    out.pow(2).sum().backward()
    grads = [p.grad for n, p in student.named_parameters() if "q_proj.lora_B" in n]  # A gets 0: B starts at 0
    assert grads and all(g is not None and g.abs().sum() > 0 for g in grads)
