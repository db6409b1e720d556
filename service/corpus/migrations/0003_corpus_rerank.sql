-- A corpus's match-head rerank setting (issue 12): off, 20 candidates, for every corpus that existed before.
ALTER TABLE corpora
    ADD COLUMN rerank_enabled BOOLEAN NOT NULL DEFAULT FALSE,
    ADD COLUMN rerank_top_k INTEGER NOT NULL DEFAULT 20;
