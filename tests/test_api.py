"""The Python API as a script uses it: ``import sdhub``, paths in, reports out, sdhub errors to catch."""

from __future__ import annotations

import ast
import inspect
import json
import subprocess
import sys
from pathlib import Path

import pytest
from safetensors import safe_open

import sdhub
from sdhub.testing import factory
from sdhub.testing.hub_server import HubServer

HEAVY_MODULES = ("torch", "diffusers", "transformers", "sqlite_utils", "requests", "huggingface_hub")


def modules_loaded_by(code: str) -> list[str]:
    """Which of HEAVY_MODULES a fresh interpreter has imported after running ``code``."""
    script = f"import sys\n{code}\nprint(sorted(m for m in {HEAVY_MODULES!r} if m in sys.modules))"
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=True)
    return json.loads(done.stdout.strip().replace("'", '"'))


@pytest.fixture(scope="module")
def pickle_bytes(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """A tiny SD1 training checkpoint (.ckpt with EMA and optimizer state), written once for this module."""
    return factory.sd1_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny.ckpt", fmt="ckpt", ema=True,
                                  training_state=True).read_bytes()


@pytest.fixture
def pickle_file(tmp_path: Path, pickle_bytes: bytes) -> Path:
    path = tmp_path / "downloads" / "tiny-trained.ckpt"
    path.parent.mkdir()
    path.write_bytes(pickle_bytes)
    return path


def test_import_sdhub_loads_none_of_the_heavy_libraries() -> None:
    assert modules_loaded_by("import sdhub") == []


def test_names_are_imported_on_first_use_only_as_far_as_they_need() -> None:
    # The home, the errors and convert (which reads pickles without torch) stay light.
    assert modules_loaded_by("import sdhub\nsdhub.open_home; sdhub.SdhubError; sdhub.convert; sdhub.Home") == []
    assert "torch" in modules_loaded_by("import sdhub\nsdhub.GenerationParams")


def test_every_public_name_resolves_and_is_listed_by_dir() -> None:
    for name in sdhub.__all__:
        assert getattr(sdhub, name) is not None, name
    assert set(sdhub.__all__) <= set(dir(sdhub))
    assert {"convert", "prune", "inspect", "hash", "scan", "get", "generate", "Catalog", "open_home",
            "init_home", "SdhubError"} <= set(sdhub.__all__)
    with pytest.raises(AttributeError, match="no attribute 'nonsense'"):
        sdhub.nonsense  # noqa: B018


def test_editors_and_type_checkers_see_the_same_names_and_objects() -> None:
    # The TYPE_CHECKING imports in sdhub/__init__.py are what IDEs complete; they must match the lazy table.
    tree = ast.parse(Path(sdhub.__file__).read_text(encoding="utf-8"))
    block = next(node for node in tree.body
                 if isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING")
    seen: dict[str, object] = {}
    exec(compile(ast.Module(block.body, type_ignores=[]), "sdhub TYPE_CHECKING imports", "exec"), seen)
    names = {name for name in seen if not name.startswith("__")}
    assert names == set(sdhub.__all__)
    for name in names - {"generate"}:  # sdhub.generate is the callable package wrapping library.generate
        assert seen[name] is getattr(sdhub, name), name


def test_every_exported_error_is_an_sdhub_error_with_an_exit_code() -> None:
    errors = [getattr(sdhub, name) for name in sdhub.__all__ if name.endswith("Error") or name == "Interrupted"]
    assert len(errors) >= 10
    for error in errors:
        assert issubclass(error, sdhub.SdhubError)
        assert error.exit_code in (1, 2, 130)


def test_public_functions_have_docstrings_and_type_hints() -> None:
    for name in ("convert", "prune", "inspect", "hash", "scan", "get", "generate", "smoke_test", "open_home",
                 "init_home", "civitai_sync", "scan_pickle"):
        function = getattr(sdhub, name)
        assert (function.__doc__ or "").strip(), name
        signature = inspect.signature(function)
        assert signature.return_annotation is not inspect.Signature.empty, name


def test_convert_writes_a_safetensors_beside_the_pickle_and_reports_it(pickle_file: Path) -> None:
    report = sdhub.convert(pickle_file)
    assert isinstance(report, sdhub.ConvertReport)
    assert report.status == "converted"
    assert Path(report.output) == pickle_file.with_suffix(".safetensors")
    with safe_open(report.output, framework="numpy") as converted:
        assert len(list(converted.keys())) == report.tensors > 1000
    assert report.to_dict()["output"] == report.output


def test_convert_takes_str_paths_and_an_output_folder(pickle_file: Path, tmp_path: Path) -> None:
    out = tmp_path / "converted"
    out.mkdir()
    report = sdhub.convert(str(pickle_file), str(out), dtype="fp16")
    assert Path(report.output) == out / "tiny-trained.safetensors"
    assert report.dtype == "fp16"


def test_a_missing_file_is_an_sdhub_error_naming_it(tmp_path: Path) -> None:
    with pytest.raises(sdhub.NotFoundError, match="no-such.ckpt"):
        sdhub.convert(tmp_path / "no-such.ckpt")
    with pytest.raises(sdhub.SdhubError, match="no-such.safetensors"):
        sdhub.inspect(tmp_path / "no-such.safetensors")


def test_prune_takes_the_cli_choices_as_keywords(pickle_file: Path, tmp_path: Path) -> None:
    report = sdhub.prune(pickle_file, tmp_path / "small.safetensors", ema="use", vae="drop")
    assert isinstance(report, sdhub.PruneReport)
    assert report.dtype == "fp16" and report.ema == "used"
    assert report.bytes_after < report.bytes_before / 3
    inspected = sdhub.inspect(report.output)
    assert inspected.dtype == "F16"
    assert "vae" not in {component.name for component in inspected.components}


def test_prune_refuses_an_unknown_choice_or_value_before_writing(pickle_file: Path, tmp_path: Path) -> None:
    with pytest.raises(sdhub.UsageError, match="'emma'"):
        sdhub.prune(pickle_file, tmp_path / "out.safetensors", emma="use")
    with pytest.raises(sdhub.UsageError, match="fp4"):
        sdhub.prune(pickle_file, tmp_path / "out.safetensors", dtype="fp4")
    assert not (tmp_path / "out.safetensors").exists()


def test_prune_options_object_and_keywords_combine(pickle_file: Path, tmp_path: Path) -> None:
    options = sdhub.PruneOptions(ema="drop", dtype="keep")
    report = sdhub.prune(pickle_file, tmp_path / "out.safetensors", options=options, dtype="bf16")
    assert report.ema == "dropped" and report.dtype == "bf16"


def test_hash_returns_every_hash_and_component_hashes(pickle_file: Path) -> None:
    hashes = sdhub.hash(pickle_file)
    assert isinstance(hashes, sdhub.ModelHashes)
    import hashlib

    assert hashes.file.sha256 == hashlib.sha256(pickle_file.read_bytes()).hexdigest()
    assert hashes.file.autov2 == hashes.file.sha256[:10]
    assert set(hashes.components) == {"unet", "vae", "text_encoder"}


def test_a_home_given_as_a_path_works_everywhere_a_home_is_taken(pickle_file: Path, tmp_path: Path) -> None:
    root = tmp_path / "home"
    root.mkdir()
    home = sdhub.init_home(root)
    sdhub.convert(pickle_file, home.folder("checkpoint"))
    report = sdhub.scan(str(root))
    assert isinstance(report, sdhub.ScanReport) and report.files_added == 1
    with sdhub.Catalog(root) as by_path, sdhub.Catalog(home) as by_home:
        assert [a.name for a in by_path.list_assets()] == [a.name for a in by_home.list_assets()] == ["tiny-trained"]
        assert by_path.home.root == root
    again = sdhub.scan(home)
    assert again.files_added == 0 and again.files_unchanged == 1


def test_without_a_home_the_api_uses_the_one_the_cli_would(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "env-home"
    root.mkdir()
    sdhub.init_home(root)
    monkeypatch.setenv("SDHUB_HOME", str(root))
    assert sdhub.open_home().root == root
    with sdhub.Catalog() as catalog:
        assert catalog.home.root == root


def test_get_takes_the_reference_first_and_a_home_path(hub: HubServer, tmp_path: Path) -> None:
    vae = factory.vae(tmp_path / "made" / "vae.safetensors")
    hub.add_repo("org/vae", {"v.safetensors": vae.read_bytes()})
    root = tmp_path / "home"
    root.mkdir()
    sdhub.init_home(root)
    result = sdhub.get("hf:org/vae/v.safetensors", str(root))
    assert isinstance(result, sdhub.GetResult)
    assert result.kind == "vae" and result.path.parent == root / "models" / "vae"
    with sdhub.Catalog(root) as catalog:
        assert catalog.get(result.sha256) is not None
    with pytest.raises(sdhub.UsageError, match="unknown get options"):
        sdhub.get("hf:org/vae/v.safetensors", root, colour="red")


def test_generate_is_callable_even_once_the_generation_package_is_imported() -> None:
    import sdhub.generate.pipeline  # binds the package to sdhub.generate

    assert callable(sdhub.generate)
    assert list(inspect.signature(sdhub.generate).parameters)[:2] == ["model", "prompt"]
    from sdhub import generate

    assert callable(generate)


def test_generate_refuses_an_unknown_setting_before_loading_anything(tmp_home: sdhub.Home) -> None:
    with pytest.raises(sdhub.UsageError, match="'cfg'"):
        sdhub.generate("no-such-model", "a fox", home=tmp_home, cfg=7)


def test_generate_draws_a_tiny_image_with_a1111_infotext(tmp_home: sdhub.Home) -> None:
    model = factory.sd1_checkpoint(tmp_home.folder("checkpoint") / "tiny.safetensors")
    out = tmp_home.root / "pictures"
    result = sdhub.generate(model, "a fox", home=tmp_home.root, steps=2, sampler="Euler", seed=42, width=64, height=64,
                            out_dir=out)
    assert isinstance(result, sdhub.GenerationResult)
    assert [path.parent for path in result.images] == [out] and result.images[0].is_file()
    assert result.seeds == [42]
    assert "Steps: 2, Sampler: Euler" in result.infotexts[0] and "Seed: 42" in result.infotexts[0]
    from PIL import Image

    with Image.open(result.images[0]) as image:
        assert image.size == (64, 64)


def test_the_cli_and_the_tui_call_the_functions_the_api_exposes(pickle_file: Path, run_cli) -> None:
    from sdhub.tui.backend import feature

    for name in ("convert", "inspect", "hash", "get"):
        assert feature(name) is getattr(sdhub, name), name
    done = run_cli("hash", pickle_file, "--json")
    assert done.exit_code == 0, done.stderr
    assert json.loads(done.stdout) == [sdhub.hash(pickle_file).to_dict()]
