"""PostgreSQL connections and schema migrations for `PostgresStore`.

Migrations are the numbered SQL files in `migrations/`, applied in order at start-up by `migrate`, each in its own
transaction, under an advisory lock so replicas starting together apply each one exactly once. Applied versions
are recorded in `schema_version`.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

import psycopg

from service.errors import StoreUnavailable

logger = logging.getLogger(__name__)

MIGRATIONS = Path(__file__).with_name("migrations")
_MIGRATION_LOCK = 0x466C69704D617463  # "FlipMatc": any constant shared by every replica
_NAME = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")


def connect(url: str, *, connect_timeout_s: float, statement_timeout_s: float) -> psycopg.Connection:
    """An autocommit connection that fails fast: bounded connect, statement timeout, TCP keepalives and a TCP user
    timeout (a dead or frozen peer is noticed in seconds, even mid-query, instead of the kernel's minutes)."""
    try:
        return psycopg.connect(
            url, autocommit=True, connect_timeout=max(1, round(connect_timeout_s)),
            options=f"-c statement_timeout={int(statement_timeout_s * 1000)}",
            keepalives=1, keepalives_idle=5, keepalives_interval=2, keepalives_count=2,
            tcp_user_timeout=int((statement_timeout_s + connect_timeout_s) * 1000),
        )
    except psycopg.OperationalError as err:
        raise unavailable(err) from err


def unavailable(err: Exception) -> StoreUnavailable:
    """The client-facing error for a database we cannot reach (the driver's text goes to the log only)."""
    logger.warning("corpus database unavailable: %s", str(err).strip().splitlines()[0] if str(err) else err)
    return StoreUnavailable("the corpus database is unreachable; searches still work, writes can be retried "
                            "shortly", retry_after_s=2)


def migrations(folder: Path = MIGRATIONS) -> list[tuple[int, str]]:
    """(version, SQL) for every migration file, in version order; versions must be 1, 2, 3, ..."""
    found = sorted((int(m.group(1)), p) for p in folder.iterdir() if (m := _NAME.match(p.name)))
    versions = [v for v, _ in found]
    if versions != list(range(1, len(found) + 1)):
        raise RuntimeError(f"migration versions must be 1..N without gaps, found {versions} in {folder}")
    return [(v, p.read_text(encoding="utf-8")) for v, p in found]


def migrate(conn: psycopg.Connection, folder: Path = MIGRATIONS) -> int:
    """Apply the migrations this database has not seen; returns the schema version. Safe to run concurrently."""
    conn.execute("SELECT pg_advisory_lock(%s)", (_MIGRATION_LOCK,))
    try:
        conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER PRIMARY KEY, "
                     "applied_at TIMESTAMPTZ NOT NULL DEFAULT now())")
        row = conn.execute("SELECT COALESCE(MAX(version), 0) FROM schema_version").fetchone()
        current = int(row[0]) if row else 0
        for version, sql in migrations(folder):
            if version <= current:
                continue
            with conn.transaction():
                conn.execute(sql.encode())  # the whole file in one transaction: all of it or nothing
                conn.execute("INSERT INTO schema_version (version) VALUES (%s)", (version,))
            logger.info("schema migration applied version=%d", version)
            current = version
        return current
    finally:
        conn.execute("SELECT pg_advisory_unlock(%s)", (_MIGRATION_LOCK,))
