"""Opening the catalog database: WAL mode, a busy timeout, and a small settings table.

Every connection to ``catalog/sdhub.db`` goes through ``connect`` so the TUI, a download and a
CLI scan can write at the same time without "database is locked" errors.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import sqlite_utils

BUSY_TIMEOUT_MS = 30_000


def connect(path: Path) -> sqlite_utils.Database:
    """Open (creating if needed) the catalog database at ``path`` in WAL mode."""
    path.parent.mkdir(parents=True, exist_ok=True)
    connection = sqlite3.connect(str(path), timeout=BUSY_TIMEOUT_MS / 1000, check_same_thread=False)
    connection.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    connection.execute("PRAGMA journal_mode = WAL")
    connection.execute("PRAGMA foreign_keys = ON")
    db = sqlite_utils.Database(connection)
    db.execute("CREATE TABLE IF NOT EXISTS settings (key TEXT PRIMARY KEY, value TEXT)")
    return db


def write_setting(path: Path, key: str, value: str) -> None:
    """Store one home-wide setting (such as the layout) in the catalog."""
    db = connect(path)
    try:
        with db.conn:
            db.execute("INSERT INTO settings (key, value) VALUES (?, ?) "
                       "ON CONFLICT(key) DO UPDATE SET value = excluded.value", [key, value])
    finally:
        db.close()


def read_setting(path: Path, key: str) -> str | None:
    """One home-wide setting, or None when the catalog does not have it."""
    db = connect(path)
    try:
        row = db.execute("SELECT value FROM settings WHERE key = ?", [key]).fetchone()
        return row[0] if row else None
    finally:
        db.close()
