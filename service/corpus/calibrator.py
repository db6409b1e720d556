"""Calibrator: gathers scored calibration queries for a corpus, runs `calibration.calibrate`, stores the result.

Self-calibration (no labels): positives are the corpus's own questions, each searched against the corpus without
its own vector (leave-one-out), so the right answer must be found through the entry's other phrasings; negatives
are the bundled off-topic pool (`offtopic_pool.txt`) plus questions sampled from the other corpora. Labelled
calibration uses exactly the given queries. Scores are exact cosines over the stored unit vectors, grouped per
entry the way a search groups them.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from service.corpus import calibration
from service.corpus.registry import CorpusRegistry, EmbedFn
from service.corpus.snapshot import unit_rows
from service.corpus.store import VectorRows
from service.errors import Conflict, InvalidInput, NotReady

logger = logging.getLogger(__name__)

POOL_FILE = Path(__file__).with_name("offtopic_pool.txt")
MAX_POSITIVES = 3000  # leave-one-out queries sampled per self-calibration
MAX_OTHER_CORPUS_NEGATIVES = 400  # questions sampled from the other corpora
MIN_POSITIVES = 20  # below it self-calibration tunes the threshold on negatives only
MATMUL_CELLS = 8_000_000  # query x vector scores computed at once (bounds memory on large corpora)


@dataclass(frozen=True)
class LabelledQuery:
    query: str
    expected_id: str | None  # None: out of scope (the right decision is no_match)


def load_pool(path: Path = POOL_FILE) -> list[str]:
    """The bundled off-topic questions: one per line; '#' lines are the header (source and license)."""
    lines = path.read_text(encoding="utf-8").splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def rank(queries: np.ndarray, rows: VectorRows, *, exclude: np.ndarray | None = None
         ) -> tuple[list[str | None], np.ndarray, np.ndarray]:
    """Per query (Q, D unit rows): best entry id, its score, the runner-up entry's score (-inf if none).
    `exclude[i]` is a row of `rows` that query i may not match (its own vector), or -1."""
    assert rows.vectors is not None
    entry_ids = np.asarray(rows.entry_ids, dtype=object)
    names, codes = np.unique(entry_ids, return_inverse=True) if len(entry_ids) else (np.asarray([]), np.zeros(0))
    order = np.argsort(codes, kind="stable")
    starts = np.flatnonzero(np.r_[True, np.diff(codes[order]) != 0]) if len(order) else np.zeros(0, int)
    vectors = rows.vectors[order]
    best: list[str | None] = []
    top1, top2 = np.full(len(queries), -np.inf), np.full(len(queries), -np.inf)
    step = max(1, MATMUL_CELLS // max(1, len(vectors)))
    column = np.argsort(order)  # row of `rows` -> its column in `vectors`
    for lo in range(0, len(queries), step):
        sims = queries[lo : lo + step] @ vectors.T  # (q, N), columns grouped by entry
        if exclude is not None:
            own = exclude[lo : lo + step]
            hit = own >= 0
            sims[np.flatnonzero(hit), column[own[hit]]] = -np.inf
        per_entry = np.maximum.reduceat(sims, starts, axis=1) if len(starts) else np.zeros((len(sims), 0))
        if per_entry.shape[1] >= 2:
            part = np.argpartition(-per_entry, 1, axis=1)[:, :2]
        else:
            part = np.zeros((len(sims), per_entry.shape[1]), int)
        for r in range(len(sims)):
            scores = per_entry[r, part[r]] if part.shape[1] else np.asarray([])
            if scores.size == 0 or not np.isfinite(scores.max()):
                best.append(None)
                continue
            first = int(np.argmax(scores))
            best.append(str(names[part[r][first]]))
            top1[lo + r] = scores[first]
            if scores.size > 1:
                top2[lo + r] = scores[1 - first]
    return best, top1, top2


class Calibrator:
    def __init__(self, registry: CorpusRegistry, *, embed: EmbedFn, pool: Sequence[str], seed: int = 0) -> None:
        self._registry, self._embed, self._pool, self._seed = registry, embed, list(pool), seed
        self._locks: dict[str, asyncio.Lock] = {}

    async def _unit(self, texts: Sequence[str]) -> np.ndarray:
        raw, _ = await self._embed(list(texts))
        return unit_rows(raw)

    async def _corpus_rows(self, name: str) -> VectorRows:
        info = self._registry.info(name)
        if info.status != "ready" or info.record.fingerprint != self._registry.fingerprint:
            raise NotReady(f"corpus {name!r} is being re-embedded for the new model; calibrate once it is ready",
                           retry_after_s=30)
        rows = await self._registry.stored_vectors(name)
        if not len(rows.ids):
            # The request is well formed; the corpus's state is what stands in the way: 409, not 422.
            raise Conflict(f"corpus {name!r} has no entries to calibrate against; add entries first",
                           code="empty_corpus")
        return rows

    async def _negatives(self, name: str) -> tuple[np.ndarray, dict[str, int]]:
        rng = np.random.default_rng(self._seed)
        others: list[np.ndarray] = []
        for info in self._registry.list_all():
            if info.record.name == name or info.record.fingerprint != self._registry.fingerprint:
                continue
            rows = await self._registry.stored_vectors(info.record.name)
            if rows.vectors is not None and len(rows.ids):
                others.append(rows.vectors)
        other = np.concatenate(others) if others else np.zeros((0, self._registry.dimension), np.float32)
        if len(other) > MAX_OTHER_CORPUS_NEGATIVES:
            other = other[np.sort(rng.choice(len(other), MAX_OTHER_CORPUS_NEGATIVES, replace=False))]
        pool = await self._unit(self._pool) if self._pool else np.zeros((0, other.shape[1]), np.float32)
        return np.concatenate([pool, other]), {"offtopic_pool": len(pool), "other_corpora": len(other)}

    async def _self_scores(self, name: str) -> tuple[calibration.ScoredQueries, dict[str, Any]]:
        rows = await self._corpus_rows(name)
        assert rows.vectors is not None
        counts: dict[str, int] = {}
        for entry_id in rows.entry_ids:
            counts[entry_id] = counts.get(entry_id, 0) + 1
        # Leave-one-out needs another phrasing of the same entry to find.
        eligible = np.flatnonzero([counts[e] > 1 for e in rows.entry_ids])
        if len(eligible) > MAX_POSITIVES:
            eligible = np.sort(np.random.default_rng(self._seed).choice(eligible, MAX_POSITIVES, replace=False))
        if len(eligible) < MIN_POSITIVES:
            eligible = eligible[:0]  # too few to measure precision: tune on negatives only
        best, top1, top2 = await asyncio.to_thread(rank, rows.vectors[eligible], rows, exclude=eligible)
        correct = [b == rows.entry_ids[i] for b, i in zip(best, eligible, strict=True)]
        negatives, sources = await self._negatives(name)
        _, n1, n2 = await asyncio.to_thread(rank, negatives, rows)
        scores = calibration.ScoredQueries.of(np.r_[top1, n1], np.r_[top2, n2],
                                              np.r_[np.ones(len(top1), bool), np.zeros(len(n1), bool)],
                                              np.r_[np.asarray(correct, bool), np.zeros(len(n1), bool)])
        return scores, {"positives": "leave-one-out questions of the corpus", "negatives": sources}

    async def _labelled_scores(self, name: str, queries: Sequence[LabelledQuery]
                               ) -> tuple[calibration.ScoredQueries, dict[str, Any]]:
        rows = await self._corpus_rows(name)
        known = set(rows.entry_ids)
        unknown = sorted({q.expected_id for q in queries if q.expected_id is not None and q.expected_id not in known})
        if unknown:
            raise InvalidInput(f"{len(unknown)} expected entry ids are not in corpus {name!r}: "
                               f"{', '.join(unknown[:5])}{' ...' if len(unknown) > 5 else ''}; use an entry id, "
                               "or leave expected_id empty for an out-of-scope query", code="unknown_expected_id")
        vectors = await self._unit([q.query for q in queries])
        best, top1, top2 = await asyncio.to_thread(rank, vectors, rows)
        in_scope = [q.expected_id is not None for q in queries]
        correct = [b is not None and b == q.expected_id for b, q in zip(best, queries, strict=True)]
        return calibration.ScoredQueries.of(top1, top2, in_scope, correct), {"labelled": len(queries)}

    async def calibrate(self, name: str, *, queries: Sequence[LabelledQuery] | None = None,
                        target_precision: float = 0.9, target_no_match: float = 0.9) -> dict[str, Any]:
        """Calibrate corpus `name`, store thresholds + curve with it, and return what was stored. `queries`
        None or empty: self-calibration."""
        lock = self._locks.setdefault(name, asyncio.Lock())
        async with lock:
            started = time.perf_counter()
            if queries:
                scores, sources = await self._labelled_scores(name, queries)
            else:
                scores, sources = await self._self_scores(name)
            margin = self._registry.info(name).record.config.clarify_margin
            result = await asyncio.to_thread(calibration.calibrate, scores, target_precision=target_precision,
                                             target_no_match=target_no_match, default_margin=margin)
            stored = {
                **result.to_dict(),
                "source": "labelled" if queries else "self",
                "sources": sources,
                "fingerprint": self._registry.fingerprint,
                "created_at": time.time(),
                "labelled": [{"query": q.query, "expected_id": q.expected_id} for q in queries or ()],
            }
            await self._registry.save_calibration(name, stored, answer_threshold=result.answer_threshold,
                                                  clarify_margin=result.clarify_margin)
            logger.info("calibrated corpus=%s source=%s positives=%d negatives=%d threshold=%.4f margin=%.4f "
                        "met=%s s=%.1f", name, stored["source"], result.positives, result.negatives,
                        result.answer_threshold, result.clarify_margin, result.met, time.perf_counter() - started)
            return stored

    async def recalibrate(self, name: str) -> None:
        """Redo a stored calibration with its own inputs (after the model changed and the corpus was re-embedded)."""
        previous = await self._registry.get_calibration(name)
        if previous is None or previous.get("fingerprint") == self._registry.fingerprint:
            return
        labelled = [LabelledQuery(q["query"], q["expected_id"]) for q in previous.get("labelled", [])]
        await self.calibrate(name, queries=labelled or None, target_precision=previous["target_precision"],
                             target_no_match=previous["target_no_match"])

    async def recalibrate_stale(self) -> None:
        """Every ready corpus whose stored calibration was made with another model (a restart after a model
        change whose re-embed had finished, or was not needed)."""
        for info in self._registry.list_all():
            if info.status == "ready" and info.record.fingerprint == self._registry.fingerprint:
                try:
                    await self.recalibrate(info.record.name)
                except (InvalidInput, NotReady) as err:
                    logger.warning("recalibration skipped corpus=%s: %s", info.record.name, err)
