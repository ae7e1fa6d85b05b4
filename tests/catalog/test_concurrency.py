"""Two processes (the TUI, a download, a CLI scan) writing the catalog at the same time."""

from __future__ import annotations

import hashlib
import subprocess
import sys
import textwrap

from catalog_homes import stock_from_cache

WORKER = textwrap.dedent("""
    import sys
    from sdhub.catalog import Catalog
    from sdhub.config import open_home

    root, label, sha256 = sys.argv[1:4]
    catalog = Catalog(open_home(root))
    for round in range(2):
        catalog.scan(full=True)
        for i in range(15):
            catalog.tag(sha256, [f"{label}{round}-{i}"])
            catalog.record_test(sha256, {"kind": label, "verdict": "fine", "round": round, "i": i})
    catalog.close()
    print("done", label)
""")


def test_two_processes_scanning_and_writing_at_once_lose_nothing(tmp_path, asset_cache) -> None:
    stocked = stock_from_cache(tmp_path / "home", "sdhub", asset_cache, labels=("lora", "embedding"))
    catalog = stocked.catalog()
    folder = stocked.home.folder("lora")
    data = stocked.paths["lora"].read_bytes()
    for i in range(20):
        (folder / f"variant-{i:02}.safetensors").write_bytes(data + i.to_bytes(4, "little"))
    catalog.scan()
    sha256 = hashlib.sha256(data).hexdigest()
    processes = [
        subprocess.Popen([sys.executable, "-c", WORKER, str(stocked.home.root), label, sha256],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for label in ("a", "b")
    ]
    outputs = [process.communicate(timeout=240) for process in processes]
    for process, (out, err) in zip(processes, outputs):
        assert process.returncode == 0, err
        assert err == "" and out.startswith("done")
    files = [f for a in catalog.list_assets() for f in a.files]
    assert len(files) == len(stocked.paths) + 20 and not any(f.missing for f in files)
    assert len({f.path for f in files}) == len(files)
    asset = catalog.get(sha256)
    assert sorted(asset.tags) == sorted(f"{label}{r}-{i}" for label in "ab" for r in range(2) for i in range(15))
    assert len(catalog.show(sha256).tests) == 60
    catalog.close()
