"""The catalog: every asset of a home indexed in SQLite."""
