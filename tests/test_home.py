"""Home resolution and layouts: where sdhub looks for models, and how it recognises installs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sdhub.config import config_path, detect_layout, find_home_root, init_home, open_home, user_data_home
from sdhub.errors import HomeError


def make_dirs(root: Path, *folders: str) -> Path:
    root.mkdir(parents=True, exist_ok=True)
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

    from sdhub.catalog import Catalog

    Catalog(tmp_home).close()
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


# -- a home is never a surprise ---------------------------------------------------------------------


@pytest.mark.parametrize("command", [["ls"], ["scan"], ["home"], ["show", "x"], ["clean"]])
def test_a_mistyped_home_is_refused_and_nothing_is_created(tmp_path: Path, run_cli, command) -> None:
    typo = tmp_path / "a" / "typo"
    result = run_cli("--home", typo, *command)
    assert result.exit_code == 2, result.stdout + result.stderr
    assert result.stderr.count("\n") == 1 and str(typo) in result.stderr and "--home" in result.stderr
    assert "init --create" in result.stderr
    assert not (tmp_path / "a").exists()


def test_a_mistyped_sdhub_home_is_refused_too(tmp_path: Path, run_cli, monkeypatch) -> None:
    monkeypatch.setenv("SDHUB_HOME", str(tmp_path / "typo"))
    result = run_cli("ls")
    assert result.exit_code == 2 and "SDHUB_HOME" in result.stderr
    assert not (tmp_path / "typo").exists()


def test_reading_commands_make_no_catalog_in_a_plain_folder_but_scan_does(tmp_path: Path, run_cli) -> None:
    webui = make_dirs(tmp_path / "webui", "models/Stable-diffusion")
    listing = run_cli("--home", webui, "ls")
    assert listing.exit_code == 2
    assert "not an sdhub home yet" in listing.stderr and f"sdhub init {webui}" in listing.stderr
    assert not (webui / "catalog").exists()
    assert run_cli("--home", webui, "scan").exit_code == 0
    assert (webui / "catalog" / "sdhub.db").is_file()
    assert json.loads((webui / "catalog" / "settings.json").read_text())["layout"] == "a1111"
    assert run_cli("--home", webui, "ls").exit_code == 0


def test_init_on_a_missing_path_needs_create(tmp_path: Path, run_cli) -> None:
    new = tmp_path / "new-home"
    refused = run_cli("init", new)
    assert refused.exit_code == 2 and "--create" in refused.stderr and str(new) in refused.stderr
    assert not new.exists()
    created = run_cli("init", new, "--create", "--json")
    assert created.exit_code == 0, created.stderr
    assert json.loads(created.stdout)["layout"] == "sdhub"
    assert (new / "catalog" / "sdhub.db").is_file() and (new / "models").is_dir()
    assert json.loads((new / "catalog" / "settings.json").read_text()) == {"layout": "sdhub"}


def test_init_says_how_to_use_the_home_from_elsewhere_and_can_make_it_the_default(tmp_path: Path, run_cli) -> None:
    webui = make_dirs(tmp_path / "webui", "models/Stable-diffusion")
    elsewhere = make_dirs(tmp_path / "elsewhere")
    said = run_cli("init", webui)
    assert said.exit_code == 0
    assert f"--home {webui}" in said.stderr and f"SDHUB_HOME={webui}" in said.stderr
    assert f"sdhub init {webui} --default" in said.stderr
    # Without --default another folder still gets the user data dir, which does not exist: say so.
    before = run_cli("ls", cwd=elsewhere)
    assert before.exit_code == 2 and "no sdhub home yet" in before.stderr and "--default" in before.stderr

    made_default = run_cli("init", webui, "--default", "--json")
    assert made_default.exit_code == 0 and json.loads(made_default.stdout)["default"] is True
    stored = json.loads(config_path().read_text())
    assert stored["default_home"] == str(webui)
    home = json.loads(run_cli("home", "--json", cwd=elsewhere).stdout)
    assert (home["root"], home["source"], home["layout"]) == (str(webui), "default home", "a1111")
    shown = run_cli("home", cwd=elsewhere).stdout.splitlines()
    assert [line.split()[-1] for line in shown if line.startswith("default home")] == [str(webui)]
    # --home, SDHUB_HOME and a parent folder holding catalog/ still come first.
    other = make_dirs(tmp_path / "other", "catalog")
    assert json.loads(run_cli("home", "--json", cwd=other).stdout)["root"] == str(other)
    assert json.loads(run_cli("--home", other, "home", "--json", cwd=elsewhere).stdout)["root"] == str(other)


def test_a_default_home_that_went_away_is_named(tmp_path: Path, run_cli) -> None:
    gone = tmp_path / "gone"
    assert run_cli("init", gone, "--create", "--default").exit_code == 0
    gone.joinpath("catalog", "sdhub.db").unlink()
    for path in sorted(gone.rglob("*"), reverse=True):
        path.unlink() if path.is_file() else path.rmdir()
    gone.rmdir()
    result = run_cli("ls", cwd=make_dirs(tmp_path / "elsewhere"))
    assert result.exit_code == 2
    assert "the default home" in result.stderr and str(gone) in result.stderr and str(config_path()) in result.stderr


def test_an_empty_listing_names_the_home_and_how_to_choose_another(tmp_path: Path, run_cli) -> None:
    elsewhere = make_dirs(tmp_path / "elsewhere")
    assert run_cli("init", "--create", cwd=elsewhere).exit_code == 0  # the user data dir
    result = run_cli("ls", cwd=elsewhere)
    assert result.exit_code == 0
    note = " ".join(result.stderr.split())
    assert str(user_data_home()) in note and "user data dir" in note
    assert "--home" in note and "SDHUB_HOME" in note and "init DIR --default" in note


@pytest.mark.parametrize(("present", "asked", "found", "marker"), [
    (["models/Stable-diffusion", "models/Lora"], "comfyui", "a1111", "models/Stable-diffusion"),
    (["models/checkpoints"], "sdhub", "comfyui", "models/checkpoints"),
    (["Models/StableDiffusion"], "a1111", "stabilitymatrix", "Models/StableDiffusion"),
])
def test_a_layout_that_contradicts_the_folders_is_an_error_naming_what_was_found(
        tmp_path: Path, run_cli, present, asked, found, marker) -> None:
    root = make_dirs(tmp_path / "install", *present)
    before = sorted(p.relative_to(root) for p in root.rglob("*"))
    result = run_cli("init", root, "--layout", asked)
    assert result.exit_code == 2
    assert result.stderr.count("\n") == 1
    assert f"--layout {asked}" in result.stderr and marker in result.stderr and found in result.stderr
    assert sorted(p.relative_to(root) for p in root.rglob("*")) == before  # no empty folders of the wrong layout


def test_a_layout_that_contradicts_the_recorded_one_is_an_error(tmp_path: Path, run_cli) -> None:
    root = tmp_path / "mine"
    assert run_cli("init", root, "--create", "--layout", "comfyui").exit_code == 0
    result = run_cli("init", root, "--layout", "sdhub")
    assert result.exit_code == 2 and "comfyui" in result.stderr and "settings.json" in result.stderr
    assert run_cli("init", root, "--layout", "comfyui").exit_code == 0  # the same layout again is fine


def test_a_layout_for_a_new_or_plain_folder_is_taken(tmp_path: Path, run_cli) -> None:
    root = make_dirs(tmp_path / "plain", "models", "embeddings")  # shared by every layout: no evidence
    result = run_cli("init", root, "--layout", "a1111", "--json")
    assert result.exit_code == 0, result.stderr
    assert (root / "models" / "Stable-diffusion").is_dir()


def test_a_layout_recorded_in_an_old_catalog_moves_to_the_settings_file(tmp_path: Path) -> None:
    import sqlite3

    root = make_dirs(tmp_path / "old-home", "catalog")
    connection = sqlite3.connect(root / "catalog" / "sdhub.db")
    connection.execute("CREATE TABLE settings (key TEXT PRIMARY KEY, value TEXT)")
    connection.execute("INSERT INTO settings VALUES ('layout', 'comfyui')")
    connection.commit()
    connection.close()
    assert open_home(root).layout == "comfyui"  # the folders alone would say nothing
    assert json.loads((root / "catalog" / "settings.json").read_text()) == {"layout": "comfyui"}


def test_the_home_settings_do_not_come_from_the_catalog_module(tmp_path: Path) -> None:
    import subprocess
    import sys

    root = init_home(tmp_path / "h", "comfyui").root
    code = ("import sys; from sdhub.config import open_home; "
            f"print(open_home({str(root)!r}).layout, any(m.startswith('sdhub.catalog') for m in sys.modules))")
    shown = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert shown.stdout.split() == ["comfyui", "False"]
