"""The corpus rerank setting persists, and a database written before it existed opens with the default (off)."""

from __future__ import annotations

import sqlite3
from dataclasses import replace

from service.corpus.sqlite_store import SQLiteStore
from service.corpus.store import CorpusConfig

OLD_SCHEMA = """CREATE TABLE corpora (
    name TEXT PRIMARY KEY, description TEXT NOT NULL, answer_threshold REAL NOT NULL,
    clarify_margin REAL NOT NULL, default_answer TEXT NOT NULL, generation INTEGER NOT NULL DEFAULT 0,
    fingerprint TEXT NOT NULL, dimension INTEGER, created_at REAL NOT NULL, updated_at REAL NOT NULL);
INSERT INTO corpora VALUES ('old', '', 0.5, 0.05, 'sorry', 0, 'fp', NULL, 1.0, 1.0);"""


def test_rerank_setting_round_trips(tmp_path):
    store = SQLiteStore(tmp_path / "db.sqlite3")
    record = store.create_corpus("faq", CorpusConfig(rerank_enabled=True, rerank_top_k=7), fingerprint="fp")
    assert (record.config.rerank_enabled, record.config.rerank_top_k) == (True, 7)
    updated = store.update_corpus("faq", replace(record.config, rerank_enabled=False))
    assert (updated.config.rerank_enabled, updated.config.rerank_top_k) == (False, 7)
    store.close()
    again = SQLiteStore(tmp_path / "db.sqlite3")
    assert again.get_corpus("faq").config == updated.config
    again.close()


def test_a_database_from_before_rerank_gets_the_default(tmp_path):
    path = tmp_path / "old.sqlite3"
    with sqlite3.connect(path) as db:
        db.executescript(OLD_SCHEMA)
    store = SQLiteStore(path)
    config = store.get_corpus("old").config
    assert (config.rerank_enabled, config.rerank_top_k) == (False, CorpusConfig().rerank_top_k)
    assert config.default_answer == "sorry"
    store.close()
