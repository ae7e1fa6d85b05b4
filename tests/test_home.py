"""Home resolution and layouts: where sdhub looks for models, and how it recognises installs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sdhub.config import detect_layout, find_home_root, init_home, open_home
from sdhub.errors import HomeError


def make_dirs(root: Path, *folders: str) -> Path:
    for folder in folders:
        (root / folder).mkdir(parents=True, exist_ok=True)
    return root


@pytest.mark.parametrize(
    ("layout", "folders", "expected"),
    [
        ("a1111", ["models/Stable-diffusion", "models/VAE", "models/Lora", "embeddings", "extensions"],
         {"checkpoint": "models/Stable-diffusion", "vae": "models/VAE", "lora": "models/Lora",
          "embedding": "embeddings"}),
        ("comfyui", ["models/checkpoints", "models/vae", "models/loras", "models/embeddings", "custom_nodes"],
         {"checkpoint": "models/checkpoints", "vae": "models/vae", "lora": "models/loras",
          "embedding": "models/embeddings"}),
        ("stabilitymatrix", ["Models/StableDiffusion", "Models/VAE", "Models/Lora", "Models/Embeddings", "Packages"],
         {"checkpoint": "Models/StableDiffusion", "vae": "Models/VAE", "lora": "Models/Lora",
          "embedding": "Models/Embeddings"}),
        ("stabilitymatrix", ["Models/StableDiffusion", "Models/TextualInversion"],
         {"checkpoint": "Models/StableDiffusion", "embedding": "Models/TextualInversion"}),
    ],
)
def test_init_recognises_an_existing_install(tmp_path: Path, run_cli, layout, folders, expected) -> None:
    root = make_dirs(tmp_path / "install", *folders)
    result = run_cli("init", root, "--json")
    assert result.exit_code == 0, result.stderr
    home = json.loads(result.stdout)
    assert home["layout"] == layout
    for kind, folder in expected.items():
        assert home["folders"][kind] == str(root / folder)
    assert (root / "catalog" / "sdhub.db").is_file()
    # The layout is recorded: the home keeps it even when the folders alone would say otherwise.
    assert open_home(root).layout == layout


def test_init_with_layout_creates_the_folders(tmp_path: Path) -> None:
    home = init_home(tmp_path / "new", "comfyui")
    for kind in ("checkpoint", "vae", "lora", "embedding"):
        assert home.folder(kind).is_dir()
    assert home.folder("lora") == tmp_path / "new" / "models" / "loras"


def test_database_is_in_wal_mode(tmp_home) -> None:
    import sqlite3

    connection = sqlite3.connect(tmp_home.database_path)
    assert connection.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_resolution_order(tmp_path: Path) -> None:
    with_catalog = make_dirs(tmp_path / "repo", "catalog", "deep/er")
    explicit = tmp_path / "explicit"
    env_home = tmp_path / "from-env"
    cwd = with_catalog / "deep" / "er"
    assert find_home_root(explicit, environ={"SDHUB_HOME": str(env_home)}, cwd=cwd) == (explicit, "--home")
    assert find_home_root(None, environ={"SDHUB_HOME": str(env_home)}, cwd=cwd) == (env_home, "SDHUB_HOME")
    assert find_home_root(None, environ={}, cwd=cwd) == (with_catalog, "parent folder with catalog/")
    root, source = find_home_root(None, environ={}, cwd=make_dirs(tmp_path / "elsewhere"))
    assert source == "user data dir" and root.name == "sdhub"


def test_home_command_shows_the_resolved_folders(tmp_path: Path, run_cli) -> None:
    root = make_dirs(tmp_path / "comfy", "models/checkpoints")
    result = run_cli("--home", root, "home", "--json")
    assert result.exit_code == 0
    home = json.loads(result.stdout)
    assert home["layout"] == "comfyui"
    assert home["source"] == "--home"
    assert home["folders"]["checkpoint"] == str(root / "models" / "checkpoints")


def test_detect_layout_returns_none_for_an_unrelated_folder(tmp_path: Path) -> None:
    assert detect_layout(make_dirs(tmp_path / "photos", "2024")) is None


def test_a_file_as_home_is_one_line_and_exit_2(tmp_path: Path, run_cli) -> None:
    not_a_folder = tmp_path / "file.txt"
    not_a_folder.write_text("x")
    result = run_cli("--home", not_a_folder, "home")
    assert result.exit_code == 2
    assert result.stderr.count("\n") == 1 and "is a file" in result.stderr
    assert "Traceback" not in result.stderr


def test_an_unwritable_home_is_one_line_and_exit_2(tmp_path: Path, run_cli) -> None:
    # /proc refuses new folders even to root, so this holds whoever runs the tests.
    result = run_cli("init", "/proc/sdhub-home")
    assert result.exit_code == 2
    assert result.stderr.count("\n") == 1 and "sdhub: error:" in result.stderr


def test_open_home_refuses_a_file(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_text("")
    with pytest.raises(HomeError):
        open_home(path)
