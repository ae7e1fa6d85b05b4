"""Migration 8: ``assets.field_times`` records when each synced field last changed (for remotes' newest-wins rule)."""

from __future__ import annotations

import json

from sdhub.catalog import Catalog, schema
from sdhub.catalog.db import connect, write_transaction
from sdhub.config import Home


def test_a_schema_7_catalog_gains_field_times_and_a_tag_is_stamped(tmp_home: Home) -> None:
    db = connect(tmp_home.database_path)
    with write_transaction(db):
        for migration in schema.MIGRATIONS[:7]:
            migration(db)
        db.execute("INSERT INTO settings (key, value) VALUES ('schema_version', '7')")
        db.execute("INSERT INTO assets (sha256, kind, size, name, added_at, updated_at) "
                   "VALUES (?, 'lora', 10, 'ink', 't', 't')", ["ab" * 32])
    assert "field_times" not in db["assets"].columns_dict
    db.close()

    with Catalog(tmp_home) as catalog:
        assert schema.schema_version(catalog.db) == len(schema.MIGRATIONS)
        assert catalog.db.execute("SELECT field_times FROM assets").fetchone() == ("{}",)
        catalog.tag("ink", ["bold"])
        times = json.loads(catalog.db.execute("SELECT field_times FROM assets").fetchone()[0])
        assert list(times) == ["tags"] and times["tags"] > "2000"
