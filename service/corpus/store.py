"""The durable record of corpora and FAQ entries: value types and the `CorpusStore` interface.

An entry is acknowledged only once a store has committed it. Vectors are stored next to their entries as opaque
float32 rows tagged with the fingerprint of the model that made them, so an index can always be rebuilt from the
store without re-embedding. `sqlite_store.SQLiteStore` is the embedded default; `postgres_store.PostgresStore`
implements the same Protocol on a server database that several replicas share, plus the `ChangeFeed` they follow.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np

from service.errors import InvalidInput

CORPUS_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
ENTRY_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:@-]{0,127}$")


def check_corpus_name(name: str) -> str:
    """Names become file names and metric labels: lowercase, digits, '_' and '-', at most 64 characters."""
    if not CORPUS_NAME.fullmatch(name):
        raise InvalidInput(
            f"corpus name {name[:80]!r} is invalid: use 1-64 characters from a-z, 0-9, '_' and '-', starting "
            "with a letter or digit",
            code="invalid_corpus_name",
        )
    return name


@dataclass(frozen=True)
class CorpusConfig:
    """Per-corpus decision settings (changeable with PATCH)."""

    description: str = ""
    answer_threshold: float = 0.5  # top-1 cosine below it: no_match
    clarify_margin: float = 0.05  # top-1 minus top-2 (different entries) below it: clarify
    default_answer: str = "Sorry, I could not find an answer to that question."
    rerank_enabled: bool = False  # reorder the top rerank_top_k search candidates by the model's match head
    rerank_top_k: int = 20


@dataclass(frozen=True)
class CorpusRecord:
    name: str
    config: CorpusConfig
    generation: int  # bumped by every committed entry write; index files record the one they reflect
    fingerprint: str  # model whose vectors the corpus is indexed with
    dimension: int | None  # None until the first vector is stored
    created_at: float
    updated_at: float


@dataclass(frozen=True)
class Entry:
    id: str
    question: str
    alt_questions: tuple[str, ...] = ()
    answer: str = ""
    metadata: Mapping[str, Any] = field(default_factory=dict)

    def texts(self) -> list[str]:
        """Every text that gets its own vector: the question, then each alternate."""
        return [self.question, *self.alt_questions]


@dataclass(frozen=True)
class VectorRows:
    """Stored vectors: ids (N,) int64 (never reused), the entry and text each belongs to, and (N, D) float32
    (None when only the mapping was asked for)."""

    ids: np.ndarray
    entry_ids: list[str]
    texts: list[str]
    vectors: np.ndarray | None


@dataclass(frozen=True)
class WriteResult:
    removed_ids: np.ndarray  # vector ids that no longer exist
    added: VectorRows
    generation: int


class CorpusStore(Protocol):
    """Every method is blocking and thread-safe; callers run them off the event loop."""

    def create_corpus(self, name: str, config: CorpusConfig, *, fingerprint: str) -> CorpusRecord: ...

    def list_corpora(self) -> list[CorpusRecord]: ...

    def get_corpus(self, name: str) -> CorpusRecord: ...

    def update_corpus(self, name: str, config: CorpusConfig) -> CorpusRecord: ...

    def delete_corpus(self, name: str) -> None: ...

    def upsert_entries(
        self, name: str, entries: Sequence[Entry], vectors: Sequence[np.ndarray], *, fingerprint: str
    ) -> WriteResult:
        """Insert or replace entries with their vectors (one (len(texts), D) array per entry), atomically."""
        ...

    def delete_entries(self, name: str, entry_ids: Sequence[str]) -> WriteResult: ...

    def get_entry(self, name: str, entry_id: str) -> Entry: ...

    def get_entries(self, name: str, entry_ids: Sequence[str]) -> list[Entry]:
        """Those of `entry_ids` that exist, by id (missing ones are left out, not an error)."""
        ...

    def list_entries(self, name: str, *, offset: int, limit: int) -> tuple[list[Entry], int]: ...

    def iter_entries(self, name: str) -> Iterator[Entry]: ...

    def load_vectors(self, name: str, *, with_vectors: bool, fingerprint: str | None = None,
                     entry_ids: Sequence[str] | None = None) -> VectorRows:
        """Stored vectors by id; only those made by model `fingerprint` when given, only those of `entry_ids`
        when given."""
        ...

    def stale_entries(self, name: str, *, fingerprint: str, limit: int) -> list[Entry]:
        """Entries with vectors made by another model (to re-embed)."""
        ...

    def replace_stale_vectors(
        self, name: str, entries: Sequence[Entry], vectors: Sequence[np.ndarray], *, fingerprint: str
    ) -> int:
        """Re-embedding: swap in new vectors only for entries whose vectors are still stale (a concurrent user
        write already re-embedded, or deleted, the others). Returns how many entries were updated."""
        ...

    def set_fingerprint(self, name: str, *, fingerprint: str, dimension: int | None) -> None: ...

    def save_calibration(self, name: str, config: CorpusConfig, calibration: Mapping[str, Any]) -> CorpusRecord:
        """Store a calibration (JSON-serializable, opaque to the store) with the thresholds it chose, atomically."""
        ...

    def get_calibration(self, name: str) -> Mapping[str, Any] | None:
        """The corpus's last stored calibration, or None."""
        ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class Change:
    """One committed write in a shared store's change sequence. `entry_ids` None: a corpus-level change (created,
    settings changed, deleted, re-embedded); otherwise the entries it upserted or deleted."""

    seq: int
    corpus: str
    entry_ids: tuple[str, ...] | None
    origin: str  # the store instance (replica) that wrote it
    age_s: float  # seconds since it was committed, by the database's clock


@runtime_checkable
class ChangeFeed(Protocol):
    """The change sequence of a store shared by replicas. Blocking, like `CorpusStore`."""

    origin: str

    def head_sequence(self) -> int: ...

    def changes_after(self, seq: int, *, limit: int) -> list[Change]: ...

    def wait_for_change(self, timeout_s: float) -> bool:
        """Block until a change notification arrives (True) or `timeout_s` passes (False)."""
        ...
