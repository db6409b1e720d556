"""Reading an encoder folder: module chains, legacy and current pooling configs, flipmatch.json defaults,
unsupported modules, and the fingerprint."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from service.engine.artifact import fingerprint, read_artifact, read_card
from service.errors import ArtifactError


def write_modules(root: Path, modules: list[dict], pooling: dict | None = None) -> None:
    root.mkdir(parents=True, exist_ok=True)
    (root / "modules.json").write_text(json.dumps(modules))
    if pooling is not None:
        (root / "1_Pooling").mkdir(exist_ok=True)
        (root / "1_Pooling" / "config.json").write_text(json.dumps(pooling))


ST_CHAIN = [{"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
            {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"}]


def test_reads_the_tiny_artifact(tiny_artifact):
    spec = read_artifact(tiny_artifact)
    assert (spec.pooling, spec.normalize, spec.dense, spec.prompt) == ("mean", True, (), "")
    assert spec.card.match_threshold == 0.5 and len(spec.card.probes) == 3
    assert len(spec.fingerprint) == 64


@pytest.mark.parametrize(("pooling", "mode"), [
    ({"word_embedding_dimension": 8, "pooling_mode_cls_token": True, "pooling_mode_mean_tokens": False}, "cls"),
    ({"word_embedding_dimension": 8, "pooling_mode_lasttoken": True}, "lasttoken"),
    ({"word_embedding_dimension": 8}, "mean"),
    ({"embedding_dimension": 8, "pooling_mode": "lasttoken"}, "lasttoken"),
    ({"embedding_dimension": 8, "pooling_mode": ["cls"]}, "cls"),
])
def test_pooling_configs_old_and_new(tmp_path, pooling, mode):
    write_modules(tmp_path, ST_CHAIN, pooling)
    assert read_artifact(tmp_path).pooling == mode


@pytest.mark.parametrize("pooling", [{"pooling_mode": "max"}, {"pooling_mode": ["mean", "cls"]},
                                     {"pooling_mode_mean_tokens": True, "pooling_mode_max_tokens": True}])
def test_unsupported_pooling_fails_loudly(tmp_path, pooling):
    write_modules(tmp_path, ST_CHAIN, pooling)
    with pytest.raises(ArtifactError, match="not supported"):
        read_artifact(tmp_path)


def test_unsupported_module_fails_loudly(tmp_path):
    write_modules(tmp_path, [*ST_CHAIN, {"idx": 2, "path": "2_LSTM", "type": "sentence_transformers.models.LSTM"}],
                  {"pooling_mode": "mean"})
    with pytest.raises(ArtifactError, match="LSTM"):
        read_artifact(tmp_path)


def test_dense_with_another_activation_fails_loudly(tmp_path):
    write_modules(tmp_path, [*ST_CHAIN, {"idx": 2, "path": "2_Dense", "type": "sentence_transformers.models.Dense"}],
                  {"pooling_mode": "mean"})
    (tmp_path / "2_Dense").mkdir()
    config = {"in_features": 8, "out_features": 4, "bias": False,
              "activation_function": "torch.nn.modules.activation.ReLU"}
    (tmp_path / "2_Dense" / "config.json").write_text(json.dumps(config))
    with pytest.raises(ArtifactError, match="ReLU"):
        read_artifact(tmp_path)


def test_a_plain_transformers_folder_means_mean_pooling_without_normalize(tmp_path):
    tmp_path.joinpath("config.json").write_text("{}")
    spec = read_artifact(tmp_path)
    assert (spec.pooling, spec.normalize) == ("mean", False)


def test_missing_flipmatch_json_uses_documented_defaults(tmp_path, caplog):
    card = read_card(tmp_path)
    assert (card.match_threshold, card.probes, card.student_id) == (0.5, (), "unknown")
    (tmp_path / "flipmatch.json").write_text(json.dumps({"format_version": 1, "match_threshold": 0.8}))
    with caplog.at_level("INFO"):
        card = read_card(tmp_path)
    assert card.match_threshold == 0.8
    assert "probes missing" in caplog.text  # every filled default is logged


def test_malformed_flipmatch_json_fails_loudly(tmp_path):
    (tmp_path / "flipmatch.json").write_text(json.dumps({"format_version": 1, "probes": [{"text": "x"}]}))
    with pytest.raises(ArtifactError, match="malformed"):
        read_card(tmp_path)


def test_fingerprint_tracks_weights_but_not_the_model_card(tiny_artifact, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(tiny_artifact, copy)
    assert fingerprint(copy) == fingerprint(tiny_artifact)
    (copy / "README.md").write_text("edited card")
    card = json.loads((copy / "flipmatch.json").read_text())
    card["match_threshold"] = 0.9
    (copy / "flipmatch.json").write_text(json.dumps(card))
    assert fingerprint(copy) == fingerprint(tiny_artifact)
    weights = copy / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF  # one flipped byte in the weights
    weights.write_bytes(bytes(data))
    assert fingerprint(copy) != fingerprint(tiny_artifact)


def test_a_missing_local_folder_is_not_looked_up_on_the_hub(tmp_path, monkeypatch):
    from service.engine.artifact import resolve_model_path

    def no_hub(*args, **kwargs):
        raise AssertionError("the hub was asked")

    monkeypatch.setattr("huggingface_hub.snapshot_download", no_hub)
    for path in (str(tmp_path / "missing"), "./artifacts/nothing-here", "~/nothing-here"):
        with pytest.raises(ArtifactError, match="does not exist"):
            resolve_model_path(path)
