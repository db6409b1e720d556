"""SQLiteStore: the embedded `CorpusStore`. One database file, WAL journal, synchronous=FULL: a write is durable
(power loss included) when its commit returns, which is when the API acknowledges it."""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from service.corpus.store import CorpusConfig, CorpusRecord, Entry, VectorRows, WriteResult
from service.errors import Conflict, NotFound

_SCHEMA = """
CREATE TABLE IF NOT EXISTS corpora (
    name TEXT PRIMARY KEY, description TEXT NOT NULL, answer_threshold REAL NOT NULL,
    clarify_margin REAL NOT NULL, default_answer TEXT NOT NULL, generation INTEGER NOT NULL DEFAULT 0,
    fingerprint TEXT NOT NULL, dimension INTEGER, created_at REAL NOT NULL, updated_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS entries (
    corpus TEXT NOT NULL REFERENCES corpora(name) ON DELETE CASCADE, id TEXT NOT NULL,
    question TEXT NOT NULL, alt_questions TEXT NOT NULL, answer TEXT NOT NULL, metadata TEXT NOT NULL,
    updated_at REAL NOT NULL, PRIMARY KEY (corpus, id));
CREATE TABLE IF NOT EXISTS vectors (
    vid INTEGER PRIMARY KEY AUTOINCREMENT, corpus TEXT NOT NULL, entry_id TEXT NOT NULL, ord INTEGER NOT NULL,
    text TEXT NOT NULL, model TEXT NOT NULL, vector BLOB NOT NULL,
    FOREIGN KEY (corpus, entry_id) REFERENCES entries(corpus, id) ON DELETE CASCADE);
CREATE INDEX IF NOT EXISTS vectors_by_entry ON vectors(corpus, entry_id);
CREATE TABLE IF NOT EXISTS calibrations (
    corpus TEXT PRIMARY KEY REFERENCES corpora(name) ON DELETE CASCADE, body TEXT NOT NULL, updated_at REAL NOT NULL);
"""
# AUTOINCREMENT: vector ids are never reused, so an id tombstoned in an HNSW index can never come back.
# Columns added to `corpora` after the first release: (name, definition), added in place to a database that lacks
# them, with the defaults every older corpus gets (PostgreSQL: migrations/0003_corpus_rerank.sql).
_ADDED_COLUMNS = (("rerank_enabled", "INTEGER NOT NULL DEFAULT 0"), ("rerank_top_k", "INTEGER NOT NULL DEFAULT 20"))


def _entry(row: sqlite3.Row) -> Entry:
    return Entry(row["id"], row["question"], tuple(json.loads(row["alt_questions"])), row["answer"],
                 json.loads(row["metadata"]))


def _record(row: sqlite3.Row) -> CorpusRecord:
    config = CorpusConfig(row["description"], row["answer_threshold"], row["clarify_margin"], row["default_answer"],
                          bool(row["rerank_enabled"]), int(row["rerank_top_k"]))
    return CorpusRecord(row["name"], config, row["generation"], row["fingerprint"], row["dimension"],
                        row["created_at"], row["updated_at"])


class SQLiteStore:
    """One connection guarded by a lock (callers are worker threads); each method is one transaction."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.row_factory = sqlite3.Row
        self._lock = threading.Lock()
        for pragma in ("journal_mode=WAL", "synchronous=FULL", "foreign_keys=ON"):
            self._db.execute(f"PRAGMA {pragma}")
        self._db.executescript(_SCHEMA)
        present = {r["name"] for r in self._db.execute("PRAGMA table_info(corpora)")}
        for column, definition in _ADDED_COLUMNS:
            if column not in present:
                self._db.execute(f"ALTER TABLE corpora ADD COLUMN {column} {definition}")

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def _tx(self) -> _Transaction:
        return _Transaction(self._db, self._lock)

    def _require(self, name: str) -> sqlite3.Row:
        row = self._db.execute("SELECT * FROM corpora WHERE name = ?", (name,)).fetchone()
        if row is None:
            raise NotFound(f"corpus {name!r} does not exist", code="corpus_not_found")
        return row

    def create_corpus(self, name: str, config: CorpusConfig, *, fingerprint: str) -> CorpusRecord:
        now = time.time()
        with self._tx():
            try:
                self._db.execute(
                    "INSERT INTO corpora (name, description, answer_threshold, clarify_margin, default_answer, "
                    "rerank_enabled, rerank_top_k, fingerprint, created_at, updated_at) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (name, config.description, config.answer_threshold, config.clarify_margin,
                     config.default_answer, int(config.rerank_enabled), config.rerank_top_k, fingerprint, now, now),
                )
            except sqlite3.IntegrityError as err:
                raise Conflict(f"corpus {name!r} already exists", code="corpus_exists") from err
            return _record(self._require(name))

    def list_corpora(self) -> list[CorpusRecord]:
        with self._lock:
            return [_record(r) for r in self._db.execute("SELECT * FROM corpora ORDER BY name")]

    def get_corpus(self, name: str) -> CorpusRecord:
        with self._lock:
            return _record(self._require(name))

    def update_corpus(self, name: str, config: CorpusConfig) -> CorpusRecord:
        with self._tx():
            self._require(name)
            self._db.execute(
                "UPDATE corpora SET description = ?, answer_threshold = ?, clarify_margin = ?, default_answer = ?, "
                "rerank_enabled = ?, rerank_top_k = ?, updated_at = ? WHERE name = ?",
                (config.description, config.answer_threshold, config.clarify_margin, config.default_answer,
                 int(config.rerank_enabled), config.rerank_top_k, time.time(), name),
            )
            return _record(self._require(name))

    def delete_corpus(self, name: str) -> None:
        with self._tx():
            self._require(name)
            self._db.execute("DELETE FROM corpora WHERE name = ?", (name,))

    def _remove_vectors(self, name: str, entry_ids: Sequence[str]) -> list[int]:
        removed: list[int] = []
        for entry_id in entry_ids:
            rows = self._db.execute("SELECT vid FROM vectors WHERE corpus = ? AND entry_id = ?", (name, entry_id))
            removed.extend(r[0] for r in rows)
            self._db.execute("DELETE FROM vectors WHERE corpus = ? AND entry_id = ?", (name, entry_id))
        return removed

    def _insert_vectors(self, name: str, entry: Entry, vectors: np.ndarray, fingerprint: str) -> list[int]:
        ids = []
        for ord_, (text, vector) in enumerate(zip(entry.texts(), vectors, strict=True)):
            cursor = self._db.execute(
                "INSERT INTO vectors (corpus, entry_id, ord, text, model, vector) VALUES (?, ?, ?, ?, ?, ?)",
                (name, entry.id, ord_, text, fingerprint, np.asarray(vector, np.float32).tobytes()),
            )
            ids.append(int(cursor.lastrowid or 0))
        return ids

    def _bump(self, name: str, dimension: int | None = None) -> int:
        self._db.execute(
            "UPDATE corpora SET generation = generation + 1, updated_at = ?, dimension = COALESCE(dimension, ?) "
            "WHERE name = ?", (time.time(), dimension, name))
        return int(self._require(name)["generation"])

    def upsert_entries(
        self, name: str, entries: Sequence[Entry], vectors: Sequence[np.ndarray], *, fingerprint: str
    ) -> WriteResult:
        added_ids: list[int] = []
        added_entries: list[str] = []
        added_texts: list[str] = []
        with self._tx():
            self._require(name)
            removed = self._remove_vectors(name, [e.id for e in entries])
            now = time.time()
            for entry, entry_vectors in zip(entries, vectors, strict=True):
                self._db.execute(
                    "INSERT INTO entries (corpus, id, question, alt_questions, answer, metadata, updated_at) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (corpus, id) DO UPDATE SET question = excluded.question, "
                    "alt_questions = excluded.alt_questions, answer = excluded.answer, metadata = excluded.metadata, "
                    "updated_at = excluded.updated_at",
                    (name, entry.id, entry.question, json.dumps(list(entry.alt_questions)), entry.answer,
                     json.dumps(dict(entry.metadata)), now),
                )
                added_ids += self._insert_vectors(name, entry, entry_vectors, fingerprint)
                added_entries += [entry.id] * len(entry.texts())
                added_texts += entry.texts()
            dimension = int(vectors[0].shape[1]) if len(vectors) else None
            generation = self._bump(name, dimension)
        stacked = np.concatenate(list(vectors)).astype(np.float32) if len(vectors) else np.zeros((0, 0), np.float32)
        return WriteResult(np.asarray(removed, np.int64),
                           VectorRows(np.asarray(added_ids, np.int64), added_entries, added_texts, stacked), generation)

    def delete_entries(self, name: str, entry_ids: Sequence[str]) -> WriteResult:
        with self._tx():
            self._require(name)
            for entry_id in entry_ids:
                if self._db.execute("SELECT 1 FROM entries WHERE corpus = ? AND id = ?", (name, entry_id)).fetchone() \
                        is None:
                    raise NotFound(f"entry {entry_id!r} does not exist in corpus {name!r}", code="entry_not_found")
            removed = self._remove_vectors(name, entry_ids)
            self._db.executemany("DELETE FROM entries WHERE corpus = ? AND id = ?", [(name, i) for i in entry_ids])
            generation = self._bump(name)
        empty = VectorRows(np.zeros(0, np.int64), [], [], np.zeros((0, 0), np.float32))
        return WriteResult(np.asarray(removed, np.int64), empty, generation)

    def get_entry(self, name: str, entry_id: str) -> Entry:
        with self._lock:
            self._require(name)
            row = self._db.execute("SELECT * FROM entries WHERE corpus = ? AND id = ?", (name, entry_id)).fetchone()
        if row is None:
            raise NotFound(f"entry {entry_id!r} does not exist in corpus {name!r}", code="entry_not_found")
        return _entry(row)

    def get_entries(self, name: str, entry_ids: Sequence[str]) -> list[Entry]:
        with self._lock:
            rows = [self._db.execute("SELECT * FROM entries WHERE corpus = ? AND id = ?", (name, i)).fetchone()
                    for i in sorted(set(entry_ids))]
        return [_entry(r) for r in rows if r is not None]

    def list_entries(self, name: str, *, offset: int, limit: int) -> tuple[list[Entry], int]:
        with self._lock:
            self._require(name)
            total = self._db.execute("SELECT COUNT(*) FROM entries WHERE corpus = ?", (name,)).fetchone()[0]
            rows = self._db.execute("SELECT * FROM entries WHERE corpus = ? ORDER BY id LIMIT ? OFFSET ?",
                                    (name, limit, offset)).fetchall()
        return [_entry(r) for r in rows], int(total)

    def iter_entries(self, name: str) -> Iterator[Entry]:
        """All entries by id, read in pages (keyset pagination), so the lock is never held for long."""
        last = ""
        with self._lock:
            self._require(name)
        while True:
            with self._lock:
                rows = self._db.execute("SELECT * FROM entries WHERE corpus = ? AND id > ? ORDER BY id LIMIT 500",
                                        (name, last)).fetchall()
            if not rows:
                return
            yield from (_entry(r) for r in rows)
            last = rows[-1]["id"]

    def load_vectors(self, name: str, *, with_vectors: bool, fingerprint: str | None = None,
                     entry_ids: Sequence[str] | None = None) -> VectorRows:
        columns = "vid, entry_id, text" + (", vector" if with_vectors else "")
        where, params = ["corpus = ?"], [name]
        if fingerprint is not None:
            where.append("model = ?")
            params.append(fingerprint)
        if entry_ids is not None:
            where.append(f"entry_id IN ({', '.join('?' * len(entry_ids))})")
            params.extend(entry_ids)
        with self._lock:
            self._require(name)
            rows = self._db.execute(f"SELECT {columns} FROM vectors WHERE {' AND '.join(where)} ORDER BY vid",
                                    params).fetchall()
        matrix = None
        if with_vectors:
            matrix = (np.stack([np.frombuffer(r["vector"], np.float32) for r in rows]) if rows
                      else np.zeros((0, 0), np.float32))
        return VectorRows(np.asarray([r["vid"] for r in rows], np.int64), [r["entry_id"] for r in rows],
                          [r["text"] for r in rows], matrix)

    def stale_entries(self, name: str, *, fingerprint: str, limit: int) -> list[Entry]:
        with self._lock:
            rows = self._db.execute(
                "SELECT * FROM entries e WHERE corpus = ? AND EXISTS (SELECT 1 FROM vectors v "
                "WHERE v.corpus = e.corpus AND v.entry_id = e.id AND v.model != ?) ORDER BY id LIMIT ?",
                (name, fingerprint, limit)).fetchall()
        return [_entry(r) for r in rows]

    def replace_stale_vectors(
        self, name: str, entries: Sequence[Entry], vectors: Sequence[np.ndarray], *, fingerprint: str
    ) -> int:
        replaced = 0
        with self._tx():
            for entry, entry_vectors in zip(entries, vectors, strict=True):
                # Compare-and-set: untouched since it was read, i.e. still stale with the same texts.
                current = self._db.execute(
                    "SELECT * FROM entries WHERE corpus = ? AND id = ?", (name, entry.id)).fetchone()
                stale = self._db.execute("SELECT 1 FROM vectors WHERE corpus = ? AND entry_id = ? AND model != ?",
                                         (name, entry.id, fingerprint)).fetchone()
                if current is None or stale is None or _entry(current).texts() != entry.texts():
                    continue
                self._remove_vectors(name, [entry.id])
                self._insert_vectors(name, entry, entry_vectors, fingerprint)
                replaced += 1
            self._bump(name)
        return replaced

    def set_fingerprint(self, name: str, *, fingerprint: str, dimension: int | None) -> None:
        with self._tx():
            self._db.execute("UPDATE corpora SET fingerprint = ?, dimension = ? WHERE name = ?",
                             (fingerprint, dimension, name))

    def save_calibration(self, name: str, config: CorpusConfig, calibration: Mapping[str, Any]) -> CorpusRecord:
        body = json.dumps(dict(calibration))
        with self._tx():
            self._require(name)
            now = time.time()
            self._db.execute("UPDATE corpora SET answer_threshold = ?, clarify_margin = ?, updated_at = ? "
                             "WHERE name = ?", (config.answer_threshold, config.clarify_margin, now, name))
            self._db.execute("INSERT INTO calibrations (corpus, body, updated_at) VALUES (?, ?, ?) ON CONFLICT "
                             "(corpus) DO UPDATE SET body = excluded.body, updated_at = excluded.updated_at",
                             (name, body, now))
            return _record(self._require(name))

    def get_calibration(self, name: str) -> Mapping[str, Any] | None:
        with self._lock:
            self._require(name)
            row = self._db.execute("SELECT body FROM calibrations WHERE corpus = ?", (name,)).fetchone()
        return None if row is None else json.loads(row["body"])  # type: ignore[no-any-return]


class _Transaction:
    """`with store._tx():` holds the store lock and wraps the block in BEGIN IMMEDIATE ... COMMIT/ROLLBACK."""

    def __init__(self, db: sqlite3.Connection, lock: threading.Lock) -> None:
        self._db, self._lock = db, lock

    def __enter__(self) -> None:
        self._lock.acquire()
        self._db.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        try:
            self._db.execute("ROLLBACK" if exc_type is not None else "COMMIT")
        finally:
            self._lock.release()
