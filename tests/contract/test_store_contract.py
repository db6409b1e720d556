"""The `CorpusStore` contract, written once and run against both stores (SQLite, the embedded default, and
PostgreSQL, shared by replicas): corpora, entries with vectors, atomic writes, durability across reopen, stale-vector
swaps. PostgreSQL only: the change sequence replicas follow, migrations, and failing fast when the server is gone."""

from __future__ import annotations

from collections.abc import Callable

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

@pytest.mark.parametrize("name", ["", "A", "../etc", "a/b", "-x", "x" * 65, "a b", "é"])
def test_bad_corpus_names_are_refused(name):
    with pytest.raises(InvalidInput, match="corpus name"):
        check_corpus_name(name)


def test_good_names_pass():
    assert check_corpus_name("banking77") == "banking77"
    assert check_corpus_name("a" * 64)
    assert ENTRY_ID.fullmatch("CancerGov_0000001_1-1")  # MedQuAD ids are valid entry ids
    assert not ENTRY_ID.fullmatch("../x")
