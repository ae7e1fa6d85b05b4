"""`sdhub wildcards` lists the wildcard files in the home with their entry counts, a file added by hand too."""

from __future__ import annotations

import json


def test_wildcards_lists_files_with_their_entry_counts(run_cli, tmp_home) -> None:
    folder = tmp_home.folder("wildcards")
    (folder / "hair").mkdir(parents=True)
    (folder / "hair" / "style.txt").write_text("# a comment\nlong hair\n\nshort hair\nponytail\n")
    (folder / "outfits.yaml").write_text("outfits:\n  casual: [hoodie, jeans]\n  formal: [suit, dress, tuxedo]\n")

    listed = run_cli("--home", tmp_home.root, "wildcards", "--json")
    assert listed.exit_code == 0, listed.stderr
    files = {item["path"]: item for item in json.loads(listed.stdout)}
    assert {path: item["entries"] for path, item in files.items()} == {
        str(folder / "hair" / "style.txt"): 3, str(folder / "outfits.yaml"): 5}
    assert files[str(folder / "outfits.yaml")]["wildcards"] == [
        {"name": "outfits/casual", "entries": 2}, {"name": "outfits/formal", "entries": 3}]

    (folder / "weather.txt").write_text("sun\nrain\n")
    table = run_cli("--home", tmp_home.root, "wildcards", "--format", "tsv")
    assert table.exit_code == 0, table.stderr
    rows = [line.split("\t") for line in table.stdout.strip().splitlines()]
    assert rows[0] == ["file", "format", "entries", "wildcards"]
    assert [(row[0], row[2]) for row in rows[1:]] == [("hair/style.txt", "3"), ("outfits.yaml", "5"), ("weather.txt", "2")]
    assert "__outfits/formal__ (3)" in rows[2][3]
    assert "3 wildcard files, 10 entries" in table.stderr


def test_an_empty_home_lists_nothing(run_cli, tmp_home) -> None:
    result = run_cli("--home", tmp_home.root, "wildcards", "--json")
    assert result.exit_code == 0 and json.loads(result.stdout) == []
