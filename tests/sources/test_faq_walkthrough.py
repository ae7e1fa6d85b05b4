"""The community FAQ, followed as a user would on the imitation Civitai and Hub: browse a collection and
a search page, get two checkpoints from them, the three negative embeddings by the FAQ's URL forms and a
wildcard pack; generate with the FAQ's negative prompt and a wildcard; per-model clip skip and VAE seen by
generate and test asuka; inpaint; doctor."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from sdhub.generate.infotext import Infotext, read_png_parameters
from sdhub.generate.reference_tests import run_asuka
from sdhub.testing import factory
from sdhub.testing.civitai_server import civitai_model
from sdhub.testing.wildcard_packs import GOOD_PACK, wildcards_model, zip_bytes

NEGATIVE = "(worst quality, low quality:1.3), (bad-hands-5:0.8)"
COLLECTION = "https://civitai.com/collections/42742"
SEARCH = ("https://civitai.com/search/models?baseModel=SD%201.5&modelType=Checkpoint&tags=anime"
          "&sortBy=models_v2%3Ametrics.downloadCount%3Adesc")


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    torch.set_num_threads(1)
    folder = tmp_path_factory.mktemp("faq-files")
    return {
        "mix": factory.sd1_checkpoint(folder / "mix.safetensors", seed=1),
        "counterfeit": factory.sd1_checkpoint(folder / "counterfeit.safetensors", seed=2),
        "bad-hands-5": factory.embedding(folder / "bad-hands-5.pt", fmt="pt", vectors=2, seed=3),
        "EasyNegative": factory.embedding(folder / "EasyNegative.safetensors", fmt="safetensors", vectors=4, seed=4),
        "bad_prompt": factory.embedding(folder / "bad_prompt_version2.pt", fmt="pt", vectors=3, seed=5),
        "vae": factory.vae(folder / "kl-f8-anime2.safetensors", seed=6),
    }


def _hub_url(hub, path: str) -> str:
    """The FAQ's https://huggingface.co/PATH, on the imitation Hub (HF_ENDPOINT) with the same path."""
    return f"{hub.url}/{path}"


def _ok(result):
    assert result.exit_code == 0, result.stderr
    return result


def test_the_faq_walkthrough(civitai, hub, tmp_home, run_cli, files, tmp_path) -> None:
    home = ("--home", tmp_home.root)
    for model_id, name, downloads, path in ((201, "Anime Mix", 800, files["mix"]),
                                            (202, "Counterfeit", 300, files["counterfeit"])):
        model = civitai_model(model_id, model_id * 10, model_id * 100, name=name, file_name=f"{path.stem}_v1.safetensors",
                              model_type="Checkpoint", base="SD 1.5", downloads=downloads)
        model["tags"] = ["anime"]
        civitai.add_model(model, {model_id * 100: path})
    civitai.add_collection(42742, "FAQ picks", [201])
    civitai.add_model(wildcards_model(5100, 5101, 5102), {5102: zip_bytes(GOOD_PACK)})
    hub.add_repo("yesyeahvh/bad-hands-5", {"bad-hands-5.pt": files["bad-hands-5"].read_bytes()})
    hub.add_repo("datasets/gsdf/EasyNegative", {"EasyNegative.safetensors": files["EasyNegative"].read_bytes()})
    hub.add_repo("datasets/Nerfgun3/bad_prompt", {"bad_prompt_version2.pt": files["bad_prompt"].read_bytes()})
    hub.add_repo("hakurei/waifu-diffusion-v1-4", {"vae/kl-f8-anime2.safetensors": files["vae"].read_bytes()})

    # Browse a collection and a search page, then get one checkpoint from each by its number.
    collection = json.loads(_ok(run_cli(*home, "civitai", "browse", COLLECTION, "--json")).stdout)
    assert [(item["number"], item["name"]) for item in collection["items"]] == [(1, "Anime Mix")]
    search = json.loads(_ok(run_cli(*home, "civitai", "browse", SEARCH, "--json")).stdout)
    assert [(item["number"], item["name"]) for item in search["items"]] == [(1, "Anime Mix"), (2, "Counterfeit")]
    _ok(run_cli(*home, "get", COLLECTION, "--pick", "1"))
    _ok(run_cli(*home, "get", SEARCH, "--pick", "2"))
    checkpoints = tmp_home.folder("checkpoint")
    assert sorted(p.name for p in checkpoints.iterdir() if p.suffix == ".safetensors") == [
        "counterfeit_v1.safetensors", "mix_v1.safetensors"]
    assert (checkpoints / "mix_v1.safetensors").read_bytes() == files["mix"].read_bytes()

    # The three negative embeddings by the FAQ's URL forms: a model repo and two dataset repos.
    for path in ("yesyeahvh/bad-hands-5/resolve/main/bad-hands-5.pt",
                 "datasets/gsdf/EasyNegative/blob/main/EasyNegative.safetensors",
                 "datasets/Nerfgun3/bad_prompt/resolve/main/bad_prompt_version2.pt"):
        _ok(run_cli(*home, "get", _hub_url(hub, path)))
    embeddings = tmp_home.folder("embedding")
    # get keeps safetensors copies of pickled embeddings (--keep-pickle keeps the .pt too).
    assert sorted(p.name for p in embeddings.iterdir() if p.is_file()) == [
        "EasyNegative.safetensors", "bad-hands-5.safetensors", "bad_prompt_version2.safetensors"]
    _ok(run_cli(*home, "get", _hub_url(hub, "hakurei/waifu-diffusion-v1-4/blob/main/vae/kl-f8-anime2.safetensors")))
    _ok(run_cli(*home, "get", "https://civitai.com/models/5100?modelVersionId=5101"))
    assert (tmp_home.folder("wildcards") / "anime-pack" / "hair" / "style.txt").is_file()

    # Generate with the FAQ's negative prompt and a wildcard: deterministic per seed, TI hashes as A1111.
    generate = (*home, "generate", "1girl, __anime-pack/hair/style__", "--negative", f"EasyNegative, {NEGATIVE}",
                "--model", "mix_v1", "--steps", "2", "--width", "64", "--height", "64", "--seed", "7", "--json")
    first = json.loads(_ok(run_cli(*generate)).stdout)
    again = json.loads(_ok(run_cli(*generate)).stdout)
    image = Path(first["images"][0])
    assert image.read_bytes() == Path(again["images"][0]).read_bytes()
    other_seed = json.loads(_ok(run_cli(*generate[:-2], "8", "--json")).stdout)
    assert Path(other_seed["images"][0]).read_bytes() != image.read_bytes()
    infotext = Infotext.from_text(read_png_parameters(image))
    assert infotext.prompt.split(", ")[1] in {"long hair", "short hair", "ponytail"}
    assert infotext.negative_prompt == f"EasyNegative, {NEGATIVE}"
    # A1111 names the file it loaded by the first 12 hex of its SHA-256.
    short = {name: hashlib.sha256((embeddings / f"{name}.safetensors").read_bytes()).hexdigest()[:12]
             for name in ("bad-hands-5", "EasyNegative")}
    assert infotext.params["TI hashes"] == f"EasyNegative: {short['EasyNegative']}, bad-hands-5: {short['bad-hands-5']}"
    assert infotext.params["Template"] == "1girl, __anime-pack/hair/style__"

    # Clip skip 2 and the anime VAE on the checkpoint: generate and test asuka use them unless told otherwise.
    _ok(run_cli(*home, "set", "mix_v1", "--clip-skip", "2", "--vae", "kl-f8-anime2"))
    with_defaults = json.loads(_ok(run_cli(*home, "generate", "1girl", "--model", "mix_v1", "--steps", "2",
                                          "--width", "64", "--height", "64", "--seed", "7", "--json")).stdout)
    fields = Infotext.from_text(read_png_parameters(Path(with_defaults["images"][0]))).params
    vae_hash = hashlib.sha256((tmp_home.folder("vae") / "kl-f8-anime2.safetensors").read_bytes()).hexdigest()[:10]
    assert (fields["Clip skip"], fields["VAE"], fields["VAE hash"]) == ("2", "kl-f8-anime2.safetensors", vae_hash)  # A1111: the file name
    # `sdhub test asuka` draws 28 steps at 512x512 (over a minute on a CPU); the library call it wraps runs
    # the same path with fewer steps and pixels.
    asuka = run_asuka(tmp_home, "mix_v1", force=True, device="cpu", overrides={"steps": 2, "width": 64, "height": 64})
    drawn = Infotext.from_text(read_png_parameters(Path(asuka.image_path))).params
    assert (drawn["VAE"], drawn["VAE hash"], drawn["Clip skip"]) == ("kl-f8-anime2.safetensors", vae_hash, "2")
    assert "the model's defaults (sdhub set): VAE kl-f8-anime2.safetensors" in asuka.notes

    # Inpaint a masked square of an image: what lies outside the mask stays, what lies inside is redrawn.
    init, mask = tmp_path / "init.png", tmp_path / "mask.png"
    pixels = np.zeros((64, 64, 3), dtype=np.uint8)
    pixels[:, :, 2] = np.arange(64, dtype=np.uint8)[None, :] * 3
    Image.fromarray(pixels).save(init)
    square = np.zeros((64, 64), dtype=np.uint8)
    square[16:48, 16:48] = 255
    Image.fromarray(square, "L").save(mask)
    inpainted = json.loads(_ok(run_cli(*home, "generate", "1girl, red hair", "--model", "mix_v1", "--steps", "2",
                                       "--width", "64", "--height", "64", "--seed", "3", "--init-image", init,
                                       "--mask", mask, "--mask-blur", "0", "--denoising-strength", "0.9",
                                       "--json")).stdout)
    result = np.asarray(Image.open(inpainted["images"][0]).convert("RGB"))
    assert np.array_equal(result[:8], pixels[:8]) and not np.array_equal(result[20:44, 20:44], pixels[20:44, 20:44])
    inpaint_fields = Infotext.from_text(read_png_parameters(Path(inpainted["images"][0]))).params
    assert inpaint_fields["Denoising strength"] == "0.9" and "Mask blur" not in inpaint_fields  # A1111: only when > 0

    # doctor on this machine: the library above is counted, nothing is left half-written, and the device
    # row says what draws (a warning with its fix on a machine without a GPU).
    doctor = json.loads(_ok(run_cli(*home, "doctor", "--json")).stdout)
    checks = {check["name"]: check for check in doctor["checks"]}
    assert checks["catalog"]["detail"].endswith("(6 assets)")  # two checkpoints, three embeddings, a VAE
    assert checks["leftovers"]["status"] == "ok" and checks["torch"]["status"] == "ok"
    device = checks["device"]
    assert device["status"] == "ok" if torch.cuda.is_available() else (device["status"] == "warn" and device["fix"])
