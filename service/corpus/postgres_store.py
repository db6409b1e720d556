"""PostgresStore: the `CorpusStore` several replicas share, and the `ChangeFeed` they follow.

Same tables and semantics as `SQLiteStore`. Every write transaction first bumps the one-row change sequence (which
serializes writers across replicas, so sequence order is commit order and no deadlock can form between them), then
records which corpus and entries it touched in `changes` and notifies `flipmatch_changes` on commit. A database
that cannot be reached raises `StoreUnavailable` at once; the next call reconnects.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np
import psycopg
from psycopg.rows import dict_row

from service.corpus.pg_schema import connect, migrate, unavailable
from service.corpus.store import Change, CorpusConfig, CorpusRecord, Entry, VectorRows, WriteResult
from service.errors import Conflict, NotFound

CHANNEL = "flipmatch_changes"
_LOST = (psycopg.OperationalError, psycopg.InterfaceError)  # server gone, connection broken, statement timeout
Row = dict[str, Any]


def _entry(row: Row) -> Entry:
    return Entry(row["id"], row["question"], tuple(json.loads(row["alt_questions"])), row["answer"],
                 json.loads(row["metadata"]))


def _record(row: Row) -> CorpusRecord:
    config = CorpusConfig(row["description"], row["answer_threshold"], row["clarify_margin"], row["default_answer"],
                          bool(row["rerank_enabled"]), int(row["rerank_top_k"]))
    return CorpusRecord(row["name"], config, int(row["generation"]), row["fingerprint"], row["dimension"],
                        row["created_at"], row["updated_at"])


class PostgresStore:
    """One connection for reads and writes (guarded by a lock, like SQLiteStore) and one for LISTEN."""

    def __init__(self, url: str, *, connect_timeout_s: float = 2.0, statement_timeout_s: float = 10.0) -> None:
        self._url, self._timeouts = url, (connect_timeout_s, statement_timeout_s)
        self.origin = uuid.uuid4().hex[:12]
        self._lock, self._listen_lock = threading.Lock(), threading.Lock()
        self._conn: psycopg.Connection | None = None
        self._listener: psycopg.Connection | None = None
        with self._lock:
            try:
                self.schema_version = migrate(self._connection())
            except _LOST as err:
                self._drop()
                raise unavailable(err) from err

    # ---- connections -------------------------------------------------------------------------------------------
    def _open(self) -> psycopg.Connection:
        return connect(self._url, connect_timeout_s=self._timeouts[0], statement_timeout_s=self._timeouts[1])

    def _connection(self) -> psycopg.Connection:
        if self._conn is None or self._conn.closed:
            self._conn = self._open()
        return self._conn

    def _drop(self) -> None:
        if self._conn is not None:
            self._conn.close()
        self._conn = None

    @contextmanager
    def _cursor(self, *, write: bool = False) -> Iterator[psycopg.Cursor[Row]]:
        """A cursor under the lock; `write`: inside one transaction. Connection loss -> StoreUnavailable."""
        with self._lock:
            try:
                conn = self._connection()
                if write:
                    with conn.transaction(), conn.cursor(row_factory=dict_row) as cur:
                        yield cur
                else:
                    with conn.cursor(row_factory=dict_row) as cur:
                        yield cur
            except _LOST as err:
                self._drop()
                raise unavailable(err) from err

    def close(self) -> None:
        with self._lock:
            self._drop()
        with self._listen_lock:
            if self._listener is not None:
                self._listener.close()
                self._listener = None

    # ---- change sequence ---------------------------------------------------------------------------------------
    @staticmethod
    def _next_seq(cur: psycopg.Cursor[Row]) -> int:
        row = cur.execute("UPDATE change_sequence SET seq = seq + 1 RETURNING seq").fetchone()
        assert row is not None
        return int(row["seq"])

    def _log(self, cur: psycopg.Cursor[Row], seq: int, corpus: str, entry_ids: Sequence[str] | None) -> None:
        cur.execute("INSERT INTO changes (seq, corpus, entry_ids, origin, committed_at) "
                    "VALUES (%s, %s, %s, %s, extract(epoch FROM clock_timestamp()))",
                    (seq, corpus, None if entry_ids is None else json.dumps(list(entry_ids)), self.origin))
        cur.execute("SELECT pg_notify(%s, %s)", (CHANNEL, str(seq)))  # delivered at commit, dropped on rollback

    @contextmanager
    def _write(self, corpus: str, entry_ids: Sequence[str] | None) -> Iterator[psycopg.Cursor[Row]]:
        with self._cursor(write=True) as cur:
            seq = self._next_seq(cur)  # first: takes the writers' lock before any row lock
            yield cur
            self._log(cur, seq, corpus, entry_ids)

    def head_sequence(self) -> int:
        with self._cursor() as cur:
            row = cur.execute("SELECT seq FROM change_sequence").fetchone()
        return int(row["seq"]) if row else 0

    def changes_after(self, seq: int, *, limit: int) -> list[Change]:
        with self._cursor() as cur:
            rows = cur.execute("SELECT seq, corpus, entry_ids, origin, extract(epoch FROM clock_timestamp()) - "
                               "committed_at AS age FROM changes WHERE seq > %s ORDER BY seq LIMIT %s",
                               (seq, limit)).fetchall()
        return [Change(int(r["seq"]), r["corpus"],
                       None if r["entry_ids"] is None else tuple(json.loads(r["entry_ids"])),
                       r["origin"], max(0.0, float(r["age"]))) for r in rows]

    def wait_for_change(self, timeout_s: float) -> bool:
        with self._listen_lock:
            try:
                if self._listener is None or self._listener.closed:
                    self._listener = self._open()
                    self._listener.execute(f"LISTEN {CHANNEL}")
                return any(True for _ in self._listener.notifies(timeout=timeout_s, stop_after=1))
            except _LOST as err:
                if self._listener is not None:
                    self._listener.close()
                self._listener = None
                raise unavailable(err) from err

    # ---- corpora -----------------------------------------------------------------------------------------------
    @staticmethod
    def _require(cur: psycopg.Cursor[Row], name: str) -> Row:
        row = cur.execute("SELECT * FROM corpora WHERE name = %s", (name,)).fetchone()
        if row is None:
            raise NotFound(f"corpus {name!r} does not exist", code="corpus_not_found")
        return row

    def create_corpus(self, name: str, config: CorpusConfig, *, fingerprint: str) -> CorpusRecord:
        now = time.time()
        try:
            with self._write(name, None) as cur:
                cur.execute(
                    "INSERT INTO corpora (name, description, answer_threshold, clarify_margin, default_answer, "
                    "rerank_enabled, rerank_top_k, fingerprint, created_at, updated_at) "
                    "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
                    (name, config.description, config.answer_threshold, config.clarify_margin,
                     config.default_answer, config.rerank_enabled, config.rerank_top_k, fingerprint, now, now))
                return _record(self._require(cur, name))
        except psycopg.errors.UniqueViolation as err:
            raise Conflict(f"corpus {name!r} already exists", code="corpus_exists") from err

    def list_corpora(self) -> list[CorpusRecord]:
        with self._cursor() as cur:
            return [_record(r) for r in cur.execute("SELECT * FROM corpora ORDER BY name").fetchall()]

    def get_corpus(self, name: str) -> CorpusRecord:
        with self._cursor() as cur:
            return _record(self._require(cur, name))

    def update_corpus(self, name: str, config: CorpusConfig) -> CorpusRecord:
        with self._write(name, None) as cur:
            self._require(cur, name)
            cur.execute("UPDATE corpora SET description = %s, answer_threshold = %s, clarify_margin = %s, "
                        "default_answer = %s, rerank_enabled = %s, rerank_top_k = %s, updated_at = %s "
                        "WHERE name = %s",
                        (config.description, config.answer_threshold, config.clarify_margin, config.default_answer,
                         config.rerank_enabled, config.rerank_top_k, time.time(), name))
            return _record(self._require(cur, name))

    def save_calibration(self, name: str, config: CorpusConfig, calibration: Mapping[str, Any]) -> CorpusRecord:
        """Thresholds and curve in one transaction, logged as a corpus-level change: replicas pick up the new
        thresholds the way they pick up any settings change."""
        with self._write(name, None) as cur:
            self._require(cur, name)
            now = time.time()
            cur.execute("UPDATE corpora SET answer_threshold = %s, clarify_margin = %s, updated_at = %s "
                        "WHERE name = %s", (config.answer_threshold, config.clarify_margin, now, name))
            cur.execute("INSERT INTO calibrations (corpus, body, updated_at) VALUES (%s, %s, %s) ON CONFLICT "
                        "(corpus) DO UPDATE SET body = excluded.body, updated_at = excluded.updated_at",
                        (name, json.dumps(dict(calibration)), now))
            return _record(self._require(cur, name))

    def get_calibration(self, name: str) -> Mapping[str, Any] | None:
        with self._cursor() as cur:
            self._require(cur, name)
            row = cur.execute("SELECT body FROM calibrations WHERE corpus = %s", (name,)).fetchone()
        return None if row is None else json.loads(row["body"])  # type: ignore[no-any-return]

    def delete_corpus(self, name: str) -> None:
        with self._write(name, None) as cur:
            self._require(cur, name)
            cur.execute("DELETE FROM corpora WHERE name = %s", (name,))

    # ---- entries -----------------------------------------------------------------------------------------------
    @staticmethod
    def _remove_vectors(cur: psycopg.Cursor[Row], name: str, entry_ids: Sequence[str]) -> list[int]:
        rows = cur.execute("DELETE FROM vectors WHERE corpus = %s AND entry_id = ANY(%s) RETURNING vid",
                           (name, list(entry_ids))).fetchall()
        return sorted(int(r["vid"]) for r in rows)

    @staticmethod
    def _insert_vectors(cur: psycopg.Cursor[Row], name: str, entries: Sequence[Entry],
                        vectors: Sequence[np.ndarray], fingerprint: str) -> list[int]:
        texts = [(entry, ord_, text, vector) for entry, entry_vectors in zip(entries, vectors, strict=True)
                 for ord_, (text, vector) in enumerate(zip(entry.texts(), entry_vectors, strict=True))]
        if not texts:
            return []
        # Ids drawn up front (increasing), so they are known without relying on the order RETURNING gives.
        ids = [int(r["nextval"]) for r in cur.execute(
            "SELECT nextval('vectors_vid_seq') FROM generate_series(1, %s)", (len(texts),)).fetchall()]
        cur.executemany(
            "INSERT INTO vectors (vid, corpus, entry_id, ord, text, model, vector) VALUES (%s, %s, %s, %s, %s, %s, %s)",
            [(vid, name, entry.id, ord_, text, fingerprint, np.asarray(vector, np.float32).tobytes())
             for vid, (entry, ord_, text, vector) in zip(ids, texts, strict=True)])
        return ids

    def _bump(self, cur: psycopg.Cursor[Row], name: str, dimension: int | None = None) -> int:
        row = cur.execute("UPDATE corpora SET generation = generation + 1, updated_at = %s, "
                          "dimension = COALESCE(dimension, %s) WHERE name = %s RETURNING generation",
                          (time.time(), dimension, name)).fetchone()
        assert row is not None
        return int(row["generation"])

    def upsert_entries(
        self, name: str, entries: Sequence[Entry], vectors: Sequence[np.ndarray], *, fingerprint: str
    ) -> WriteResult:
        if len(entries) != len(vectors):
            raise ValueError(f"{len(entries)} entries but {len(vectors)} vector arrays")
        with self._write(name, [e.id for e in entries]) as cur:
            self._require(cur, name)
            removed = self._remove_vectors(cur, name, [e.id for e in entries])
            now = time.time()
            cur.executemany(
                "INSERT INTO entries (corpus, id, question, alt_questions, answer, metadata, updated_at) "
                "VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT (corpus, id) DO UPDATE SET "
                "question = excluded.question, alt_questions = excluded.alt_questions, answer = excluded.answer, "
                "metadata = excluded.metadata, updated_at = excluded.updated_at",
                [(name, e.id, e.question, json.dumps(list(e.alt_questions)), e.answer, json.dumps(dict(e.metadata)),
                  now) for e in entries])
            added_ids = self._insert_vectors(cur, name, entries, vectors, fingerprint)
            generation = self._bump(cur, name, int(vectors[0].shape[1]) if len(vectors) else None)
        stacked = np.concatenate(list(vectors)).astype(np.float32) if len(vectors) else np.zeros((0, 0), np.float32)
        added = VectorRows(np.asarray(added_ids, np.int64), [e.id for e in entries for _ in e.texts()],
                           [t for e in entries for t in e.texts()], stacked)
        return WriteResult(np.asarray(removed, np.int64), added, generation)

    def delete_entries(self, name: str, entry_ids: Sequence[str]) -> WriteResult:
        with self._write(name, entry_ids) as cur:
            self._require(cur, name)
            found = {r["id"] for r in cur.execute("SELECT id FROM entries WHERE corpus = %s AND id = ANY(%s)",
                                                  (name, list(entry_ids))).fetchall()}
            for entry_id in entry_ids:
                if entry_id not in found:
                    raise NotFound(f"entry {entry_id!r} does not exist in corpus {name!r}", code="entry_not_found")
            removed = self._remove_vectors(cur, name, entry_ids)
            cur.execute("DELETE FROM entries WHERE corpus = %s AND id = ANY(%s)", (name, list(entry_ids)))
            generation = self._bump(cur, name)
        empty = VectorRows(np.zeros(0, np.int64), [], [], np.zeros((0, 0), np.float32))
        return WriteResult(np.asarray(removed, np.int64), empty, generation)

    def get_entry(self, name: str, entry_id: str) -> Entry:
        with self._cursor() as cur:
            self._require(cur, name)
            row = cur.execute("SELECT * FROM entries WHERE corpus = %s AND id = %s", (name, entry_id)).fetchone()
        if row is None:
            raise NotFound(f"entry {entry_id!r} does not exist in corpus {name!r}", code="entry_not_found")
        return _entry(row)

    def get_entries(self, name: str, entry_ids: Sequence[str]) -> list[Entry]:
        """The entries among `entry_ids` that exist now (a follower re-reads what a change touched)."""
        with self._cursor() as cur:
            rows = cur.execute("SELECT * FROM entries WHERE corpus = %s AND id = ANY(%s) ORDER BY id",
                               (name, list(entry_ids))).fetchall()
        return [_entry(r) for r in rows]

    def list_entries(self, name: str, *, offset: int, limit: int) -> tuple[list[Entry], int]:
        with self._cursor() as cur:
            self._require(cur, name)
            total = cur.execute("SELECT COUNT(*) AS n FROM entries WHERE corpus = %s", (name,)).fetchone()
            rows = cur.execute("SELECT * FROM entries WHERE corpus = %s ORDER BY id LIMIT %s OFFSET %s",
                               (name, limit, offset)).fetchall()
        return [_entry(r) for r in rows], int(total["n"]) if total else 0

    def iter_entries(self, name: str) -> Iterator[Entry]:
        """All entries by id, read in pages (keyset pagination), so the lock is never held for long."""
        last = ""
        with self._cursor() as cur:
            self._require(cur, name)
        while True:
            with self._cursor() as cur:
                rows = cur.execute("SELECT * FROM entries WHERE corpus = %s AND id > %s ORDER BY id LIMIT 500",
                                   (name, last)).fetchall()
            if not rows:
                return
            yield from (_entry(r) for r in rows)
            last = rows[-1]["id"]

    def load_vectors(self, name: str, *, with_vectors: bool, fingerprint: str | None = None,
                     entry_ids: Sequence[str] | None = None) -> VectorRows:
        """Stored vectors by id; only model `fingerprint`'s when given; only those of `entry_ids` when given."""
        columns = "vid, entry_id, text" + (", vector" if with_vectors else "")
        where, params = ["corpus = %s"], [name]
        if fingerprint is not None:
            where.append("model = %s")
            params.append(fingerprint)
        if entry_ids is not None:
            where.append("entry_id = ANY(%s)")
            params.append(list(entry_ids))  # type: ignore[arg-type]
        with self._cursor() as cur:
            self._require(cur, name)
            rows = cur.execute(f"SELECT {columns} FROM vectors WHERE {' AND '.join(where)} ORDER BY vid",  # type: ignore[arg-type]
                               params).fetchall()
        matrix = None
        if with_vectors:
            matrix = (np.stack([np.frombuffer(r["vector"], np.float32) for r in rows]) if rows
                      else np.zeros((0, 0), np.float32))
        return VectorRows(np.asarray([r["vid"] for r in rows], np.int64), [r["entry_id"] for r in rows],
                          [r["text"] for r in rows], matrix)

    def stale_entries(self, name: str, *, fingerprint: str, limit: int) -> list[Entry]:
        with self._cursor() as cur:
            rows = cur.execute(
                "SELECT * FROM entries e WHERE corpus = %s AND EXISTS (SELECT 1 FROM vectors v "
                "WHERE v.corpus = e.corpus AND v.entry_id = e.id AND v.model != %s) ORDER BY id LIMIT %s",
                (name, fingerprint, limit)).fetchall()
        return [_entry(r) for r in rows]

    def replace_stale_vectors(
        self, name: str, entries: Sequence[Entry], vectors: Sequence[np.ndarray], *, fingerprint: str
    ) -> int:
        replaced: list[str] = []
        with self._cursor(write=True) as cur:
            seq = self._next_seq(cur)
            for entry, entry_vectors in zip(entries, vectors, strict=True):
                # Compare-and-set: untouched since it was read, i.e. still stale with the same texts.
                current = cur.execute("SELECT * FROM entries WHERE corpus = %s AND id = %s FOR UPDATE",
                                      (name, entry.id)).fetchone()
                stale = cur.execute("SELECT 1 FROM vectors WHERE corpus = %s AND entry_id = %s AND model != %s "
                                    "LIMIT 1", (name, entry.id, fingerprint)).fetchone()
                if current is None or stale is None or _entry(current).texts() != entry.texts():
                    continue
                self._remove_vectors(cur, name, [entry.id])
                self._insert_vectors(cur, name, [entry], [entry_vectors], fingerprint)
                replaced.append(entry.id)
            self._bump(cur, name)
            self._log(cur, seq, name, replaced)
        return len(replaced)

    def set_fingerprint(self, name: str, *, fingerprint: str, dimension: int | None) -> None:
        with self._write(name, None) as cur:
            cur.execute("UPDATE corpora SET fingerprint = %s, dimension = %s WHERE name = %s",
                        (fingerprint, dimension, name))
