"""The teacher: a small sentence-transformers encoder. Fine-tune it on the domain's pairs, then score
student batches online from raw text with its own tokenizer (no grad), optionally caching vectors on disk."""

from __future__ import annotations

import hashlib
import logging
import random
from pathlib import Path

import numpy as np
import torch
from sentence_transformers import SentenceTransformer

from training.assets import resolve_teacher
from training.config import TeacherConfig
from training.data.pairs import Pair

logger = logging.getLogger(__name__)


def load_teacher(name: str, device: str = "cpu", max_seq_length: int | None = None) -> SentenceTransformer:
    model = SentenceTransformer(resolve_teacher(name), device=device)
    if max_seq_length:
        model.max_seq_length = max_seq_length
    return model


def _triplets(units: list[tuple[Pair, ...]]) -> list[list[str]]:
    """(anchor, positive[, hard negative]) per unit that has a positive."""
    rows = []
    for unit in units:
        pos = [p.text_b for p in unit if p.label == 1]
        neg = [p.text_b for p in unit if p.label == 0]
        if pos:
            rows.append([unit[0].text_a, pos[0]] + neg[:1])
    return rows


def finetune_teacher(
    model: SentenceTransformer, units: list[tuple[Pair, ...]], cfg: TeacherConfig, seed: int, bf16: bool = False
) -> None:
    """MultipleNegativesRankingLoss with the mined hard negative: fits anchor/positive/hard-negative data.

    The fine-tune draws its dropout masks from its own torch stream seeded by `seed`, so the teacher does not
    depend on how many random numbers the caller drew first (the student's LoRA init differs by preset)."""
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        _finetune(model, units, cfg, seed, bf16)


def _finetune(
    model: SentenceTransformer, units: list[tuple[Pair, ...]], cfg: TeacherConfig, seed: int, bf16: bool
) -> None:
    from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss

    rng = random.Random(seed)
    rows = _triplets(units)
    rng.shuffle(rows)
    rows = rows[: cfg.max_rows]
    loss_fn = MultipleNegativesRankingLoss(model)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr)
    steps = cfg.epochs * max(1, len(rows) // cfg.batch_size)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: min(1.0, (s + 1) / max(1, steps // 10)))
    model.train()
    step = 0
    for _ in range(cfg.epochs):
        rng.shuffle(rows)
        # Triplets and pairs batch separately: every column of the loss needs the same length.
        for width in (3, 2):
            group = [r for r in rows if len(r) == width]
            for start in range(0, len(group) - cfg.batch_size + 1, cfg.batch_size):
                batch = group[start : start + cfg.batch_size]
                features = [
                    {
                        k: v.to(model.device)
                        for k, v in model.tokenize([r[c] for r in batch]).items()
                        if torch.is_tensor(v)
                    }
                    for c in range(width)
                ]
                with torch.autocast(model.device.type, dtype=torch.bfloat16, enabled=bf16):
                    loss = loss_fn(features, torch.empty(0))
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad()
                step += 1
                if step % 20 == 0:
                    logger.info("teacher step %d/%d loss %.4f", step, steps, loss.item())
    model.eval()


class TeacherScorer:
    """Teacher cosine similarities for a batch, from raw text. Vectors memoised by text hash (optionally on disk)."""

    def __init__(self, model: SentenceTransformer, cache_path: Path | None = None):
        self.model = model
        self.cache_path = cache_path
        self._cache: dict[str, np.ndarray] = {}
        if cache_path is not None and cache_path.exists():
            with np.load(cache_path) as data:
                self._cache = {k: data[k] for k in data.files}

    @staticmethod
    def _key(text: str) -> str:
        return hashlib.sha1(text.encode("utf-8")).hexdigest()

    def embed(self, texts: list[str]) -> np.ndarray:
        """(N, D) L2-normalised float32. Memoised by text in memory (training batches revisit their texts every
        epoch); also on disk when a cache path is set."""
        missing = list({t for t in texts if self._key(t) not in self._cache})
        if missing:
            for text, vec in zip(missing, self._encode(missing), strict=True):
                self._cache[self._key(text)] = vec
        return np.stack([self._cache[self._key(t)] for t in texts])

    def _encode(self, texts: list[str]) -> np.ndarray:
        return self.model.encode(
            texts, batch_size=128, convert_to_numpy=True, normalize_embeddings=True, show_progress_bar=False
        ).astype(np.float32)

    def similarity(self, texts_a: list[str], texts_b: list[str]) -> torch.Tensor:
        """(len(a), len(b)) cosine similarity matrix."""
        both = self.embed(texts_a + texts_b)
        a, b = both[: len(texts_a)], both[len(texts_a) :]
        return torch.from_numpy(a @ b.T)

    def save_cache(self) -> None:
        if self.cache_path is not None and self._cache:
            tmp = self.cache_path.with_suffix(".tmp.npz")
            np.savez(tmp, **self._cache)
            tmp.replace(self.cache_path)
