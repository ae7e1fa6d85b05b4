"""A checkpoint's generation defaults in the catalog and in A1111's ``.json`` user metadata beside it."""

from __future__ import annotations

import json
import shutil

import pytest

from sdhub.catalog import Catalog
from sdhub.errors import SdhubError, UsageError
from sdhub.generate.generate import ResolvedFile
from sdhub.generate.model_defaults import model_defaults, set_model_defaults
from sdhub.testing import factory


@pytest.fixture()
def home(tmp_home, tmp_path_factory):
    models = tmp_path_factory.mktemp("defaults-models")
    shutil.copy(factory.sd1_checkpoint(models / "mix.safetensors"), tmp_home.folder("checkpoint") / "mix.safetensors")
    tmp_home.folder("vae").mkdir(parents=True, exist_ok=True)
    factory.vae(tmp_home.folder("vae") / "anime.vae.safetensors", seed=5)
    with Catalog(tmp_home) as catalog:
        catalog.scan()
    return tmp_home


def test_set_writes_the_catalog_and_a1111s_json_and_a_scan_reads_edits_back(home, run_cli):
    sidecar = home.folder("checkpoint") / "mix.json"
    sidecar.write_text(json.dumps({"description": "mine", "notes": "keep", "vae": "Automatic"}))
    result = run_cli("--home", home.root, "set", "mix", "--vae", "anime.vae", "--clip-skip", "2",
                     "--sampler", "DPM++ 2M Karras", "--cfg", "6.5", "--negative", "lowres", "--json")
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["defaults"] == {"vae": "anime.vae.safetensors", "clip_skip": 2, "sampler": "DPM++ 2M",
                                "schedule": "Karras", "cfg_scale": 6.5, "negative": "lowres"}
    written = json.loads(sidecar.read_text())
    assert written["vae"] == "anime.vae.safetensors" and written["negative text"] == "lowres"
    assert written["description"] == "mine" and written["notes"] == "keep"  # A1111's own keys stay
    assert "clip skip" not in json.dumps(written)  # A1111 keeps no clip skip per checkpoint

    shown = run_cli("--home", home.root, "show", "mix")
    assert "default VAE" in shown.stdout and "anime.vae.safetensors" in shown.stdout
    assert "default clip skip" in shown.stdout and "Karras" in shown.stdout
    assert json.loads(run_cli("--home", home.root, "show", "mix", "--json").stdout)["defaults"]["clip_skip"] == 2

    # the user picks another VAE in A1111's editor: the next scan takes it, the sdhub-only defaults stay
    sidecar.write_text(json.dumps({**written, "vae": "None"}))
    with Catalog(home) as catalog:
        catalog.scan()
        asset = catalog.find("mix")
    assert asset.preferred_vae == "None" and asset.generation_defaults["clip_skip"] == 2

    cleared = run_cli("--home", home.root, "set", "mix", "--clear", "vae", "--clear", "clip-skip")
    assert cleared.exit_code == 0, cleared.stderr
    assert "vae" not in json.loads(sidecar.read_text())
    with Catalog(home) as catalog:
        catalog.scan()
        asset = catalog.find("mix")
    assert asset.preferred_vae is None and "clip_skip" not in asset.generation_defaults
    assert asset.negative_text == "lowres"


def test_a_checkpoint_outside_the_catalog_still_has_a1111s_preferred_vae(tmp_path, home):
    model = factory.sd1_checkpoint(tmp_path / "loose.safetensors")
    (tmp_path / "loose.json").write_text(json.dumps({"vae": "anime.vae.safetensors", "negative text": "blurry"}))
    defaults = model_defaults(home, ResolvedFile(model, "0" * 64))
    assert defaults.vae == "anime.vae.safetensors" and defaults.negative == "blurry" and defaults.clip_skip is None


@pytest.mark.parametrize("options, message", [
    ({"sampler": "Warp 9"}, "unknown sampler"), ({"clip_skip": 0}, "clip skip is 1 to 12"),
    ({"vae": "mix"}, "not a vae"), ({"schedule": "Karras"}, "--schedule goes with --sampler"),
    ({}, "give a default to set"),
])
def test_bad_defaults_are_refused_in_one_line(home, options, message):
    with pytest.raises(SdhubError) as error:
        set_model_defaults(home, "mix", **options)
    assert message in str(error.value) and "\n" not in str(error.value)


def test_defaults_are_for_checkpoints(home):
    with pytest.raises(UsageError, match="generation defaults are for checkpoints"):
        set_model_defaults(home, "anime.vae", clip_skip=2)
