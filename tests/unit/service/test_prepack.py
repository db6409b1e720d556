"""Prepacked linear layers (engine/prepack.py) compute what nn.Linear computes, the encoder keeps them only where
its load-time check passes, and FLIPMATCH_CPU_PREPACK=false keeps the eager layers."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from service.engine import encoder as encoder_module
from service.engine.encoder import load_encoder
from service.engine.prepack import PrepackedLinear, prepack_linears, restore

TEXTS = ["How do I reset my card PIN?", "a", "What are the symptoms of iron deficiency anemia in adults?"]


def linears(model: nn.Module) -> tuple[int, int]:
    """(eager nn.Linear count, PrepackedLinear count)."""
    kinds = [type(m) for m in model.modules()]
    return kinds.count(nn.Linear), kinds.count(PrepackedLinear)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_prepacked_linears_compute_what_eager_ones_do(dtype):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(24, 40), nn.GELU(), nn.Sequential(nn.Linear(40, 8, bias=False))).to(dtype)
    originals = [m for m in model.modules() if type(m) is nn.Linear]
    for rows in ((1, 24), (3, 7, 24)):  # 2-D and batched 3-D inputs, as the encoder's passes have
        x = torch.randn(*rows, dtype=dtype)
        with torch.inference_mode():
            eager = model(x)
            swapped = prepack_linears(model)
            assert linears(model) == (0, 2) and [s[2] for s in swapped] == originals
            packed = model(x)
        assert packed.shape == eager.shape and packed.dtype == dtype
        torch.testing.assert_close(packed.float(), eager.float(), rtol=2e-2 if dtype == torch.bfloat16 else 1e-5,
                                   atol=2e-2 if dtype == torch.bfloat16 else 1e-5)
        restore(swapped)
        assert [m for m in model.modules() if type(m) is nn.Linear] == originals


def test_half_precision_layers_the_packer_does_not_take_stay_eager():
    model = nn.Sequential(nn.Linear(8, 8).half(), nn.Linear(8, 8))
    assert [type(m) for m in model] == [nn.Linear, nn.Linear]
    prepack_linears(model)
    assert [type(m) for m in model] == [nn.Linear, PrepackedLinear]


def test_the_encoder_prepacks_and_keeps_its_vectors(tiny_artifact):
    packed = load_encoder(str(tiny_artifact), device="cpu", dtype="float32", cpu_threads=1)
    eager = load_encoder(str(tiny_artifact), device="cpu", dtype="float32", cpu_threads=1, prepack=False)
    assert packed.prepacked and packed.info.prepacked and linears(packed.model)[1] > 0
    assert not eager.prepacked and not eager.info.prepacked and linears(eager.model)[1] == 0
    np.testing.assert_allclose(packed.encode(packed.tokenize(TEXTS)), eager.encode(eager.tokenize(TEXTS)),
                               atol=1e-5)


def test_prepacked_layers_that_change_the_vectors_are_put_back(tiny_artifact, monkeypatch):
    real_forward = PrepackedLinear.forward
    monkeypatch.setattr(PrepackedLinear, "forward", lambda self, x: real_forward(self, x) * 1.5 + 0.3)
    encoder = load_encoder(str(tiny_artifact), device="cpu", dtype="float32", cpu_threads=1)
    assert not encoder.prepacked and not encoder.info.prepacked
    assert linears(encoder.model)[1] == 0 and linears(encoder.model)[0] > 0


def test_a_cpu_that_cannot_prepack_serves_eager_layers(tiny_artifact, monkeypatch):
    def refuse(model):
        raise RuntimeError("no oneDNN for this dtype")

    monkeypatch.setattr(encoder_module, "prepack_linears", refuse)
    encoder = load_encoder(str(tiny_artifact), device="cpu", dtype="float32", cpu_threads=1)
    assert not encoder.prepacked and linears(encoder.model)[1] == 0
    assert encoder.encode(encoder.tokenize(TEXTS)).shape[0] == len(TEXTS)
