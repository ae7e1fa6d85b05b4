"""Opening the catalog database: WAL mode, a busy timeout, and the table holding its schema version.

Every connection to ``catalog/sdhub.db`` goes through ``connect`` so the TUI, a download and a
CLI scan can write at the same time without "database is locked" errors.
"""

from __future__ import annotations

import contextlib
import sqlite3
from pathlib import Path
from typing import Iterator

import sqlite_utils

from sdhub.errors import SdhubError

BUSY_TIMEOUT_MS = 30_000


def connect(path: Path) -> sqlite_utils.Database:
    """Open (creating if needed) the catalog database at ``path`` in WAL mode."""
    path.parent.mkdir(parents=True, exist_ok=True)
    connection = sqlite3.connect(str(path), timeout=BUSY_TIMEOUT_MS / 1000, check_same_thread=False)
    try:
        connection.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        connection.execute("PRAGMA journal_mode = WAL")
        # In WAL mode NORMAL never corrupts the database; it only skips an fsync per commit.
        connection.execute("PRAGMA synchronous = NORMAL")
        connection.execute("PRAGMA foreign_keys = ON")
        db = sqlite_utils.Database(connection)
        db.execute("CREATE TABLE IF NOT EXISTS settings (key TEXT PRIMARY KEY, value TEXT)")
    except sqlite3.DatabaseError as error:
        connection.close()
        raise SdhubError(f"cannot open the catalog {path}: {error}; move it away and run `sdhub scan` "
                         "to build a new one") from None
    return db


@contextlib.contextmanager
def write_transaction(db: sqlite_utils.Database) -> Iterator[sqlite_utils.Database]:
    """A write transaction that takes the write lock up front (``BEGIN IMMEDIATE``).

    A deferred transaction that reads first and writes later cannot wait for another writer: SQLite
    fails it at once with "database is locked". Taking the lock at BEGIN lets the busy timeout work.
    """
    db.conn.execute("BEGIN IMMEDIATE")
    try:
        yield db
    except BaseException:
        if db.conn.in_transaction:
            db.conn.execute("ROLLBACK")
        raise
    db.conn.execute("COMMIT")
