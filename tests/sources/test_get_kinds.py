"""``sdhub get`` of every kind of download: each lands in its kind's folder, and nothing is thrown away.

A Civitai model type alone places a file (its tensors win where they tell another kind); a type no
kind fits (MotionModule) and a file whose kind cannot be told are kept in the home's downloads/
folder, catalogued as "other", with a message saying where they are and how to file them.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from sdhub.catalog import Catalog
from sdhub.catalog.kind_choice import recorded_choice
from sdhub.config import Home, init_home
from sdhub.testing.civitai_server import CivitaiServer, civitai_model


#: A kohya LoRA module name: its lora_down/lora_up tensors say "lora" whatever their shapes.
_KOHYA = "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q"


def _tensors(path: Path, names: list[str]) -> Path:
    save_file({name: torch.full((4, 4), float(number)) for number, name in enumerate(names)}, str(path))
    return path


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("kinds")
    upscaler = folder / "upscaler.pth"
    # An ESRGAN-style upscaler as the community ships them: a .pth pickle of its state dict.
    torch.save({"conv_first.weight": torch.ones(4, 3, 3, 3), "conv_first.bias": torch.zeros(4),
                "conv_last.weight": torch.ones(3, 4, 3, 3), "conv_last.bias": torch.zeros(3)}, upscaler)
    return {
        "controlnet": _tensors(folder / "controlnet.safetensors", [
            "control_model.input_hint_block.0.weight", "control_model.zero_convs.0.0.weight"]),
        "upscaler": upscaler,
        "motion": _tensors(folder / "motion.safetensors", [
            "down_blocks.0.motion_modules.0.temporal_transformer.proj_in.weight"]),
        "mystery": _tensors(folder / "mystery.safetensors", ["mystery.weight", "mystery.bias"]),
        "lora": _tensors(folder / "lora.safetensors", [f"{_KOHYA}.lora_down.weight", f"{_KOHYA}.lora_up.weight"]),
    }


@pytest.fixture
def site(civitai: CivitaiServer, made: dict[str, Path]) -> CivitaiServer:
    civitai.add_model(civitai_model(801, 901, 1001, name="Canny Control", file_name="control_canny.safetensors",
                                    model_type="Controlnet"), {1001: made["controlnet"]})
    civitai.add_model(civitai_model(802, 902, 1002, name="Sharp 4x", file_name="4x_sharp.pth", model_type="Upscaler",
                                    base="Upscaler", file_format="PickleTensor"), {1002: made["upscaler"]})
    civitai.add_model(civitai_model(803, 903, 1003, name="Motion v3", file_name="mm_v3.safetensors",
                                    model_type="MotionModule"), {1003: made["motion"]})
    # Published as a checkpoint, but its tensors are a LoRA's: the tensors win.
    civitai.add_model(civitai_model(804, 904, 1004, name="Mislabelled", file_name="mislabelled.safetensors",
                                    model_type="Checkpoint"), {1004: made["lora"]})
    return civitai


def _get(run_cli, home: Home, ref: str, *extra: str) -> tuple[dict, str]:
    result = run_cli("--home", home.root, "get", ref, "--json", "--no-sidecars", *extra)
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout)["results"][0], result.stderr


@pytest.mark.parametrize("layout", ["sdhub", "a1111", "comfyui", "stabilitymatrix"])
def test_a_civitai_controlnet_lands_in_the_controlnet_folder(site: CivitaiServer, tmp_path: Path, run_cli,
                                                               made, layout: str) -> None:
    home = init_home(tmp_path / layout, layout)
    data, stderr = _get(run_cli, home, "civitai:801@901")
    path = Path(data["path"])
    assert path == home.folder("controlnet") / "control_canny.safetensors"
    assert path.read_bytes() == made["controlnet"].read_bytes()
    assert data["kind"] == "controlnet" and f"saved: {path}" in stderr
    with Catalog(home) as catalog:
        asset = catalog.get(data["sha256"])
        inspect = catalog.db.execute("SELECT inspect FROM assets WHERE id = ?", [asset.id]).fetchone()[0]
    assert asset.kind == "controlnet"
    choice = recorded_choice(inspect)
    assert choice == {"kind": "controlnet", "by": "civitai", "evidence": "Civitai model type Controlnet"}


def test_a_civitai_upscaler_lands_in_the_upscaler_folder(site: CivitaiServer, tmp_path: Path, run_cli) -> None:
    for layout, folder in (("a1111", "models/ESRGAN"), ("comfyui", "models/upscale_models"),
                           ("stabilitymatrix", "Models/ESRGAN"), ("sdhub", "models/upscalers")):
        home = init_home(tmp_path / layout, layout)
        data, stderr = _get(run_cli, home, "https://civitai.com/models/802")
        path = Path(data["path"])
        # The pickle went through the safe converter, as every pickle get brings does.
        assert path == home.root / folder / "4x_sharp.safetensors", stderr
        assert path.is_file() and data["kind"] == "upscaler"
        assert f"saved: {path}" in stderr
        with Catalog(home) as catalog:
            assert catalog.get(data["sha256"]).kind == "upscaler"


def test_a_civitai_type_with_no_folder_is_kept_in_downloads(site: CivitaiServer, tmp_home: Home, run_cli,
                                                              made) -> None:
    data, stderr = _get(run_cli, tmp_home, "civitai:803@903")
    kept = tmp_home.downloads_dir / "mm_v3.safetensors"
    assert data["path"] == str(kept) and data["kind"] == "other"
    assert kept.read_bytes() == made["motion"].read_bytes()
    message = " ".join(stderr.split())  # the terminal wraps long lines
    assert "Civitai model type 'MotionModule' has no folder in a home" in message
    assert f"kept in {kept}" in message and "sdhub mv mm_v3.safetensors --to FOLDER" in message
    with Catalog(tmp_home) as catalog:
        asset = catalog.get(data["sha256"])
        assert asset.kind == "other" and asset.files[0].path == str(kept)
        # A scan keeps it: downloads/ is not walked (other things land there), but a catalogued file stays.
        report = catalog.scan()
        assert report.files_missing == 0 and not catalog.get(data["sha256"]).missing


def test_the_tensors_win_over_the_civitai_type(site: CivitaiServer, tmp_home: Home, run_cli) -> None:
    data, stderr = _get(run_cli, tmp_home, "civitai:804@904")
    assert data["kind"] == "lora"
    assert Path(data["path"]) == tmp_home.folder("lora") / "mislabelled.safetensors"
    assert "Civitai calls it Checkpoint; its tensors say lora" in " ".join(stderr.split())
    assert not (tmp_home.folder("checkpoint") / "mislabelled.safetensors").exists()


def test_a_plain_url_of_an_unknown_kind_is_kept_and_can_be_filed(site: CivitaiServer, tmp_home: Home, run_cli,
                                                                 made) -> None:
    site.served(1003).path = made["mystery"]  # a file whose tensors no detector knows
    url = site.storage_location(site.served(1003))  # any http server; here the storage host
    data, stderr = _get(run_cli, tmp_home, url)
    kept = tmp_home.downloads_dir / "mm_v3.safetensors"  # the storage host names the file
    assert data["path"] == str(kept) and data["kind"] == "other" and data["source"] == "url"
    assert kept.read_bytes() == made["mystery"].read_bytes()
    message = " ".join(stderr.split())
    assert "cannot tell what kind of model mm_v3.safetensors is" in message
    assert f"kept in {kept} and catalogued as other" in message
    assert "sdhub mv mm_v3.safetensors --kind KIND" in message and "--kind to get" in message

    moved = run_cli("--home", tmp_home.root, "mv", "mm_v3.safetensors", "--kind", "controlnet")
    assert moved.exit_code == 0, moved.stderr
    filed = tmp_home.folder("controlnet") / "mm_v3.safetensors"
    assert filed.read_bytes() == made["mystery"].read_bytes() and not kept.exists()
    with Catalog(tmp_home) as catalog:
        assert catalog.get(data["sha256"]).kind == "controlnet"


def test_get_kind_accepts_every_kind(site: CivitaiServer, tmp_home: Home, run_cli) -> None:
    data, _ = _get(run_cli, tmp_home, "civitai:803@903", "--kind", "ip_adapter")
    assert Path(data["path"]) == tmp_home.folder("ip-adapter") / "mm_v3.safetensors"
    assert data["kind"] == "ip-adapter"
    wrong = run_cli("--home", tmp_home.root, "get", "civitai:803@903", "--kind", "motion")
    assert wrong.exit_code == 2 and "unknown kind 'motion'" in wrong.stderr and "hypernetwork" in wrong.stderr


def test_an_upscaler_goes_to_the_a1111_folder_of_its_architecture(civitai: CivitaiServer, tmp_path: Path,
                                                                   run_cli) -> None:
    from sdhub.models.detect_upscaler import _spandrel

    if _spandrel() is None:
        pytest.skip("spandrel (the 'upscalers' extra) is not installed")
    from sdhub.testing import aux_models

    # A1111 and Forge load a DAT model only from models/DAT (its architecture must match the folder's).
    dat = aux_models.upscaler(tmp_path / "dat.pth", "dat", scale=2)
    civitai.add_model(civitai_model(805, 905, 1005, name="DAT 2x", file_name="2x_dat.pth", model_type="Upscaler",
                                    base="Upscaler", file_format="PickleTensor"), {1005: dat})
    home = init_home(tmp_path / "webui", "a1111")
    data, stderr = _get(run_cli, home, "civitai:805@905")
    assert Path(data["path"]).parent == home.root / "models" / "DAT", stderr
    assert data["kind"] == "upscaler"
    assert list((home.root / "models" / "ESRGAN").iterdir()) == []


def test_civitai_sync_gives_a_file_of_unknown_kind_its_civitai_kind(civitai: CivitaiServer, tmp_home: Home, run_cli,
                                                                    made) -> None:
    civitai.add_model(civitai_model(806, 906, 1006, name="Odd Control", file_name="odd_control.safetensors",
                                    model_type="Controlnet"), {1006: made["mystery"]})
    path = tmp_home.folder("checkpoint") / "odd.safetensors"
    path.write_bytes(made["mystery"].read_bytes())
    assert run_cli("--home", tmp_home.root, "scan").exit_code == 0
    with Catalog(tmp_home) as catalog:
        assert catalog.find("odd").kind == "other"
    synced = run_cli("--home", tmp_home.root, "civitai", "sync", "--json", "--no-sidecars")
    assert synced.exit_code == 0, synced.stderr
    assert [m["version_id"] for m in json.loads(synced.stdout)["matched"]] == [906]
    with Catalog(tmp_home) as catalog:
        asset = catalog.find("odd.safetensors")
        inspect = catalog.db.execute("SELECT inspect FROM assets WHERE id = ?", [asset.id]).fetchone()[0]
    assert asset.kind == "controlnet"
    assert recorded_choice(inspect)["evidence"] == "Civitai model type Controlnet"
    assert path.is_file()  # sync records what it learns; filing the file stays the user's move


@pytest.mark.parametrize("model_type, kind", [
    ("Checkpoint", "checkpoint"), ("TextualInversion", "embedding"), ("Hypernetwork", "hypernetwork"),
    ("LORA", "lora"), ("LoCon", "lora"), ("DoRA", "lora"), ("VAE", "vae"), ("Controlnet", "controlnet"),
    ("Upscaler", "upscaler"),
])
def test_each_civitai_type_places_a_file_its_tensors_do_not_tell(civitai: CivitaiServer, tmp_home: Home, run_cli,
                                                                 made, model_type: str, kind: str) -> None:
    civitai.add_model(civitai_model(810, 910, 1010, name=f"A {model_type}", file_name="typed.safetensors",
                                    model_type=model_type), {1010: made["mystery"]})
    data, stderr = _get(run_cli, tmp_home, "civitai:810@910")
    assert data["kind"] == kind
    assert Path(data["path"]) == tmp_home.folder(kind) / "typed.safetensors"
    assert Path(data["path"]).read_bytes() == made["mystery"].read_bytes()
