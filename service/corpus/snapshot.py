"""Snapshot: one immutable, searchable state of a corpus (index + vector-to-entry map + entries).

Readers hold a snapshot for the length of a search; writers build the next one with `apply` and the registry swaps
it in with a single assignment, so a search never sees half a write.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

import numpy as np

from service.corpus.index import VectorIndex
from service.corpus.store import Entry, VectorRows


@dataclass(frozen=True)
class Candidate:
    entry_id: str
    question: str
    matched_question: str  # the question or alternate whose vector scored best
    answer: str
    metadata: Mapping[str, Any]
    score: float


def unit_rows(vectors: np.ndarray) -> np.ndarray:
    """L2-normalize rows so inner products are cosines, whatever the model's last module."""
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return (vectors / np.maximum(norms, 1e-12)).astype(np.float32)


@dataclass(frozen=True)
class Snapshot:
    index: VectorIndex | None  # None while the corpus holds no vector
    rows: Mapping[int, tuple[str, str]]  # vector id -> (entry id, text)
    entries: Mapping[str, Entry]
    fingerprint: str
    generation: int

    @classmethod
    def empty(cls, *, fingerprint: str, generation: int = 0) -> Snapshot:
        return cls(None, MappingProxyType({}), MappingProxyType({}), fingerprint, generation)

    @classmethod
    def build(cls, *, index: VectorIndex | None, rows: VectorRows, entries: Iterable[Entry], fingerprint: str,
              generation: int) -> Snapshot:
        mapping = dict(zip(rows.ids.tolist(), zip(rows.entry_ids, rows.texts, strict=True), strict=True))
        return cls(index, MappingProxyType(mapping), MappingProxyType({e.id: e for e in entries}), fingerprint,
                   generation)

    @property
    def dimension(self) -> int | None:
        return self.index.dimension if self.index is not None else None

    def __len__(self) -> int:
        return len(self.rows)

    def apply(self, *, removed_ids: np.ndarray, added: VectorRows, upserted: Iterable[Entry],
              deleted: Iterable[str], generation: int, hnsw_threshold: int) -> Snapshot:
        """The next snapshot after a committed write. `added.vectors` must be unit length."""
        index = self.index
        added_vectors = added.vectors if added.vectors is not None else np.zeros((0, 0), np.float32)
        if index is None and len(added.ids):
            index = VectorIndex.build(added.ids, added_vectors, dimension=added_vectors.shape[1],
                                      hnsw_threshold=hnsw_threshold)
        elif index is not None:
            index = index.with_changes(remove=removed_ids.tolist(), add_ids=added.ids,
                                       add_vectors=added_vectors.reshape(-1, index.dimension),
                                       hnsw_threshold=hnsw_threshold)
        rows = dict(self.rows)
        for vid in removed_ids.tolist():
            rows.pop(vid, None)
        rows.update(zip(added.ids.tolist(), zip(added.entry_ids, added.texts, strict=True), strict=True))
        entries = dict(self.entries)
        for entry_id in deleted:
            entries.pop(entry_id, None)
        entries.update((e.id, e) for e in upserted)
        return Snapshot(index, MappingProxyType(rows), MappingProxyType(entries), self.fingerprint, generation)

    def search(self, queries: np.ndarray, k: int) -> list[list[Candidate]]:
        """Top-k distinct entries per query (Q, D), each with its best-matching question, best first.

        An entry owns several vectors (question + alternates), so more than k vectors are fetched, and the fetch
        widens until k entries are found or the index is exhausted."""
        if self.index is None or len(self.index) == 0:
            return [[] for _ in range(len(queries))]
        total = len(self.index)
        results: list[list[Candidate]] = [[] for _ in range(len(queries))]
        pending = list(range(len(queries)))
        fetch = min(total, 4 * k)
        while pending:
            scores, ids = self.index.search(queries[pending], fetch)
            still = []
            for row, qi in enumerate(pending):
                results[qi] = self._group(scores[row], ids[row], k)
                if len(results[qi]) < k and fetch < total:
                    still.append(qi)
            pending, fetch = still, min(total, fetch * 4)
        return results

    def _group(self, scores: np.ndarray, ids: np.ndarray, k: int) -> list[Candidate]:
        best: dict[str, Candidate] = {}
        for score, vid in zip(scores.tolist(), ids.tolist(), strict=True):
            if vid < 0 or vid not in self.rows:
                continue
            entry_id, text = self.rows[vid]
            entry = self.entries.get(entry_id)
            if entry is None or entry_id in best:
                continue  # results come best first: the first vector seen is the entry's best
            best[entry_id] = Candidate(entry_id, entry.question, text, entry.answer, entry.metadata, float(score))
            if len(best) == k:
                break
        return list(best.values())
