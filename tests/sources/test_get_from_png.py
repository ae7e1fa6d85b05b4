"""``sdhub get --from-png``: the models an image names, found in the library or fetched from the imitation Civitai."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest
from PIL import Image
from PIL.PngImagePlugin import PngInfo

from sdhub.catalog import Catalog
from sdhub.config import Home, init_home
from sdhub.generate.infotext import Infotext, save_png_with_parameters
from sdhub.testing import factory
from sdhub.testing.civitai_server import CivitaiServer, civitai_model

CHECKPOINT, LORA, EMBEDDING = 10001, 20001, 30001  # Civitai file ids
UNKNOWN_LORA_HASH = "0123456789ab"


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    import torch
    from safetensors.torch import load_file, save_file

    folder = tmp_path_factory.mktemp("from-png-models")
    # A learnt-looking CLIP final-norm bias, as tests/cli/test_generate_cli.py gives the tiny model.
    state = load_file(str(factory.sd1_checkpoint(folder / "factory.safetensors")))
    key = "cond_stage_model.transformer.text_model.final_layer_norm.bias"
    state[key] = torch.randn(state[key].shape, generator=torch.Generator().manual_seed(3)) * 0.5
    save_file(state, str(folder / "tinymix_v1.safetensors"))
    return {"checkpoint": folder / "tinymix_v1.safetensors",
            "lora": factory.lora(folder / "detail_tweaker.safetensors"),
            "embedding": factory.embedding(folder / "easyneg.safetensors", fmt="safetensors")}


@pytest.fixture
def site(civitai: CivitaiServer, made: dict[str, Path]) -> CivitaiServer:
    civitai.add_model(civitai_model(100, 1000, CHECKPOINT, name="TinyMix", file_name="tinymix_v1.safetensors",
                                    model_type="Checkpoint"), {CHECKPOINT: made["checkpoint"]})
    civitai.add_model(civitai_model(200, 2000, LORA, name="Detail Tweaker", file_name="detail_tweaker.safetensors"),
                      {LORA: made["lora"]})
    civitai.add_model(civitai_model(300, 3000, EMBEDDING, name="EasyNeg", file_name="easyneg.safetensors",
                                    model_type="TextualInversion", trained_words=("easyneg",)),
                      {EMBEDDING: made["embedding"]})
    return civitai


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def addnet_short(path: Path) -> str:
    """A1111's LoRA hash, computed here on its own: SHA-256 of the bytes after the safetensors header."""
    data = path.read_bytes()
    return hashlib.sha256(data[8 + int.from_bytes(data[:8], "little"):]).hexdigest()[:12]


def downloads(site: CivitaiServer) -> list[int]:
    """The Civitai file ids the storage host has served, in order."""
    return [int(r.path.split("/")[2]) for r in site.requests_to("storage") if r.path.startswith("/models/")]


def a1111_png(path: Path, params: dict[str, object], prompt: str = "a cat") -> Path:
    image = Image.new("RGB", (16, 16), (40, 90, 200))
    return save_png_with_parameters(image, path, Infotext.create(prompt, "blurry", params).to_text())


def base_params(**more: object) -> dict[str, object]:
    return {"Steps": 20, "Sampler": "DPM++ 2M", "Schedule type": "Karras", "CFG scale": 7, "Seed": 1234,
            "Size": "512x512", **more, "Version": "v1.10.1"}


def rows(result) -> dict[str, dict]:
    return {row["name"] or row["civitai_name"]: row for row in json.loads(result.stdout)["resources"]}


def test_a1111_lora_and_ti_hashes_fetch_exactly_what_is_missing(site: CivitaiServer, tmp_home: Home, made, run_cli,
                                                                tmp_path: Path) -> None:
    held = tmp_home.folder("checkpoint") / "tinymix_v1.safetensors"
    held.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(made["checkpoint"], held)
    with Catalog(tmp_home) as catalog:
        catalog.scan()
    image = a1111_png(tmp_path / "00001-1234.png", base_params(**{
        "Model hash": sha256(made["checkpoint"])[:10], "Model": "tinymix_v1",
        "Lora hashes": f"detail_tweaker: {addnet_short(made['lora'])}, mystery: {UNKNOWN_LORA_HASH}",
        "TI hashes": f"easyneg: {sha256(made['embedding'])[:12]}"}))

    result = run_cli("--home", tmp_home.root, "get", "--from-png", image, "--json")

    assert result.exit_code == 1, result.stderr
    found = rows(result)
    assert found["tinymix_v1"]["status"] == "present" and found["tinymix_v1"]["path"] == str(held)
    assert found["detail_tweaker"]["status"] == "fetched"
    assert found["easyneg"]["status"] == "fetched"
    assert found["mystery"]["status"] == "not found" and UNKNOWN_LORA_HASH in found["mystery"]["reason"]
    assert downloads(site) == [LORA, EMBEDDING]  # nothing for the checkpoint the library holds
    lora = Path(found["detail_tweaker"]["path"])
    assert lora.parent == tmp_home.folder("lora") and lora.read_bytes() == made["lora"].read_bytes()
    assert Path(found["easyneg"]["path"]).parent == tmp_home.folder("embedding")
    assert "1 of 4 models not found or not fetched" in result.stderr

    again = run_cli("--home", tmp_home.root, "get", "--from-png", image, "--json")
    assert {name: row["status"] for name, row in rows(again).items()} == {
        "tinymix_v1": "present", "detail_tweaker": "present", "easyneg": "present", "mystery": "not found"}
    assert downloads(site) == [LORA, EMBEDDING]
    with Catalog(tmp_home) as catalog:
        assert catalog.get(sha256(made["lora"])).kind == "lora"


def test_civitai_resources_and_hashes_dry_run_then_fetch(site: CivitaiServer, tmp_home: Home, made, run_cli,
                                                          tmp_path: Path) -> None:
    # As Civitai's generator and its A1111 extension write them: bare JSON, commas and all.
    line = ("Steps: 25, Sampler: Euler a, CFG scale: 7, Seed: 7, Size: 512x512, "
            f'Hashes: {{"model": "{sha256(made["checkpoint"])[:10].upper()}"}}, '
            'Civitai resources: [{"type":"checkpoint","modelVersionId":1000,"modelName":"TinyMix",'
            '"modelVersionName":"v1.0"},{"type":"lora","weight":0.8,"modelVersionId":2000,'
            '"modelName":"Detail Tweaker","modelVersionName":"v1.0"}], Version: v1.10.1')
    image = save_png_with_parameters(Image.new("RGB", (16, 16)), tmp_path / "civitai.png", f"a castle\n{line}")

    planned = run_cli("--home", tmp_home.root, "get", "--from-png", image, "--dry-run", "--json")
    assert planned.exit_code == 0, planned.stderr
    plan = json.loads(planned.stdout)["resources"]
    assert [(r["kind"], r["status"], r["civitai"]["version_id"]) for r in plan] == [
        ("checkpoint", "would fetch", 1000), ("lora", "would fetch", 2000)]
    assert set(plan[0]["named_by"]) == {"Hashes", "Civitai resources"}  # one model, named twice
    assert downloads(site) == [] and not any(tmp_home.folder("checkpoint").glob("*.safetensors"))

    result = run_cli("--home", tmp_home.root, "get", "--from-png", image, "--json")
    assert result.exit_code == 0, result.stderr
    assert [r["status"] for r in json.loads(result.stdout)["resources"]] == ["fetched", "fetched"]
    assert downloads(site) == [CHECKPOINT, LORA]
    assert (tmp_home.folder("checkpoint") / "tinymix_v1.safetensors").read_bytes() == made["checkpoint"].read_bytes()


def test_an_image_sdhub_generated_brings_its_models_to_another_home(site: CivitaiServer, made, run_cli,
                                                                    tmp_path: Path) -> None:
    first = init_home(tmp_path / "first", "sdhub")
    for ref in ("civitai:100@1000", "civitai:200@2000", "civitai:300@3000"):
        assert run_cli("--home", first.root, "get", ref).exit_code == 0
    drawn = run_cli("--home", first.root, "generate", "a cat <lora:detail_tweaker:0.8>", "--negative", "easyneg",
                    "--model", "tinymix_v1", "--steps", "1", "--width", "64", "--height", "64", "--json")
    assert drawn.exit_code == 0, drawn.stderr
    image = Path(json.loads(drawn.stdout)["images"][0])
    fetched_before = downloads(site)

    second = init_home(tmp_path / "second", "a1111")
    result = run_cli("--home", second.root, "get", "--from-png", image, "--json")

    assert result.exit_code == 0, result.stderr
    found = json.loads(result.stdout)["resources"]
    assert sorted((r["kind"], r["status"]) for r in found) == [
        ("checkpoint", "fetched"), ("embedding", "fetched"), ("lora", "fetched")]
    assert downloads(site)[len(fetched_before):] == [CHECKPOINT, LORA, EMBEDDING]
    assert (second.root / "models" / "Lora" / "detail_tweaker.safetensors").read_bytes() == made["lora"].read_bytes()


def test_comfyui_loaders_are_found_by_file_name(site: CivitaiServer, tmp_home: Home, made, run_cli,
                                                tmp_path: Path) -> None:
    held = tmp_home.folder("lora") / "detail_tweaker.safetensors"
    held.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(made["lora"], held)
    with Catalog(tmp_home) as catalog:
        catalog.scan()
    graph = {"4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "SD15\\tinymix_v1.safetensors"}},
             "10": {"class_type": "LoraLoader", "inputs": {"lora_name": "detail_tweaker.safetensors",
                                                             "model": ["4", 0], "clip": ["4", 1]}},
             "6": {"class_type": "CLIPTextEncode", "inputs": {"text": "a cat, embedding:easyneg", "clip": ["10", 1]}}}
    info = PngInfo()
    info.add_text("prompt", json.dumps(graph))
    Image.new("RGB", (8, 8)).save(tmp_path / "comfy.png", "PNG", pnginfo=info)

    result = run_cli("--home", tmp_home.root, "get", "--from-png", tmp_path / "comfy.png", "--json")

    assert result.exit_code == 1
    found = rows(result)
    assert found["detail_tweaker.safetensors"]["status"] == "present"
    assert found["detail_tweaker.safetensors"]["path"] == str(held)
    assert found["SD15\\tinymix_v1.safetensors"]["status"] == "not found"
    assert "file name" in found["SD15\\tinymix_v1.safetensors"]["reason"]
    assert found["easyneg"]["kind"] == "embedding"
    assert downloads(site) == []


def test_an_image_without_metadata_is_one_line_and_exit_2(tmp_home: Home, run_cli, tmp_path: Path) -> None:
    Image.new("RGB", (8, 8)).save(tmp_path / "plain.png")
    result = run_cli("--home", tmp_home.root, "get", "--from-png", tmp_path / "plain.png")
    assert result.exit_code == 2
    assert result.stderr.strip().count("\n") == 0 and "no generation metadata" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_hostile_png_neither_crashes_nor_reaches_the_terminal(site: CivitaiServer, tmp_home: Home, run_cli,
                                                                tmp_path: Path) -> None:
    evil = "\x1b]0;pwned\x07[/bold]\x1b[2Kevil\u202e"
    params = base_params(**{"Model hash": "fedcba9876", "Model": evil, "Lora hashes": f"{evil}: 00112233aabb",
                            "TI hashes": "x: not-a-hash"})
    image = a1111_png(tmp_path / "evil.png", params, prompt="p" * (2 << 20))  # a 2 MB text chunk
    big = tmp_path / "huge-line.png"
    info = PngInfo()
    info.add_text("parameters", "x\n" + "Model hash: aaaa, " * (1 << 20))
    Image.new("RGB", (8, 8)).save(big, "PNG", pnginfo=info)

    result = run_cli("--home", tmp_home.root, "get", "--from-png", image, big, "--format", "table")

    assert result.exit_code == 2, result.stderr
    shown = result.stdout + result.stderr
    assert "\x1b" not in shown and "\u202e" not in shown and "\x07" not in shown
    assert "\\x1b" in shown and "not found" in shown
    assert "huge-line.png" in result.stderr and "names no model" in result.stderr
    assert "Traceback" not in shown and downloads(site) == []


def test_the_library_call_reports_without_fetching_on_a_dry_run(site: CivitaiServer, tmp_home: Home, made,
                                                                tmp_path: Path) -> None:
    import sdhub

    image = a1111_png(tmp_path / "one.png", base_params(**{"Model hash": sha256(made["checkpoint"])[:10]}))
    report = sdhub.get_from_images([image], tmp_home, dry_run=True)
    assert [(r.resource.kind, r.status) for r in report.resources] == [("checkpoint", "would fetch")]
    assert report.resources[0].civitai["ref"] == f"urn:air:civitai:100@1000+{CHECKPOINT}"
    assert downloads(site) == []
