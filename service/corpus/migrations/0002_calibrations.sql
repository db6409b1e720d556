-- A corpus's last calibration (thresholds + the precision/coverage curve), as JSON text like the SQLite store.
CREATE TABLE calibrations (
    corpus TEXT PRIMARY KEY REFERENCES corpora(name) ON DELETE CASCADE, body TEXT NOT NULL,
    updated_at DOUBLE PRECISION NOT NULL);
