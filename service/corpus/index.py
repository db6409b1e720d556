"""VectorIndex: an immutable FAISS inner-product index keyed by int64 ids. The only module that imports faiss.

Exact (flat) for small corpora, HNSW above a size threshold. Changes return a new index (copy-on-write), so a
published index is never mutated while readers search it. HNSW cannot remove vectors, so removals become
tombstones filtered during the graph search, compacted by a rebuild once they pass 20% of the index.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

import faiss
import numpy as np

HNSW_M = 32  # graph degree: FAISS's recommended range is 16-64; 32 keeps recall > 0.95 at efSearch 64
HNSW_EF_CONSTRUCTION = 100
HNSW_EF_SEARCH_MIN = 64
COMPACT_FRACTION = 0.2


def set_threads(n: int) -> None:
    """OpenMP threads for FAISS (process-wide)."""
    faiss.omp_set_num_threads(max(1, n))


def write_atomically(path: Path, data: bytes) -> None:
    """Write to a temporary file in the same folder, fsync, rename over `path`, fsync the folder: a reader (or
    a crash) sees the old file or the new one, never half of one."""
    tmp = path.with_name(f".{path.name}.tmp")
    with tmp.open("wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


class VectorIndex:
    def __init__(self, index: faiss.Index, *, dimension: int, kind: str, deleted: frozenset[int] = frozenset()):
        self._index = index
        self.dimension = dimension
        self.kind = kind  # "flat" or "hnsw"
        self.deleted = deleted  # tombstoned ids (HNSW only)

    @classmethod
    def build(cls, ids: np.ndarray, vectors: np.ndarray, *, dimension: int, hnsw_threshold: int) -> VectorIndex:
        """ids (N,) int64, vectors (N, D) float32 (unit length for cosine scores)."""
        kind = "hnsw" if len(ids) > hnsw_threshold else "flat"
        if kind == "hnsw":
            inner = faiss.IndexHNSWFlat(dimension, HNSW_M, faiss.METRIC_INNER_PRODUCT)
            inner.hnsw.efConstruction = HNSW_EF_CONSTRUCTION
        else:
            inner = faiss.IndexFlatIP(dimension)
        index = faiss.IndexIDMap2(inner)
        if len(ids):
            index.add_with_ids(np.ascontiguousarray(vectors, np.float32), np.ascontiguousarray(ids, np.int64))
        return cls(index, dimension=dimension, kind=kind)

    def __len__(self) -> int:
        return int(self._index.ntotal) - len(self.deleted)

    def items(self) -> tuple[np.ndarray, np.ndarray]:
        """All live (ids (N,), vectors (N, D)), reconstructed from the index itself."""
        ids = faiss.vector_to_array(self._index.id_map).astype(np.int64)
        vectors = faiss.downcast_index(self._index.index).reconstruct_n(0, int(self._index.ntotal))
        if self.deleted:
            keep = ~np.isin(ids, np.fromiter(self.deleted, np.int64, len(self.deleted)))
            ids, vectors = ids[keep], vectors[keep]
        return ids, vectors

    def with_changes(
        self, *, remove: Iterable[int], add_ids: np.ndarray, add_vectors: np.ndarray, hnsw_threshold: int
    ) -> VectorIndex:
        """A new index with `remove` gone and the additions in; this one is left untouched."""
        remove_ids = np.fromiter(remove, np.int64)
        if len(remove_ids):  # ids this index never held (or already tombstoned) must not skew the counts
            present = faiss.vector_to_array(self._index.id_map)
            remove_ids = remove_ids[np.isin(remove_ids, present)]
            if self.deleted:
                remove_ids = remove_ids[~np.isin(remove_ids, np.fromiter(self.deleted, np.int64, len(self.deleted)))]
        live_after = len(self) - len(remove_ids) + len(add_ids)
        wanted_kind = "hnsw" if live_after > hnsw_threshold else "flat"
        deleted = self.deleted | frozenset(int(i) for i in remove_ids) if self.kind == "hnsw" else frozenset()
        if wanted_kind != self.kind or len(deleted) > COMPACT_FRACTION * max(1, live_after):
            ids, vectors = self.items()
            keep = ~np.isin(ids, remove_ids)
            return VectorIndex.build(
                np.concatenate([ids[keep], add_ids]).astype(np.int64),
                np.concatenate([vectors[keep], add_vectors.reshape(-1, self.dimension)]).astype(np.float32),
                dimension=self.dimension,
                hnsw_threshold=hnsw_threshold,
            )
        index = faiss.clone_index(self._index)
        if self.kind == "flat" and len(remove_ids):
            index.remove_ids(remove_ids)
        if len(add_ids):
            index.add_with_ids(np.ascontiguousarray(add_vectors, np.float32), np.ascontiguousarray(add_ids, np.int64))
        return VectorIndex(index, dimension=self.dimension, kind=self.kind, deleted=deleted)

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """queries (Q, D) -> (scores (Q, k'), ids (Q, k')), best first, k' = min(k, len); id -1 pads."""
        k = min(k, len(self))
        if k <= 0:
            return np.zeros((len(queries), 0), np.float32), np.zeros((len(queries), 0), np.int64)
        params = None
        if self.kind == "hnsw":
            selector = None
            if self.deleted:
                selector = faiss.IDSelectorNot(
                    faiss.IDSelectorBatch(np.fromiter(self.deleted, np.int64, len(self.deleted)))
                )
            params = faiss.SearchParametersHNSW(efSearch=max(HNSW_EF_SEARCH_MIN, 2 * k), sel=selector)
        scores, ids = self._index.search(np.ascontiguousarray(queries, np.float32), k, params=params)
        return scores, ids

    def to_bytes(self) -> bytes:
        return faiss.serialize_index(self._index).tobytes()

    @classmethod
    def from_bytes(cls, data: bytes, *, deleted: frozenset[int] = frozenset()) -> VectorIndex:
        index = faiss.deserialize_index(np.frombuffer(data, np.uint8))
        kind = "hnsw" if isinstance(faiss.downcast_index(index.index), faiss.IndexHNSW) else "flat"
        return cls(index, dimension=int(index.d), kind=kind, deleted=deleted)

    def save(self, path: Path) -> None:
        write_atomically(path, self.to_bytes())

    @classmethod
    def load(cls, path: Path, *, deleted: frozenset[int] = frozenset()) -> VectorIndex:
        return cls.from_bytes(path.read_bytes(), deleted=deleted)
