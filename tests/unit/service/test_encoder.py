"""The encoder's own pipeline equals SentenceTransformer.encode (cosine >= 0.999) for every supported module
chain, truncation is reported, and a probe mismatch fails the load."""

from __future__ import annotations

import json
import os
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
    "llama-mean": {"arch": "llama"},
    "gemma-mean-sliding-window": {"arch": "gemma"},
    "gemma-cls": {"arch": "gemma", "pooling": "cls"},
}


def cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


@pytest.mark.parametrize("variant", VARIANTS)
def test_matches_sentence_transformers(build_tiny_encoder, variant):
    from sentence_transformers import SentenceTransformer

    path = build_tiny_encoder(**VARIANTS[variant])
    encoder = load_encoder(str(path), device="cpu", dtype="float32")
    # transformers 5 keeps packed texts apart in all of these. Left-padded BERT fails the load-time check: its
    # absolute positions start at the padding, so its padded vectors are not those of the text alone.
    assert encoder.packed == (variant not in ("bert-lasttoken-left", "bert-mean-left"))
    assert encoder.prepacked  # so the comparison below runs oneDNN's prepacked linears (engine/prepack.py)
    # One batch holding texts of different lengths: packed (the default here), and padded (left or right).
    reference = SentenceTransformer(str(path), device="cpu").encode(TEXTS, convert_to_numpy=True)
    for packed in sorted({encoder.packed, False}):  # the served layout, and padded
        ours = encoder.encode(encoder.tokenize(TEXTS), packed=packed)
        assert ours.shape == reference.shape and ours.dtype == np.float32
        assert cosine(ours, reference).min() >= 0.999, f"packed={packed}"
    if "no-normalize" in variant:
        np.testing.assert_allclose(np.linalg.norm(ours, axis=1), np.linalg.norm(reference, axis=1), rtol=1e-3)


def test_a_text_in_a_packed_pass_does_not_see_its_neighbours(build_tiny_encoder):
    encoder = load_encoder(str(build_tiny_encoder(arch="gemma")), device="cpu", dtype="float32")
    alone, after_short, after_long = (
        encoder.encode(encoder.tokenize([*before, TEXTS[2]]), packed=True)[-1]
        for before in ([], [TEXTS[1]], [TEXTS[5]]))
    np.testing.assert_allclose(after_short, alone, atol=1e-5)
    np.testing.assert_allclose(after_long, alone, atol=1e-5)


def test_a_model_that_mixes_packed_texts_keeps_padded_passes(build_tiny_encoder, monkeypatch):
    """Without the position restarts transformers cannot tell the packed texts apart: attention crosses them, the
    load-time check sees different vectors, and the encoder serves padded passes (still the right vectors)."""
    from service.engine.encoder import Encoder

    original = Encoder._pack

    def no_restarts(self, batch):
        features = original(self, batch)
        del features["position_ids"]
        return features

    monkeypatch.setattr(Encoder, "_pack", no_restarts)
    path = build_tiny_encoder(arch="llama")
    encoder = load_encoder(str(path), device="cpu", dtype="float32")
    assert not encoder.packed and not encoder.info.packed
    assert encoder.pass_shape(encoder.tokenize(TEXTS[:2])) == (2, max(t.n_tokens for t in encoder.tokenize(TEXTS[:2])))
    assert load_encoder(str(path), device="cpu", dtype="float32", packing=False).packed is False


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


def test_auto_keeps_float32_when_half_precision_misses_the_probes(tiny_artifact, monkeypatch):
    from service.engine import encoder as encoder_module

    real = encoder_module.Encoder.encode

    def pretend_bf16_drifts(self, batch, **kwargs):
        out = real(self, batch, **kwargs)
        return out if self.dtype == "float32" else out + np.float32(0.5)

    monkeypatch.setattr(encoder_module.Encoder, "encode", pretend_bf16_drifts)
    encoder = load_encoder(str(tiny_artifact), device="cpu", dtype="auto", cpu_threads=None, calibration_rounds=1)
    info = encoder.info
    assert info.dtype == "float32"
    assert "failed parity: bfloat16" in info.reason
    bf16 = [row for row in info.calibration if row.dtype == "bfloat16"]
    assert bf16 and not any(row.passed for row in bf16) and all(row.ms == () for row in bf16)


def test_calibration_records_its_measured_choice(tiny_artifact):
    info = load_encoder(str(tiny_artifact), device="cpu", dtype="auto", cpu_threads=None,
                        calibration_rounds=1).info
    assert info.selection == "dtype measured, threads measured"
    assert info.threads in {1, os.cpu_count()}
    timed = {(row.dtype, row.threads) for row in info.calibration}
    assert ("float32", 1) in timed and ("bfloat16", 1) in timed
    chosen = next(r for r in info.calibration if (r.dtype, r.threads) == (info.dtype, info.threads))
    assert chosen.passed and len(chosen.ms) == 2
    assert info.reason.startswith(f"measured: {info.dtype}/{info.threads}t")


def test_explicit_settings_are_used_as_given(tiny_artifact):
    info = load_encoder(str(tiny_artifact), device="cpu", dtype="float32", cpu_threads=1).info
    assert (info.dtype, info.threads, info.selection) == ("float32", 1, "dtype requested, threads requested")
    assert [(r.dtype, r.threads) for r in info.calibration] == [("float32", 1)]


def test_auto_without_probes_checks_parity_against_the_float32_forward(tiny_artifact, tmp_path):
    plain = tmp_path / "plain"
    shutil.copytree(tiny_artifact, plain)
    (plain / "flipmatch.json").unlink()
    info = load_encoder(str(plain), device="cpu", dtype="auto", calibration_rounds=1).info
    fp32 = next(r for r in info.calibration if r.dtype == "float32")
    assert fp32.min_cosine == pytest.approx(1.0, abs=1e-6)
    assert info.dtype in ("float32", "bfloat16")


def test_int8_is_served_only_when_it_keeps_parity(tiny_artifact):
    encoder = load_encoder(str(tiny_artifact), device="cpu", dtype="int8", cpu_threads=1, calibration_rounds=1)
    int8 = next(r for r in encoder.info.calibration if r.dtype == "int8")
    assert int8.passed == (int8.min_cosine >= 0.99)
    if encoder.info.dtype == "int8":
        assert int8.passed
    ours = encoder.encode(encoder.tokenize(TEXTS))
    exact = load_encoder(str(tiny_artifact), device="cpu", dtype="float32").encode(encoder.tokenize(TEXTS))
    assert cosine(ours, exact).min() >= 0.99


def test_passes_on_two_threads_at_once_give_the_sequential_vectors(build_tiny_encoder):
    """Forward workers share one model: concurrent passes must not disturb each other."""
    from concurrent.futures import ThreadPoolExecutor

    encoder = load_encoder(str(build_tiny_encoder(arch="gemma")), device="cpu", dtype="float32")
    batches = [encoder.tokenize(TEXTS[i % len(TEXTS):] + TEXTS[: i % len(TEXTS)]) for i in range(24)]
    expected = [encoder.encode(b) for b in batches]
    with ThreadPoolExecutor(2) as pool:
        got = list(pool.map(encoder.encode, batches))
    for e, g in zip(expected, got, strict=True):
        np.testing.assert_allclose(g, e, atol=1e-5)


def test_requested_forward_workers_are_the_layout_the_calibration_times(tiny_artifact):
    encoder = load_encoder(str(tiny_artifact), device="cpu", dtype="float32", cpu_threads=1, forward_workers=1)
    info = encoder.info
    assert info.forward_workers == 1 and [row.workers for row in info.calibration] == [1]
    assert info.selection == "dtype requested, threads requested, workers requested"


def test_the_calibration_loads_the_tokenizer_once(tiny_artifact, monkeypatch):
    """Each candidate dtype gets its own model but shares one tokenizer (Gemma's took ~3 s to load)."""
    from service.engine import encoder as encoder_module

    real = encoder_module.AutoTokenizer.from_pretrained
    calls = []

    def counting(*args, **kwargs):
        calls.append(args)
        return real(*args, **kwargs)

    monkeypatch.setattr(encoder_module.AutoTokenizer, "from_pretrained", counting)
    info = load_encoder(str(tiny_artifact), device="cpu", dtype="auto", cpu_threads=1, calibration_rounds=1).info
    assert {row.dtype for row in info.calibration} >= {"float32", "bfloat16"}  # two encoders were built
    assert len(calls) == 1
    assert 0 < info.calibration_seconds
