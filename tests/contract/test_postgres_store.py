"""PostgresStore beyond the shared contract: the change sequence replicas follow (ordered, one per committed write,
none for a failed one, notified), versioned migrations applied once, and fail-fast errors when the server is down."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from service.corpus.store import CorpusConfig, Entry
from service.errors import StoreUnavailable

psycopg = pytest.importorskip("psycopg")
from service.corpus.pg_schema import migrate, migrations  # noqa: E402
from service.corpus.postgres_store import PostgresStore  # noqa: E402

E1 = Entry("e1", "How do I reset my PIN?", ("forgot pin",), "Use the app.")


def vecs(entry: Entry) -> np.ndarray:
    return np.ones((len(entry.texts()), 4), np.float32)


@pytest.fixture
def pair(postgres_url):
    """Two stores on one database, as two replicas hold them."""
    a, b = PostgresStore(postgres_url), PostgresStore(postgres_url)
    yield a, b
    a.close()
    b.close()


def test_every_committed_write_is_one_change_in_commit_order(pair):
    a, b = pair
    assert a.origin != b.origin and a.head_sequence() == 0
    a.create_corpus("faq", CorpusConfig(), fingerprint="m")
    a.upsert_entries("faq", [E1], [vecs(E1)], fingerprint="m")
    b.update_corpus("faq", CorpusConfig(description="x"))
    with pytest.raises(ValueError):  # a failed write leaves no change behind
        b.upsert_entries("faq", [E1], [np.ones((5, 4), np.float32)], fingerprint="m")
    b.delete_entries("faq", ["e1"])
    changes = b.changes_after(0, limit=100)
    assert [(c.seq, c.corpus, c.entry_ids, c.origin) for c in changes] == [
        (1, "faq", None, a.origin), (2, "faq", ("e1",), a.origin), (3, "faq", None, b.origin),
        (4, "faq", ("e1",), b.origin)]
    assert b.head_sequence() == 4 and [c.seq for c in b.changes_after(2, limit=1)] == [3]
    assert all(c.age_s >= 0 for c in changes)


def test_concurrent_writers_get_distinct_gapless_sequence_numbers(pair):
    a, b = pair
    a.create_corpus("faq", CorpusConfig(), fingerprint="m")

    def write(store: PostgresStore, prefix: str) -> None:
        for i in range(20):
            e = Entry(f"{prefix}{i}", f"question {prefix} {i}")
            store.upsert_entries("faq", [e], [vecs(e)], fingerprint="m")

    threads = [threading.Thread(target=write, args=(s, p)) for s, p in ((a, "a"), (b, "b"))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert [c.seq for c in a.changes_after(0, limit=1000)] == list(range(1, 42))


def test_a_commit_notifies_listeners(pair):
    a, b = pair
    assert b.wait_for_change(0.05) is False  # LISTEN is set up on the first wait
    a.create_corpus("faq", CorpusConfig(), fingerprint="m")
    assert b.wait_for_change(10.0) is True


def test_migrations_are_numbered_and_applied_once(postgres_url):
    assert [v for v, _ in migrations()] == list(range(1, len(migrations()) + 1))
    first = PostgresStore(postgres_url)
    second = PostgresStore(postgres_url)  # a second replica starting: nothing left to apply
    assert first.schema_version == second.schema_version == len(migrations())
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        assert migrate(conn) == len(migrations())
        assert conn.execute("SELECT COUNT(*) FROM schema_version").fetchone()[0] == len(migrations())
    first.close()
    second.close()


def test_an_unreachable_server_fails_fast_with_store_unavailable(postgres_cluster, postgres_url):
    store = PostgresStore(postgres_url, connect_timeout_s=2)
    store.create_corpus("faq", CorpusConfig(), fingerprint="m")
    postgres_cluster.stop()
    try:
        with pytest.raises(StoreUnavailable) as caught:
            store.upsert_entries("faq", [E1], [vecs(E1)], fingerprint="m")
        assert caught.value.retry_after_s > 0 and "unreachable" in caught.value.message
        with pytest.raises(StoreUnavailable):
            store.wait_for_change(0.1)
    finally:
        postgres_cluster.start()
    store.upsert_entries("faq", [E1], [vecs(E1)], fingerprint="m")  # reconnects by itself
    assert store.get_entry("faq", "e1") == E1
    store.close()
