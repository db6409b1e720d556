-- Corpora, entries and their vectors: the same tables as the SQLite store, plus the change log replicas follow.
CREATE TABLE corpora (
    name TEXT PRIMARY KEY, description TEXT NOT NULL, answer_threshold DOUBLE PRECISION NOT NULL,
    clarify_margin DOUBLE PRECISION NOT NULL, default_answer TEXT NOT NULL, generation BIGINT NOT NULL DEFAULT 0,
    fingerprint TEXT NOT NULL, dimension INTEGER, created_at DOUBLE PRECISION NOT NULL,
    updated_at DOUBLE PRECISION NOT NULL);
-- alt_questions and metadata are JSON text, as in SQLite: kept byte for byte (jsonb would reorder keys).
CREATE TABLE entries (
    corpus TEXT NOT NULL REFERENCES corpora(name) ON DELETE CASCADE, id TEXT NOT NULL,
    question TEXT NOT NULL, alt_questions TEXT NOT NULL, answer TEXT NOT NULL, metadata TEXT NOT NULL,
    updated_at DOUBLE PRECISION NOT NULL, PRIMARY KEY (corpus, id));
-- vid comes from a sequence, so an id is never reused (a tombstoned HNSW id can never come back).
CREATE TABLE vectors (
    vid BIGSERIAL PRIMARY KEY, corpus TEXT NOT NULL, entry_id TEXT NOT NULL, ord INTEGER NOT NULL,
    text TEXT NOT NULL, model TEXT NOT NULL, vector BYTEA NOT NULL,
    FOREIGN KEY (corpus, entry_id) REFERENCES entries(corpus, id) ON DELETE CASCADE);
CREATE INDEX vectors_by_entry ON vectors(corpus, entry_id);
-- The change sequence: one row, bumped inside every write transaction. Its row lock is held until commit, so
-- sequence order is commit order and a follower that has applied N has seen every change <= N.
CREATE TABLE change_sequence (one BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (one), seq BIGINT NOT NULL);
INSERT INTO change_sequence VALUES (TRUE, 0);
-- entry_ids NULL: a corpus-level change (created, settings, deleted, re-embedded); else the entries touched.
CREATE TABLE changes (
    seq BIGINT PRIMARY KEY, corpus TEXT NOT NULL, entry_ids TEXT, origin TEXT NOT NULL,
    committed_at DOUBLE PRECISION NOT NULL);
