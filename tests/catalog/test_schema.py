"""The database itself: versioned, documented, and readable by the tools people query it with."""

from __future__ import annotations

import re
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
import sqlite_utils

from sdhub.catalog import Catalog
from sdhub.catalog.db import connect
from sdhub.catalog.schema import MIGRATIONS, migrate, schema_version
from sdhub.errors import HomeError

DOCS = Path(__file__).resolve().parents[2] / "docs" / "catalog.md"


def test_migrations_are_applied_once_and_recorded(tmp_path: Path) -> None:
    db = connect(tmp_path / "c.db")
    assert schema_version(db) == 0
    assert migrate(db) == len(MIGRATIONS)
    assert migrate(db) == len(MIGRATIONS)
    assert schema_version(db) == len(MIGRATIONS)
    assert {"assets", "files", "folder_files", "hashes", "remote", "previews", "tests", "roots", "lineage",
            "assets_fts"} <= set(db.table_names())


def test_a_catalog_from_a_newer_sdhub_is_refused(tmp_path: Path) -> None:
    db = connect(tmp_path / "c.db")
    migrate(db)
    db.execute("UPDATE settings SET value = '999' WHERE key = 'schema_version'")
    db.conn.commit()
    with pytest.raises(HomeError, match="newer sdhub"):
        migrate(db)


def test_a_catalog_of_the_first_schema_is_upgraded_in_place(tmp_path: Path) -> None:
    from sdhub.catalog.db import write_transaction
    from sdhub.config import init_home

    home = init_home(tmp_path / "home", "sdhub")
    db = connect(home.database_path)
    with write_transaction(db):
        MIGRATIONS[0](db)
        db.execute("INSERT INTO settings (key, value) VALUES ('schema_version', '1')")
        db.execute("INSERT INTO assets (sha256, kind, size, name, added_at, updated_at) "
                   "VALUES (?, 'lora', 3, 'old', 'then', 'then')", ["a" * 64])
    db.close()
    with Catalog(home) as catalog:
        assert schema_version(catalog.db) == len(MIGRATIONS) > 1
        assert "folder_files" in catalog.db.table_names()
        assert catalog.find("old").sha256 == "a" * 64


def test_every_table_and_column_is_documented(tmp_path: Path) -> None:
    text = DOCS.read_text()
    db = connect(tmp_path / "c.db")
    migrate(db)
    for table in ("settings", "assets", "files", "folder_files", "hashes", "remote", "previews", "tests", "roots",
                  "lineage"):
        section = re.search(rf"^### `{table}`\n(.*?)(?=^### |\Z)", text, re.S | re.M)
        assert section, f"docs/catalog.md has no section for {table}"
        for column in db[table].columns_dict:
            assert f"`{column}`" in section.group(1), f"{table}.{column} is not documented"


@pytest.fixture
def scanned_database(catalog: Catalog) -> Path:
    catalog.scan()
    catalog.tag("inkstyle", ["calligraphy"])
    return catalog.home.database_path


def test_the_sqlite3_shell_reads_it(scanned_database: Path) -> None:
    shell = shutil.which("sqlite3")
    if shell is None:
        pytest.skip("the sqlite3 command-line shell is not installed (Debian: apt-get install sqlite3)")
    result = subprocess.run(
        [shell, "-readonly", str(scanned_database),
         "SELECT count(*) FROM assets;"
         "SELECT a.name FROM assets_fts JOIN assets a ON a.id = assets_fts.rowid WHERE assets_fts MATCH 'callig*';"
         "SELECT count(*) FROM hashes WHERE scheme = 'autov2';"],
        capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["6", "inkstyle", "6"]


def test_sqlite_utils_reads_it(scanned_database: Path) -> None:
    db = sqlite_utils.Database(scanned_database)
    assert db["assets"].count == 6
    assert [row["name"] for row in db["assets"].search("calligraphy")] == ["inkstyle"]
    cli = Path(sys.executable).with_name("sqlite-utils")
    result = subprocess.run([str(cli), "query", str(scanned_database),
                             "select kind, count(*) as n from assets group by kind order by kind", "--csv"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[0] == "kind,n"
    assert "checkpoint,3" in result.stdout.splitlines()


def test_the_database_is_in_wal_mode_with_a_busy_timeout(scanned_database: Path) -> None:
    connection = sqlite3.connect(scanned_database)
    assert connection.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    db = connect(scanned_database)
    assert db.execute("PRAGMA busy_timeout").fetchone()[0] >= 5000


def test_a_corrupt_catalog_is_one_clear_error(tmp_home, run_cli) -> None:
    tmp_home.database_path.write_bytes(b"this is not a database" * 100)
    for suffix in ("-wal", "-shm"):
        Path(str(tmp_home.database_path) + suffix).unlink(missing_ok=True)
    result = run_cli("--home", tmp_home.root, "ls")
    assert result.exit_code == 1
    assert result.stderr.startswith("sdhub: error: cannot open the catalog") and result.stderr.count("\n") == 1
