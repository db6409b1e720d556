"""The `CorpusStore` contract, written once and run against both stores (SQLite, the embedded default, and
PostgreSQL, shared by replicas): corpora and their settings (calibration, rerank), entries with vectors, atomic
writes, durability across reopen, stale-vector swaps. PostgreSQL only: the change sequence replicas follow,
migrations, and failing fast when the server is gone."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from dataclasses import replace

import numpy as np
import pytest

from service.corpus.sqlite_store import SQLiteStore
from service.corpus.store import ENTRY_ID, CorpusConfig, CorpusStore, Entry, check_corpus_name
from service.errors import Conflict, InvalidInput, NotFound


def vecs(entry: Entry, d: int = 4, value: float = 1.0) -> np.ndarray:
    return np.full((len(entry.texts()), d), value, np.float32)


@pytest.fixture
def open_store(store_backend, tmp_path, request) -> Callable[[], CorpusStore]:
    """Opens the backend's store on the same durable location each call (a reopen is a restart)."""
    opened: list[CorpusStore] = []
    if store_backend == "sqlite":
        def make() -> CorpusStore:
            return SQLiteStore(tmp_path / "db.sqlite3")
    else:
        from service.corpus.postgres_store import PostgresStore

        url = request.getfixturevalue("postgres_url")

        def make() -> CorpusStore:
            return PostgresStore(url)

    def opener() -> CorpusStore:
        opened.append(make())
        return opened[-1]

    yield opener
    for s in opened:
        s.close()


@pytest.fixture
def store(open_store):
    s = open_store()
    s.create_corpus("faq", CorpusConfig(description="d"), fingerprint="m1")
    return s


E1 = Entry("e1", "How do I reset my PIN?", ("forgot pin",), "Use the app.", {"team": "cards"})
E2 = Entry("e2", "Where is my card?", (), "In the mail.")


def test_corpus_lifecycle(store):
    with pytest.raises(Conflict):
        store.create_corpus("faq", CorpusConfig(), fingerprint="m1")
    record = store.update_corpus("faq", CorpusConfig(description="new", answer_threshold=0.7))
    assert (record.config.description, record.config.answer_threshold) == ("new", 0.7)
    assert [r.name for r in store.list_corpora()] == ["faq"]
    store.delete_corpus("faq")
    with pytest.raises(NotFound):
        store.get_corpus("faq")


def test_upsert_stores_entries_and_one_vector_per_text(store):
    result = store.upsert_entries("faq", [E1, E2], [vecs(E1), vecs(E2)], fingerprint="m1")
    assert len(result.added.ids) == 3 and result.added.texts == ["How do I reset my PIN?", "forgot pin",
                                                                  "Where is my card?"]
    assert result.removed_ids.size == 0 and result.generation == 1
    assert store.get_entry("faq", "e1") == E1
    rows = store.load_vectors("faq", with_vectors=True)
    assert rows.vectors is not None and rows.vectors.shape == (3, 4)
    assert store.get_corpus("faq").dimension == 4


def test_replacing_an_entry_replaces_its_vectors_with_new_ids(store):
    first = store.upsert_entries("faq", [E1], [vecs(E1)], fingerprint="m1")
    changed = Entry("e1", "Reset PIN?", (), "New answer.")
    second = store.upsert_entries("faq", [changed], [vecs(changed, value=2.0)], fingerprint="m1")
    assert sorted(second.removed_ids.tolist()) == sorted(first.added.ids.tolist())
    assert set(second.added.ids.tolist()).isdisjoint(first.added.ids.tolist())  # ids are never reused
    assert store.get_entry("faq", "e1") == changed
    assert len(store.load_vectors("faq", with_vectors=False).ids) == 1


def test_delete_entry_and_missing_entries(store):
    store.upsert_entries("faq", [E1, E2], [vecs(E1), vecs(E2)], fingerprint="m1")
    result = store.delete_entries("faq", ["e1"])
    assert len(result.removed_ids) == 2
    with pytest.raises(NotFound):
        store.get_entry("faq", "e1")
    with pytest.raises(NotFound):
        store.delete_entries("faq", ["e1"])
    with pytest.raises(NotFound):
        store.upsert_entries("nope", [E1], [vecs(E1)], fingerprint="m1")


def test_a_failed_write_commits_nothing(store):
    with pytest.raises(ValueError):  # vectors do not match the texts: zip(strict=True) fails mid-transaction
        store.upsert_entries("faq", [E1, E2], [vecs(E1), np.zeros((5, 4), np.float32)], fingerprint="m1")
    assert store.list_entries("faq", offset=0, limit=10) == ([], 0)
    assert store.get_corpus("faq").generation == 0


def test_pages_and_iteration_are_ordered_by_id(store):
    entries = [Entry(f"id{i:03d}", f"q {i}") for i in range(25)]
    store.upsert_entries("faq", entries, [vecs(e) for e in entries], fingerprint="m1")
    page, total = store.list_entries("faq", offset=10, limit=5)
    assert total == 25 and [e.id for e in page] == [f"id{i:03d}" for i in range(10, 15)]
    assert [e.id for e in store.iter_entries("faq")] == [e.id for e in entries]


def test_committed_writes_survive_reopening(open_store):
    first = open_store()
    first.create_corpus("faq", CorpusConfig(), fingerprint="m1")
    first.upsert_entries("faq", [E1], [vecs(E1)], fingerprint="m1")
    first.close()
    again = open_store()
    assert again.get_entry("faq", "e1") == E1
    assert again.load_vectors("faq", with_vectors=True).vectors.shape == (2, 4)


def test_entries_and_vectors_of_chosen_ids(store):
    store.upsert_entries("faq", [E1, E2], [vecs(E1), vecs(E2, value=2.0)], fingerprint="m1")
    assert store.get_entries("faq", ["e2", "gone", "e1"]) == [E1, E2]  # by id; missing ids left out
    rows = store.load_vectors("faq", with_vectors=True, entry_ids=["e2"])
    assert rows.entry_ids == ["e2"] and rows.vectors.tolist() == [[2.0] * 4]
    assert len(store.load_vectors("faq", with_vectors=False, entry_ids=[]).ids) == 0
    assert len(store.load_vectors("faq", with_vectors=False, fingerprint="other", entry_ids=["e1"]).ids) == 0


def test_stale_vectors_are_swapped_only_when_untouched(store):
    store.upsert_entries("faq", [E1, E2], [vecs(E1), vecs(E2)], fingerprint="old")
    stale = store.stale_entries("faq", fingerprint="new", limit=10)
    assert [e.id for e in stale] == ["e1", "e2"]
    # A user rewrites e2 with the new model before the re-embed job writes its batch.
    store.upsert_entries("faq", [E2], [vecs(E2, value=7.0)], fingerprint="new")
    replaced = store.replace_stale_vectors("faq", stale, [vecs(E1, value=3.0), vecs(E2, value=3.0)],
                                           fingerprint="new")
    assert replaced == 1
    rows = store.load_vectors("faq", with_vectors=True, fingerprint="new")
    by_entry = dict(zip(rows.entry_ids, rows.vectors[:, 0].tolist(), strict=True))
    assert by_entry == {"e1": 3.0, "e2": 7.0}  # the user's newer e2 was not overwritten
    assert store.stale_entries("faq", fingerprint="new", limit=10) == []


def test_calibration_is_stored_with_its_thresholds_and_survives_reopening(open_store):
    store = open_store()
    store.create_corpus("faq", CorpusConfig(), fingerprint="m1")
    assert store.get_calibration("faq") is None
    curve = {"target_precision": 0.9, "curve": [[0.6, 0.95, 0.5]], "fingerprint": "m1"}
    record = store.save_calibration("faq", CorpusConfig(answer_threshold=0.61, clarify_margin=0.02), curve)
    assert (record.config.answer_threshold, record.config.clarify_margin) == (0.61, 0.02)
    again = open_store()
    assert again.get_calibration("faq") == curve
    assert again.get_corpus("faq").config.answer_threshold == 0.61
    again.delete_corpus("faq")
    with pytest.raises(NotFound):
        again.get_calibration("faq")


def test_rerank_setting_round_trips_and_survives_reopening(open_store):
    store = open_store()
    assert store.create_corpus("off", CorpusConfig(), fingerprint="m1").config.rerank_enabled is False
    record = store.create_corpus("faq", CorpusConfig(rerank_enabled=True, rerank_top_k=7), fingerprint="m1")
    assert (record.config.rerank_enabled, record.config.rerank_top_k) == (True, 7)
    updated = store.update_corpus("faq", replace(record.config, rerank_enabled=False, rerank_top_k=50))
    assert (updated.config.rerank_enabled, updated.config.rerank_top_k) == (False, 50)
    updated = store.update_corpus("faq", replace(updated.config, rerank_enabled=True))
    # a calibration rewrites the thresholds only; the rerank setting stays as it was
    calibrated = store.save_calibration("faq", replace(updated.config, answer_threshold=0.6), {"curve": []})
    assert (calibrated.config.rerank_enabled, calibrated.config.rerank_top_k) == (True, 50)
    again = open_store()
    assert again.get_corpus("faq").config == calibrated.config
    assert {r.name: r.config.rerank_enabled for r in again.list_corpora()} == {"faq": True, "off": False}


# The corpora table as the releases before the rerank setting created it (SQLite), with one corpus in it.
_SQLITE_BEFORE_RERANK = """CREATE TABLE corpora (
    name TEXT PRIMARY KEY, description TEXT NOT NULL, answer_threshold REAL NOT NULL,
    clarify_margin REAL NOT NULL, default_answer TEXT NOT NULL, generation INTEGER NOT NULL DEFAULT 0,
    fingerprint TEXT NOT NULL, dimension INTEGER, created_at REAL NOT NULL, updated_at REAL NOT NULL);
INSERT INTO corpora VALUES ('old', '', 0.5, 0.05, 'sorry', 0, 'm1', NULL, 1.0, 1.0);"""


def test_a_corpus_from_before_rerank_opens_with_it_off(store_backend, tmp_path, request):
    """A database written before the rerank columns existed is upgraded in place when a store opens it: SQLite
    adds the columns, PostgreSQL applies migration 0003; existing corpora get the default (off, 20)."""
    if store_backend == "sqlite":
        path = tmp_path / "old.sqlite3"
        with sqlite3.connect(path) as db:
            db.executescript(_SQLITE_BEFORE_RERANK)
        store: CorpusStore = SQLiteStore(path)
    else:
        psycopg = pytest.importorskip("psycopg")
        from service.corpus.pg_schema import MIGRATIONS, migrate
        from service.corpus.postgres_store import PostgresStore

        url = request.getfixturevalue("postgres_url")
        before = tmp_path / "migrations"
        before.mkdir()
        for sql in sorted(MIGRATIONS.glob("000[12]_*.sql")):  # the schema as version 2 left it
            (before / sql.name).write_text(sql.read_text(encoding="utf-8"), encoding="utf-8")
        with psycopg.connect(url, autocommit=True) as conn:
            assert migrate(conn, before) == 2
            conn.execute("INSERT INTO corpora (name, description, answer_threshold, clarify_margin, default_answer, "
                         "fingerprint, created_at, updated_at) VALUES ('old', '', 0.5, 0.05, 'sorry', 'm1', 1, 1)")
        store = PostgresStore(url)
        assert store.schema_version >= 3
    try:
        config = store.get_corpus("old").config
        assert (config.rerank_enabled, config.rerank_top_k) == (False, CorpusConfig().rerank_top_k)
        assert (config.answer_threshold, config.default_answer) == (0.5, "sorry")
        assert store.update_corpus("old", replace(config, rerank_enabled=True)).config.rerank_enabled is True
    finally:
        store.close()


@pytest.mark.parametrize("name", ["", "A", "../etc", "a/b", "-x", "x" * 65, "a b", "é"])
def test_bad_corpus_names_are_refused(name):
    with pytest.raises(InvalidInput, match="corpus name"):
        check_corpus_name(name)


def test_good_names_pass():
    assert check_corpus_name("banking77") == "banking77"
    assert check_corpus_name("a" * 64)
    assert ENTRY_ID.fullmatch("CancerGov_0000001_1-1")  # MedQuAD ids are valid entry ids
    assert not ENTRY_ID.fullmatch("../x")
