"""The encoder's own pipeline equals SentenceTransformer.encode (cosine >= 0.999) for every supported module
chain, truncation is reported, and a probe mismatch fails the load."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from service.engine.encoder import load_encoder
from service.errors import ArtifactError

TEXTS = ["How do I reset my card PIN?", "a", "What are the symptoms of iron deficiency anemia in adults?",
         "Ünïcödé, emoji 🙂 and punctuation!?", "  leading and trailing spaces  ", "short " * 20]

VARIANTS = {
    "bert-mean": {},
    "bert-cls": {"pooling": "cls"},
    "bert-lasttoken-right": {"pooling": "lasttoken"},
    "bert-lasttoken-left": {"pooling": "lasttoken", "padding_side": "left"},
    "bert-mean-left": {"padding_side": "left"},
    "bert-dense-no-normalize": {"dense": 8, "normalize": False},
    "llama-lasttoken-left-dense": {"arch": "llama", "pooling": "lasttoken", "padding_side": "left", "dense": 16},
}


def cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


@pytest.mark.parametrize("variant", VARIANTS)
def test_matches_sentence_transformers(build_tiny_encoder, variant):
    from sentence_transformers import SentenceTransformer

    path = build_tiny_encoder(**VARIANTS[variant])
    encoder = load_encoder(str(path), device="cpu", dtype="float32")
    # One batch holding texts of different lengths, so padding (left or right) is exercised.
    ours = encoder.encode(encoder.tokenize(TEXTS))
    reference = SentenceTransformer(str(path), device="cpu").encode(TEXTS, convert_to_numpy=True)
    assert ours.shape == reference.shape and ours.dtype == np.float32
    assert cosine(ours, reference).min() >= 0.999
    if "no-normalize" in variant:
        np.testing.assert_allclose(np.linalg.norm(ours, axis=1), np.linalg.norm(reference, axis=1), rtol=1e-3)


def test_info_describes_the_model(tiny_artifact):
    info = load_encoder(str(tiny_artifact), device="cpu", dtype="float32").info
    assert (info.dimension, info.device, info.dtype, info.max_seq_length, info.match_threshold) == (
        32, "cpu", "float32", 64, 0.5)


def test_truncation_is_flagged_only_when_tokens_were_cut(tiny_artifact):
    encoder = load_encoder(str(tiny_artifact), device="cpu")
    short, long = encoder.tokenize(["a short text", "word " * 200])
    assert not short.truncated
    assert long.truncated and long.n_tokens == 64


def test_a_probe_mismatch_fails_the_load(tiny_artifact, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(tiny_artifact, broken)
    card = json.loads((broken / "flipmatch.json").read_text())
    card["probes"][0]["vector"] = [-v for v in card["probes"][0]["vector"]]
    (broken / "flipmatch.json").write_text(json.dumps(card))
    with pytest.raises(ArtifactError, match="probes do not match"):
        load_encoder(str(broken), device="cpu")


def test_an_unknown_model_fails_with_an_actionable_message(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ArtifactError, match="FLIPMATCH_MODEL_PATH"):
        load_encoder(str(tmp_path / "no-such-model"), device="cpu")


def test_bfloat16_on_cpu_keeps_parity(tiny_artifact):
    from sentence_transformers import SentenceTransformer

    encoder = load_encoder(str(tiny_artifact), device="cpu", dtype="bfloat16")
    assert encoder.info.dtype == "bfloat16"
    ours = encoder.encode(encoder.tokenize(TEXTS))
    reference = SentenceTransformer(str(tiny_artifact), device="cpu").encode(TEXTS, convert_to_numpy=True)
    assert cosine(ours, reference).min() >= 0.999


def test_auto_falls_back_to_float32_when_half_precision_misses_the_probes(tiny_artifact, monkeypatch, caplog):
    from service.engine import encoder as encoder_module

    monkeypatch.setattr(encoder_module, "cpu_has_fast_bf16", lambda: True)
    real = encoder_module.Encoder.probe_cosines

    def pretend_bf16_drifts(self):
        return real(self) if self.dtype == "float32" else np.array([0.99], np.float32)

    monkeypatch.setattr(encoder_module.Encoder, "probe_cosines", pretend_bf16_drifts)
    with caplog.at_level("WARNING"):
        encoder = load_encoder(str(tiny_artifact), device="cpu", dtype="auto")
    assert encoder.info.dtype == "float32"
    assert "probe parity failed dtype=bfloat16" in caplog.text


def test_auto_without_probes_stays_float32_on_cpu(tiny_artifact, tmp_path, monkeypatch):
    from service.engine import encoder as encoder_module

    monkeypatch.setattr(encoder_module, "cpu_has_fast_bf16", lambda: True)
    plain = tmp_path / "plain"
    shutil.copytree(tiny_artifact, plain)
    (plain / "flipmatch.json").unlink()
    assert load_encoder(str(plain), device="cpu", dtype="auto").info.dtype == "float32"
