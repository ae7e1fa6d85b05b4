"""Hugging Face downloads: the real huggingface_hub client against the imitation Hub."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from sdhub.config import Home
from sdhub.errors import AuthError, NotFoundError
from sdhub.sources.get import get
from sdhub.progress import RecordingProgress
from sdhub.sources import huggingface as hub_source
from sdhub.sources.refs import HubRef
from sdhub.testing import factory
from sdhub.testing.hub_server import HubServer


@pytest.fixture
def vae_bytes(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    return factory.vae(tmp_path_factory.mktemp("vae") / "vae.safetensors").read_bytes()


def test_a_single_file_lands_in_its_kinds_folder(hub: HubServer, tmp_home: Home, vae_bytes: bytes) -> None:
    hub.add_repo("stabilityai/sd-vae-ft-mse-original", {"vae-ft-mse.safetensors": vae_bytes, "README.md": b"# vae"})
    progress = RecordingProgress()
    result = get(tmp_home, "https://huggingface.co/stabilityai/sd-vae-ft-mse-original/blob/main/vae-ft-mse.safetensors",
                 progress=progress)
    assert result.kind == "vae"
    assert result.path == tmp_home.folder("vae") / "vae-ft-mse.safetensors"
    assert result.path.read_bytes() == vae_bytes
    assert result.sha256 == hashlib.sha256(vae_bytes).hexdigest()
    assert progress.tasks and progress.tasks[0].completed == len(vae_bytes)
    # The bytes came through the Hub protocol: HEAD resolve, then the CDN the Hub redirected to.
    assert [(r.server, r.method) for r in hub.log if "resolve" in r.path or r.server == "cdn"] == [
        ("hub", "HEAD"), ("cdn", "GET")]
    # The file came through the Hugging Face cache under HF_HOME and was copied, not moved, from it.
    cached = list((Path(hub_source.hub_cache_dir())).rglob("vae-ft-mse.safetensors"))
    assert cached and cached[0].read_bytes() == vae_bytes

    from sdhub.catalog import Catalog

    with Catalog(tmp_home) as catalog:
        asset = catalog.get(result.sha256)
        row = catalog.db.execute("SELECT repo, url FROM remote WHERE asset_id = ?", [asset.id]).fetchone()
    assert asset.kind == "vae"
    assert row[0] == "stabilityai/sd-vae-ft-mse-original" and row[1].endswith("/vae-ft-mse.safetensors")


def test_getting_the_same_file_again_copies_nothing(hub: HubServer, tmp_home: Home, vae_bytes: bytes) -> None:
    hub.add_repo("org/vae", {"v.safetensors": vae_bytes})
    first = get(tmp_home, "hf:org/vae/v.safetensors")
    second = get(tmp_home, "org/vae/v.safetensors")
    assert second.already_present and second.path == first.path
    assert sorted(p.name for p in tmp_home.folder("vae").iterdir()) == ["v.safetensors"]


def test_a_repo_folder_with_allow_patterns(hub: HubServer, tmp_home: Home) -> None:
    hub.add_repo("org/tiny-pipeline", {
        "model_index.json": b'{"_class_name": "StableDiffusionPipeline"}',
        "unet/config.json": b"{}", "unet/diffusion_pytorch_model.safetensors": b"u" * 3000,
        "vae/config.json": b"{}", "vae/diffusion_pytorch_model.safetensors": b"v" * 2000,
        "unet/diffusion_pytorch_model.fp16.safetensors": b"h" * 1500,
    })
    result = get(tmp_home, "hf:org/tiny-pipeline", include=["model_index.json", "unet/*.json",
                                                            "unet/diffusion_pytorch_model.safetensors"])
    assert result.path == tmp_home.folder("checkpoint") / "tiny-pipeline"
    files = sorted(str(p.relative_to(result.path)) for p in result.path.rglob("*") if p.is_file())
    assert files == ["model_index.json", "unet/config.json", "unet/diffusion_pytorch_model.safetensors"]
    assert not any(r.path.endswith("fp16.safetensors") for r in hub.log)
    assert [p.name for p in result.path.parent.iterdir() if p.name.startswith(".")] == []


def test_a_pipeline_repo_brings_only_what_its_pipeline_loads(hub: HubServer, tmp_home: Home,
                                                               pipeline_files: dict[str, bytes]) -> None:
    """Like SD1.5's repo: root checkpoints, .bin twins, fp16 and non_ema variants, Flax weights."""
    from sdhub.generate.loading import load_checkpoint

    unet = pipeline_files["unet/diffusion_pytorch_model.safetensors"]
    extras = {"v1-5-pruned.ckpt": b"c" * 5000, "v1-5-pruned-emaonly.safetensors": b"s" * 4000,
              "unet/diffusion_pytorch_model.bin": b"b" * 3000, "unet/diffusion_pytorch_model.fp16.safetensors": unet,
              "unet/diffusion_pytorch_model.non_ema.safetensors": unet, "unet/diffusion_flax_model.msgpack": b"f" * 100,
              "text_encoder/model.fp16.safetensors": b"t" * 100}
    hub.add_repo("org/sd-like", {**pipeline_files, **extras, "README.md": b"# like SD1.5"})
    result = get(tmp_home, "hf:org/sd-like")
    placed = sorted(p.relative_to(result.path).as_posix() for p in result.path.rglob("*") if p.is_file())
    assert placed == sorted([*pipeline_files, "README.md"])
    assert not any(r.path.rsplit("/", 1)[-1] in {name.rsplit("/", 1)[-1] for name in extras}
                   for r in hub.log if "/resolve/" in r.path)
    [note] = [w for w in result.warnings if w.startswith("left out")]
    assert f"left out {len(extras)} files" in note and "--include '*'" in note
    assert load_checkpoint(result.path, device="cpu").arch == "sd1"

    everything = get(tmp_home, "hf:org/sd-like", include=["*"], to=tmp_home.root / "all")
    placed = sorted(p.relative_to(everything.path).as_posix() for p in everything.path.rglob("*") if p.is_file())
    assert placed == sorted([*pipeline_files, *extras, "README.md"])
    assert not [w for w in everything.warnings if w.startswith("left out")]


def test_a_revision_is_honoured(hub: HubServer, tmp_home: Home, vae_bytes: bytes) -> None:
    repo = hub.add_repo("org/vae", {"v.safetensors": vae_bytes})
    result = get(tmp_home, f"hf:org/vae/v.safetensors@{repo.commit}")
    assert result.path.read_bytes() == vae_bytes
    assert any(f"/resolve/{repo.commit}/" in r.path for r in hub.log)


def test_hf_token_is_sent_to_the_hub(hub: HubServer, tmp_home: Home, vae_bytes: bytes,
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    hub.add_repo("org/gated", {"v.safetensors": vae_bytes}, gated=True, granted_tokens={"hf_granted"})
    monkeypatch.setenv("HF_TOKEN", "hf_granted")
    result = get(tmp_home, "hf:org/gated/v.safetensors")
    assert result.path.read_bytes() == vae_bytes
    head = next(r for r in hub.log if r.method == "HEAD")
    assert head.headers["authorization"] == "Bearer hf_granted"
    assert all("authorization" not in r.headers for r in hub.log if r.server == "cdn")


def test_a_gated_repo_says_how_to_get_access(hub: HubServer, tmp_home: Home, vae_bytes: bytes,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    hub.add_repo("org/gated", {"v.safetensors": vae_bytes}, gated=True)
    with pytest.raises(AuthError, match="org/gated is gated: request access at .*/org/gated.*HF_TOKEN"):
        get(tmp_home, "hf:org/gated/v.safetensors")
    monkeypatch.setenv("HF_TOKEN", "hf_not_granted")
    with pytest.raises(AuthError, match="HF_TOKEN has no access yet"):
        get(tmp_home, "hf:org/gated/v.safetensors")
    with pytest.raises(AuthError, match="gated"):
        get(tmp_home, "hf:org/gated")
    assert list(tmp_home.folder("vae").iterdir()) == []


def test_missing_files_repos_and_revisions_are_not_found(hub: HubServer, tmp_home: Home, vae_bytes: bytes) -> None:
    hub.add_repo("org/vae", {"v.safetensors": vae_bytes})
    with pytest.raises(NotFoundError, match="org/vae has no file 'nope.safetensors' at main"):
        get(tmp_home, "hf:org/vae/nope.safetensors")
    with pytest.raises(NotFoundError, match="org/absent does not exist; if it is private, set HF_TOKEN"):
        get(tmp_home, "hf:org/absent/v.safetensors")
    with pytest.raises(NotFoundError, match="no revision 'v2'"):
        get(tmp_home, "hf:org/vae/v.safetensors@v2")
    with pytest.raises(NotFoundError, match="no files matching"):
        get(tmp_home, "hf:org/vae", include=["*.ckpt"])


def test_an_unrecognisable_file_is_kept_until_filed(hub: HubServer, tmp_home: Home) -> None:
    hub.add_repo("org/odd", {"weights.safetensors": factory_unknown_safetensors()})
    result = get(tmp_home, "hf:org/odd/weights.safetensors")
    kept = tmp_home.downloads_dir / "weights.safetensors"
    assert result.path == kept and result.kind == "other" and kept.is_file()
    assert any(f"kept in {kept}" in w and "sdhub mv weights.safetensors --kind KIND" in w for w in result.warnings)
    # --kind on the next get files the kept copy (the Hub's hash says it is the same file).
    result = get(tmp_home, "hf:org/odd/weights.safetensors", kind="lora")
    assert result.path == tmp_home.folder("lora") / "weights.safetensors" and result.kind == "lora"
    assert not kept.exists()


def test_offline_mode_is_a_clear_network_error(hub: HubServer, tmp_home: Home,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    import huggingface_hub.constants

    from sdhub.errors import NetworkError

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(NetworkError, match="HF_HUB_OFFLINE is set"):
        hub_source.fetch(HubRef("org/vae", "v.safetensors"))


def factory_unknown_safetensors() -> bytes:
    """A valid safetensors file whose tensors belong to no Stable Diffusion part."""
    import torch
    from safetensors.torch import save

    return save({"some.other.network.weight": torch.zeros(4, 4)})


def _scanned_like(home: Home, path: Path, tmp_path: Path) -> dict:
    """What a plain scan of a copy of ``path`` in a fresh home stores: the reference for a fetched asset."""
    import shutil

    from sdhub.catalog import Catalog
    from sdhub.config import init_home

    other = init_home(tmp_path / "scanned-home", home.layout)
    target = other.folder("checkpoint") / path.name
    (shutil.copytree if path.is_dir() else shutil.copyfile)(path, target)
    with Catalog(other) as catalog:
        catalog.scan()
        return catalog.show(str(target)).to_dict()


STORED = ("sha256", "kind", "architecture", "base_model", "format", "dtype", "size", "problems", "hashes",
          "folder_files")


def test_a_diffusers_repo_is_one_catalogued_asset_with_its_hub_page(
        hub: HubServer, tmp_home: Home, tmp_path: Path, pipeline_files: dict[str, bytes]) -> None:
    from sdhub.catalog import Catalog

    repo = hub.add_repo("org/tiny-sd", {**pipeline_files, ".gitattributes": b"*.safetensors filter=lfs\n",
                                        "README.md": b"# tiny"})
    result = get(tmp_home, "hf:org/tiny-sd")
    assert result.path == tmp_home.folder("checkpoint") / "tiny-sd"
    assert (result.kind, result.size) == ("checkpoint", sum(len(d) for d in pipeline_files.values()) + len(b"# tiny"))
    with Catalog(tmp_home) as catalog:
        details = catalog.show(str(result.path)).to_dict()
        assert len(catalog.list_assets()) == 1  # the folder, not its weight files
    assert details["sha256"] == result.sha256 and (details["format"], details["architecture"]) == ("diffusers", "sd1")
    [remote] = details["remote"]
    assert (remote["source"], remote["repo"], remote["revision"]) == ("huggingface", "org/tiny-sd", repo.commit)
    assert remote["url"] == f"{hub.url}/org/tiny-sd/tree/{repo.commit}"
    assert ".gitattributes" not in [f["path"] for f in details["folder_files"]]
    scanned = _scanned_like(tmp_home, result.path, tmp_path)
    assert {k: details[k] for k in STORED} == {k: scanned[k] for k in STORED}

    again = get(tmp_home, "hf:org/tiny-sd")
    assert again.already_present and (again.path, again.sha256) == (result.path, result.sha256)
    with Catalog(tmp_home) as catalog:
        report = catalog.scan()
        assert (report.files_read, report.assets_added) == (0, 0)


def test_a_downloaded_diffusers_repo_is_smoke_tested_by_its_name(
        hub: HubServer, tmp_home: Home, pipeline_files: dict[str, bytes]) -> None:
    """The whole journey for a Hub pipeline: get it, then prove it works, with the verdict catalogued."""
    from sdhub.catalog import Catalog
    from sdhub.generate.reference_tests import run_smoke

    hub.add_repo("org/tiny-sd", pipeline_files)
    got = get(tmp_home, "hf:org/tiny-sd")
    [result] = run_smoke(tmp_home, ["tiny-sd"], steps=2)
    assert result.model["path"] == str(got.path) and result.model["sha256"] == got.sha256
    assert result.verdict in ("pass", "warn", "fail") and Path(result.image_path).is_file()
    with Catalog(tmp_home) as catalog:
        tests = catalog.show("tiny-sd").tests
    assert [(t["kind"], t["verdict"]) for t in tests] == [("smoke", result.verdict)]


def test_a_repo_of_model_files_catalogues_each_with_its_hub_page(hub: HubServer, tmp_home: Home, vae_bytes: bytes,
                                                                  tmp_path: Path) -> None:
    from sdhub.catalog import Catalog

    repo = hub.add_repo("org/vaes", {"vae/a.safetensors": vae_bytes, "b.safetensors": vae_bytes,
                                     "README.md": b"# two"})
    result = get(tmp_home, "hf:org/vaes", kind="vae", include=["*.safetensors"])
    assert result.path == tmp_home.folder("vae") / "vaes"
    with Catalog(tmp_home) as catalog:
        [asset] = catalog.list_assets()  # both files hold the same bytes: one asset at two paths
        details = catalog.show(asset.sha256).to_dict()
    assert sorted(f.path for f in asset.files) == [str(result.path / "b.safetensors"),
                                                   str(result.path / "vae" / "a.safetensors")]
    assert asset.kind == "vae" and details["remote"][0]["repo"] == "org/vaes"
    assert details["remote"][0]["url"].startswith(f"{hub.url}/org/vaes/blob/{repo.commit}/")
    scanned = _scanned_like(tmp_home, result.path / "b.safetensors", tmp_path)
    assert {k: details[k] for k in STORED} == {k: scanned[k] for k in STORED}


def test_a_hub_file_is_hashed_once_and_stored_as_a_scan_would(hub: HubServer, tmp_home: Home, tmp_path: Path) -> None:
    import torch
    from safetensors.torch import save

    big = save({"lora_unet_down.lora_down.weight": torch.arange(1_200_000, dtype=torch.float32).reshape(1200, 1000),
                "lora_unet_down.lora_up.weight": torch.ones(1000, 4)})  # over 4 MiB: hashing shows a bar
    hub.add_repo("org/big", {"big.safetensors": big})
    progress = RecordingProgress()
    result = get(tmp_home, "hf:org/big/big.safetensors", kind="lora", progress=progress)
    hashing = [t for t in progress.tasks if t.unit == "bytes" and t.description.startswith("Hashing")]
    assert [t.completed for t in hashing] == [len(big)]  # read once from the Hub cache, not again by the catalog
    from sdhub.catalog import Catalog

    with Catalog(tmp_home) as catalog:
        details = catalog.show(result.sha256).to_dict()
    assert details["hashes"]["sha256"] == hashlib.sha256(big).hexdigest()
    scanned = _scanned_like(tmp_home, result.path, tmp_path)
    assert {k: details[k] for k in STORED} == {k: scanned[k] for k in STORED}
