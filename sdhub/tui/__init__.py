"""The sdhub terminal UI (Textual): screens over the same library the CLI calls."""
