"""inspect_file on every factory model, and on files with the problems users meet planted in them."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from sdhub.errors import BadInputError, NotFoundError
from sdhub.ops.inspect import SCHEMA_VERSION, inspect_file
from sdhub.testing import factory


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("models")


@pytest.fixture(scope="module")
def sd1_state() -> dict[str, torch.Tensor]:
    return factory.tiny_state_dicts("sd1")


def _save(path: Path, state: dict[str, torch.Tensor]) -> Path:
    save_file({k: v.contiguous() for k, v in state.items()}, path)
    return path


@pytest.mark.parametrize("make, expected", [
    (lambda d: factory.sd1_checkpoint(d / "sd1.safetensors"), ("checkpoint", "sd1", None, "sd1")),
    (lambda d: factory.sd1_checkpoint(d / "sd1.ckpt", fmt="ckpt"), ("checkpoint", "sd1", None, "sd1")),
    (lambda d: factory.sd1_checkpoint(d / "sd1-legacy.ckpt", fmt="ckpt-legacy"), ("checkpoint", "sd1", None, "sd1")),
    (lambda d: factory.sd1_checkpoint(d / "sd1-inpainting.safetensors", inpainting=True),
     ("checkpoint", "sd1", "inpainting", "sd1")),
    (lambda d: factory.sd2_checkpoint(d / "sd2.safetensors"), ("checkpoint", "sd2", None, "sd2")),
    (lambda d: factory.sd2_checkpoint(d / "sd2-v.ckpt", fmt="ckpt", v_prediction=True),
     ("checkpoint", "sd2-v", None, "sd2")),
    (lambda d: factory.sd2_checkpoint(d / "sd2-inpainting.safetensors", inpainting=True),
     ("checkpoint", "sd2", "inpainting", "sd2")),
    (lambda d: factory.sdxl_checkpoint(d / "sdxl.safetensors"), ("checkpoint", "sdxl", None, "sdxl")),
    (lambda d: factory.sdxl_checkpoint(d / "refiner.safetensors", refiner=True),
     ("checkpoint", "sdxl-refiner", None, "sdxl")),
    (lambda d: factory.sdxl_checkpoint(d / "sdxl-inpainting.safetensors", inpainting=True),
     ("checkpoint", "sdxl", "inpainting", "sdxl")),
    (lambda d: factory.vae(d / "vae.safetensors"), ("vae", None, None, None)),
    (lambda d: factory.vae(d / "vae.pt", fmt="pt"), ("vae", None, None, None)),
], ids=["sd1", "sd1-ckpt", "sd1-ckpt-legacy", "sd1-inpainting", "sd2", "sd2-v", "sd2-inpainting", "sdxl",
        "sdxl-refiner", "sdxl-inpainting", "vae", "vae-pt"])
def test_checkpoints_and_vaes_are_identified(models: Path, make, expected) -> None:
    report = inspect_file(make(models))
    assert (report.kind, report.architecture, report.detection.variant, report.base_model) == expected
    assert [p.code for p in report.problems if p.severity == "error"] == []


@pytest.mark.parametrize("base", ["sd1", "sd2", "sdxl"])
@pytest.mark.parametrize("fmt", ["kohya", "peft", "locon", "loha", "lokr"])
def test_every_lora_flavour_and_its_base_are_identified(models: Path, base: str, fmt: str) -> None:
    report = inspect_file(factory.lora(models / f"lora-{base}-{fmt}.safetensors", base=base, fmt=fmt))
    assert (report.kind, report.detection.lora_flavour, report.base_model) == ("lora", fmt, base)
    assert "missing_vae" not in report.problem_codes()


def test_kohya_metadata_becomes_a_readable_summary(models: Path) -> None:
    report = inspect_file(factory.lora(models / "styled.safetensors", base="sd1", fmt="kohya"))
    summary = report.lora
    assert summary["network_module"] == "networks.lora"
    assert (summary["dim"], summary["alpha"]) == ("4", "2.0")
    assert summary["resolution"] == "(512, 512)"
    assert summary["base_model_version"] == "sd_v1"
    tags = json.loads(report.metadata["ss_tag_frequency"])
    merged: dict[str, int] = {}
    for dataset in tags.values():
        for tag, count in dataset.items():
            merged[tag.strip()] = merged.get(tag.strip(), 0) + count
    assert summary["top_tags"] == sorted(([t, c] for t, c in merged.items()), key=lambda tc: (-tc[1], tc[0]))[:10]


@pytest.mark.parametrize("fmt", ["pt", "safetensors"])
@pytest.mark.parametrize("base", ["sd1", "sdxl"])
def test_embeddings_in_both_formats(models: Path, fmt: str, base: str) -> None:
    report = inspect_file(factory.embedding(models / f"emb-{base}.{fmt}", base=base, fmt=fmt, vectors=3))
    assert report.kind == "embedding"
    assert report.detection.embedding_vectors == 3
    if base == "sdxl":
        assert report.base_model == "sdxl"
    assert report.problems == []


def test_ema_training_state_and_prune_savings_are_reported(models: Path) -> None:
    path = factory.sd1_checkpoint(models / "training.ckpt", fmt="ckpt", ema=True, training_state=True)
    report = inspect_file(path)
    assert report.ema and report.training_state
    assert "optimizer_states" in report.training_entries
    components = {c.name: c for c in report.components}
    assert components["ema"].parameters == components["unet"].parameters + 2  # + decay and num_updates
    assert report.prune["ema"] == "used"
    assert 0 < report.prune["bytes_saved"]["keep"] < report.prune["bytes_saved"]["fp16"] < path.stat().st_size
    assert "pickle_placeholders" in report.problem_codes()


def test_nan_in_a_vae_tensor_is_reported_for_the_vae(models: Path, sd1_state) -> None:
    state = dict(sd1_state)
    poisoned = state["first_stage_model.decoder.conv_out.weight"].clone()
    poisoned.view(-1)[:5] = float("nan")
    state["first_stage_model.decoder.conv_out.weight"] = poisoned
    report = inspect_file(_save(models / "nan-vae.safetensors", state))
    (problem,) = [p for p in report.problems if p.code == "nan"]
    assert problem.component == "vae" and problem.severity == "error"
    assert problem.tensors == ["first_stage_model.decoder.conv_out.weight"]
    assert "5 NaN" in problem.message
    assert {c.name: c.nan_values for c in report.components}["vae"] == 5
    assert {c.name: c.nan_values for c in report.components}["unet"] == 0


def test_broken_position_ids_are_reported(models: Path, sd1_state) -> None:
    state = dict(sd1_state)
    key = "cond_stage_model.transformer.text_model.embeddings.position_ids"
    broken = torch.arange(77, dtype=torch.float32).unsqueeze(0)
    broken[0, 20] = 19.9999  # what weighted-sum merges leave behind
    state[key] = broken
    report = inspect_file(_save(models / "merged.safetensors", state))
    (problem,) = [p for p in report.problems if p.code == "broken_position_ids"]
    assert problem.tensors == [key] and "--fix-clip" in problem.message


def test_missing_vae_is_reported(models: Path, sd1_state) -> None:
    state = {k: v for k, v in sd1_state.items() if not k.startswith("first_stage_model.")}
    report = inspect_file(_save(models / "no-vae.safetensors", state))
    assert "missing_vae" in report.problem_codes()
    assert "vae" not in {c.name for c in report.components}


def test_values_beyond_fp16_range_are_reported(models: Path, sd1_state) -> None:
    state = dict(sd1_state)
    key = "model.diffusion_model.out.2.weight"
    big = state[key].clone()
    big.view(-1)[:3] = torch.tensor([70000.0, -1e6, 65504.0])  # 65504 still fits
    state[key] = big
    report = inspect_file(_save(models / "overflow.safetensors", state))
    (problem,) = [p for p in report.problems if p.code == "fp16_overflow"]
    assert problem.tensors == [key] and problem.message.startswith("2 value(s)")


def test_unknown_keys_are_reported_and_quick_mode_skips_values(models: Path, sd1_state) -> None:
    state = dict(sd1_state)
    state["embedding_manager.junk"] = torch.zeros(3)
    state["first_stage_model.decoder.conv_out.bias"] = torch.full_like(state["first_stage_model.decoder.conv_out.bias"],
                                                                       float("inf"))
    path = _save(models / "junk.safetensors", state)
    report = inspect_file(path)
    assert "unknown_keys" in report.problem_codes() and "inf" in report.problem_codes()
    quick = inspect_file(path, check_values=False)
    assert "inf" not in quick.problem_codes() and not quick.values_checked
    assert quick.components[0].nan_values is None


def test_json_has_the_documented_stable_keys(models: Path) -> None:
    data = inspect_file(factory.sd1_checkpoint(models / "json.safetensors")).to_dict()
    assert data["schema"] == SCHEMA_VERSION
    assert list(data) == ["schema", "path", "format", "size", "kind", "architecture", "variant", "inpainting",
                          "base_model", "lora_flavour", "embedding_vectors", "evidence", "details", "dtype", "tensor_count",
                          "parameter_count", "components", "ema", "training_state", "training_entries", "metadata",
                          "lora", "problems", "prune", "values_checked", "reader", "quantisation"]
    assert list(data["components"][0]) == ["name", "tensors", "parameters", "bytes", "dtypes", "nan_values",
                                           "inf_values", "file"]
    json.dumps(data)  # serialisable as is
    documented = (Path(__file__).parents[2] / "docs" / "inspect-json.md").read_text()
    for key in data:
        assert f"`{key}`" in documented


def test_diffusers_folder(models: Path, pipeline_files: dict[str, bytes]) -> None:
    from safetensors import safe_open

    folder = models / "sd1-diffusers"
    for name, data in pipeline_files.items():  # a tiny SD1 pipeline as diffusers' save_pretrained wrote it
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(data)
    report = inspect_file(folder)
    assert (report.format, report.kind, report.architecture) == ("diffusers", "checkpoint", "sd1")
    components = {c.name: c for c in report.components}
    assert set(components) == {"unet", "vae", "text_encoder"}
    with safe_open(folder / "unet" / "diffusion_pytorch_model.safetensors", "pt") as unet:
        expected = sum(math.prod(unet.get_slice(key).get_shape()) for key in unet.keys())
    assert components["unet"].parameters == expected
    assert report.problems == []


def test_missing_and_unreadable_inputs_are_clear_errors(models: Path) -> None:
    with pytest.raises(NotFoundError):
        inspect_file(models / "nope.safetensors")
    (models / "empty-folder").mkdir()
    with pytest.raises(BadInputError, match="not a diffusers pipeline"):
        inspect_file(models / "empty-folder")
    (models / "text.safetensors").write_text("hello")
    with pytest.raises(BadInputError):
        inspect_file(models / "text.safetensors")
