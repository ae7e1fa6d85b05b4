"""``convert``: benign pickles become .safetensors holding exactly the same tensors."""

from __future__ import annotations

import hashlib
import os
import struct
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

from formats.benign import Benign, write_benign
from formats.torch_files import torch_load_trusted
from sdhub.errors import Interrupted, UsageError, VerificationError
from sdhub.formats import open_model
from sdhub.ops.convert import convert, convert_paths
from sdhub.progress import RecordingProgress
from sdhub.testing import factory
from sdhub.testing.images import assert_same_picture


@pytest.fixture(scope="module")
def benign(tmp_path_factory: pytest.TempPathFactory) -> list[Benign]:
    return write_benign(tmp_path_factory.mktemp("benign"))


def _assert_same(actual: dict[str, torch.Tensor], expected: dict[str, torch.Tensor], label: str) -> None:
    assert set(actual) == set(expected), (label, set(actual) ^ set(expected))
    for name, tensor in expected.items():
        assert actual[name].dtype == tensor.dtype, (label, name)
        assert actual[name].shape == tensor.shape, (label, name)
        assert torch.equal(actual[name], tensor), (label, name)


def test_every_benign_file_converts_tensor_for_tensor(benign: list[Benign], tmp_path: Path) -> None:
    covered = {case.name for case in benign}
    assert {"dtypes-zip", "dtypes-legacy", "views-zip", "shared-legacy", "parameters-zip", "training-legacy",
            "numpy-core-zip", "numpy-_core-zip", "numpy-core-legacy", "numpy-_core-legacy"} <= covered
    for case in benign:
        report = convert(case.path, tmp_path / f"{case.name}.safetensors")
        _assert_same(load_file(report.output), case.expected, case.name)


def test_metadata_records_format_origin_and_source_sha256(benign: list[Benign], tmp_path: Path) -> None:
    case = next(c for c in benign if c.name == "dtypes-zip")
    report = convert(case.path, tmp_path / "out.safetensors")
    with safe_open(report.output, "pt") as handle:
        metadata = handle.metadata()
    expected_sha = hashlib.sha256(case.path.read_bytes()).hexdigest()
    assert metadata["format"] == "pt"
    assert metadata["sdhub.converted_from"] == case.path.name
    assert metadata["sdhub.source_format"] == "torch-zip"
    assert metadata["sdhub.source_sha256"] == expected_sha == report.source_sha256


def test_training_extras_are_reported_and_dropped(benign: list[Benign], tmp_path: Path) -> None:
    case = next(c for c in benign if c.name == "training-zip")
    report = convert(case.path, tmp_path / "t.safetensors")
    assert report.placeholders == ["argparse.Namespace", "numpy.ndarray"]
    dropped = {entry.split(" ")[0] for entry in report.dropped}
    assert {"hyper_parameters", "tags", "frozen", "shape", "dtype", "curve", "note"} <= dropped
    assert report.extras["epoch"] == 3 and report.extras["global_step"] == 900
    assert report.extras["device"] == "cuda:0"
    assert report.extras["best_score"] == 0.25 and report.extras["steps"] == 900


@pytest.mark.parametrize("fmt", ["ckpt", "ckpt-legacy"])
def test_factory_sd1_with_ema_and_lightning_state_converts_exactly(tmp_path: Path, fmt: str) -> None:
    source = factory.sd1_checkpoint(tmp_path / f"sd1.{fmt}", fmt=fmt, ema=True, training_state=True)
    report = convert(source, verify=True)
    assert report.verified and Path(report.output) == tmp_path / "sd1.safetensors"
    assert "pytorch_lightning.callbacks.model_checkpoint.ModelCheckpoint" in report.placeholders
    assert {"optimizer_states (list)", "lr_schedulers (list)", "callbacks (dict)"} <= set(report.dropped)
    _assert_same(load_file(report.output), torch_load_trusted(source)["state_dict"], fmt)


@pytest.mark.parametrize("arch", ["sd2", "sdxl"])
def test_factory_sd2_and_sdxl_checkpoints_convert_exactly(tmp_path: Path, arch: str) -> None:
    write = factory.sd2_checkpoint if arch == "sd2" else factory.sdxl_checkpoint
    source = write(tmp_path / f"{arch}.ckpt", fmt="ckpt")
    report = convert(source)
    _assert_same(load_file(report.output), torch_load_trusted(source)["state_dict"], arch)


def test_a1111_embedding_pt_becomes_the_emb_params_layout(tmp_path: Path) -> None:
    source = factory.embedding(tmp_path / "style.pt", fmt="pt", vectors=2)
    report = convert(source)
    converted = load_file(report.output)
    assert list(converted) == ["emb_params"] and report.embedding_layout
    assert torch.equal(converted["emb_params"], torch_load_trusted(source)["string_to_param"]["*"].detach())
    assert report.extras["name"] == "style" and report.extras["step"] == 500


def test_vae_pt_keeps_its_loss_keys(tmp_path: Path) -> None:
    source = factory.vae(tmp_path / "vae.pt", fmt="pt")
    report = convert(source)
    converted = load_file(report.output)
    assert {"loss.logvar", "loss.discriminator.main.0.weight"} <= set(converted)
    _assert_same(converted, torch_load_trusted(source)["state_dict"], "vae")


def test_converted_sd1_draws_the_same_image_in_diffusers(tmp_path: Path) -> None:
    from diffusers import StableDiffusionPipeline

    source = factory.sd1_checkpoint(tmp_path / "sd1.ckpt", fmt="ckpt")
    config = factory.diffusers_config_dir(tmp_path / "config", arch="sd1")
    converted = convert(source).output
    images = []
    for path in (source, converted):
        pipe = StableDiffusionPipeline.from_single_file(str(path), config=str(config), local_files_only=True)
        pipe.set_progress_bar_config(disable=True)
        images.append(pipe("a photo of a cat", num_inference_steps=3, height=64, width=64, output_type="np",
                           generator=torch.Generator().manual_seed(0)).images[0])
    assert images[0].std() > 0.01
    assert_same_picture(images[0], images[1])


@pytest.mark.parametrize("choice, dtype", [("fp16", torch.float16), ("bf16", torch.bfloat16), ("fp32", torch.float32)])
def test_dtype_casts_floats_only(benign: list[Benign], tmp_path: Path, choice: str, dtype: torch.dtype) -> None:
    for case in (c for c in benign if c.name in ("dtypes-zip", "views-legacy", "shared-zip")):
        report = convert(case.path, tmp_path / f"{case.name}-{choice}.safetensors", dtype=choice, verify=True)
        assert report.verified
        converted = load_file(report.output)
        for name, tensor in case.expected.items():
            want = tensor.to(dtype) if tensor.is_floating_point() else tensor
            assert converted[name].dtype == want.dtype and torch.equal(converted[name], want), (case.name, name)


def test_fp16_overflow_is_refused_and_leaves_nothing(tmp_path: Path) -> None:
    source = tmp_path / "big.ckpt"
    torch.save({"w": torch.tensor([1.0, 1e6])}, source)
    with pytest.raises(VerificationError, match="fp16"):
        convert(source, dtype="fp16")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["big.ckpt"]


def test_existing_output_needs_overwrite(benign: list[Benign], tmp_path: Path) -> None:
    case = next(c for c in benign if c.name == "dtypes-zip")
    out = tmp_path / "out.safetensors"
    out.write_bytes(b"keep me")
    with pytest.raises(UsageError, match="already exists"):
        convert(case.path, out)
    assert out.read_bytes() == b"keep me"
    convert(case.path, out, overwrite=True)
    _assert_same(load_file(out), case.expected, "overwrite")


def test_folder_converts_every_pickle_and_skips_converted_ones(tmp_path: Path) -> None:
    folder = tmp_path / "models"
    (folder / "sub").mkdir(parents=True)
    torch.save({"a": torch.ones(2)}, folder / "a.ckpt")
    torch.save({"b": torch.ones(3)}, folder / "b.pt")
    torch.save({"d": torch.ones(4)}, folder / "sub" / "d.pth")
    (folder / "a.safetensors").write_bytes(b"already converted")
    factory.sd1_checkpoint(folder / "c.safetensors")

    reports = convert_paths([folder])

    status = {Path(r.source).name: r.status for r in reports}
    assert status == {"a.ckpt": "skipped", "b.pt": "converted", "d.pth": "converted"}
    assert (folder / "a.safetensors").read_bytes() == b"already converted"
    assert torch.equal(load_file(folder / "sub" / "d.safetensors")["d"], torch.ones(4))


def test_delete_original_removes_the_source_only_after_success(tmp_path: Path) -> None:
    good, bad = tmp_path / "good.ckpt", tmp_path / "bad.ckpt"
    torch.save({"w": torch.ones(2)}, good)
    torch.save({"w": torch.tensor([1e6])}, bad)
    report = convert(good, delete_original=True)
    assert report.deleted_original and not good.exists() and Path(report.output).exists()
    with pytest.raises(VerificationError):
        convert(bad, dtype="fp16", delete_original=True)
    assert bad.exists()


def test_progress_reports_every_byte_written(benign: list[Benign], tmp_path: Path) -> None:
    case = next(c for c in benign if c.name == "views-zip")
    progress = RecordingProgress()
    report = convert(case.path, tmp_path / "v.safetensors", progress=progress)
    task = progress.tasks[0]
    data_bytes = sum(t.numel() * t.element_size() for t in case.expected.values())
    assert task.unit == "bytes" and task.total == data_bytes == task.completed and task.finished
    assert report.bytes_written > data_bytes


def test_interrupt_leaves_no_partial_output(tmp_path: Path) -> None:
    source = tmp_path / "slow.ckpt"
    torch.save({f"w{i}": torch.ones(1000) for i in range(20)}, source)

    class StopHalfway(RecordingProgress):
        def task(self, description, total=None, unit=""):
            task = super().task(description, total, unit)
            original = task.advance

            def advance(amount=1):
                original(amount)
                if task.completed > (total or 0) / 2:
                    raise KeyboardInterrupt
            task.advance = advance
            return task

    with pytest.raises(Interrupted):
        convert(source, progress=StopHalfway())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["slow.ckpt"]


def test_strided_tensor_is_materialised_without_loading_the_file(tmp_path: Path) -> None:
    source = tmp_path / "t.ckpt"
    base = torch.arange(12, dtype=torch.float32).view(3, 4)
    torch.save({"t": base.t()}, source)
    with open_model(source) as model:
        assert model.raw_source("t") is None  # a view: produced as one tensor
        assert torch.equal(model.load("t"), base.t())
    assert torch.equal(load_file(convert(source).output)["t"], base.t().contiguous())


def test_output_is_readable_by_safetensors_and_aligned(benign: list[Benign], tmp_path: Path) -> None:
    case = next(c for c in benign if c.name == "dtypes-legacy")
    out = Path(convert(case.path, tmp_path / "x.safetensors").output)
    raw = out.read_bytes()
    (length,) = struct.unpack("<Q", raw[:8])
    assert length % 8 == 0
    with safe_open(out, "pt") as handle:
        for name in handle.keys():
            start = handle.get_slice(name)  # opens without error
            assert start is not None
    assert oct(os.stat(out).st_mode & 0o777) != oct(0o600)


def test_verify_catches_an_output_that_differs_from_the_source(tmp_path: Path) -> None:
    from sdhub.ops.convert import verify_conversion

    source = tmp_path / "w.ckpt"
    torch.save({"w": torch.arange(16, dtype=torch.float32)}, source)
    out = Path(convert(source).output)
    data = bytearray(out.read_bytes())
    data[-1] ^= 0x40  # flip one bit of the last element
    out.write_bytes(bytes(data))
    with open_model(source) as model, pytest.raises(VerificationError, match="'w' differs"):
        verify_conversion(model, out, None)


def test_safetensors_input_converts_only_with_a_dtype_change(tmp_path: Path) -> None:
    source = factory.sd1_checkpoint(tmp_path / "m.safetensors")
    with pytest.raises(UsageError, match="already .safetensors"):
        convert(source, tmp_path / "copy.safetensors")
    report = convert(source, tmp_path / "half.safetensors", dtype="fp16", verify=True)
    assert report.verified and report.source_format == "safetensors"


def test_fp16_range_edge_is_exact(tmp_path: Path) -> None:
    """65519 still rounds to fp16's largest value (65504); 65520 would become inf and is refused."""
    fine, over = tmp_path / "fine.ckpt", tmp_path / "over.ckpt"
    torch.save({"w": torch.tensor([65519.0, -65519.0, 1.0, float("nan")])}, fine)
    torch.save({"w": torch.tensor([1.0, -65520.0])}, over)
    converted = load_file(convert(fine, dtype="fp16").output)["w"]
    assert torch.equal(converted[:3], torch.tensor([65504.0, -65504.0, 1.0]).half()) and converted[3].isnan()
    with pytest.raises(VerificationError, match="1 value"):
        convert(over, dtype="fp16")


def test_old_a1111_embedding_holding_a_parameter_dict(tmp_path: Path) -> None:
    """Early A1111 embeddings pickled string_to_param as an nn.ParameterDict module."""
    vectors = torch.randn(2, 768)
    source = tmp_path / "old-style.pt"
    torch.save({"string_to_token": {"*": 265}, "name": "old-style", "step": 10,
                "string_to_param": torch.nn.ParameterDict({"*": torch.nn.Parameter(vectors.clone())})}, source)
    report = convert(source)
    assert report.embedding_layout and "torch.nn.modules.container.ParameterDict" in report.placeholders
    assert torch.equal(load_file(report.output)["emb_params"], vectors)


def test_plain_conversion_runs_without_loading_torch(tmp_path: Path) -> None:
    """A conversion that copies tensor bytes unchanged never pays torch's start-up (0.8 s, 200 MB)."""
    source = factory.sd1_checkpoint(tmp_path / "model.ckpt", fmt="ckpt", ema=True)
    code = ("import sys; from sdhub.ops.convert import convert; "
            "report = convert(sys.argv[1], sys.argv[2]); "
            "print(report.status, 'torch' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code, str(source), str(tmp_path / "out.safetensors")],
                          capture_output=True, text=True, check=True)
    assert done.stdout.split() == ["converted", "False"]
    with safe_open(tmp_path / "out.safetensors", "pt") as converted:
        assert len(list(converted.keys())) == len(torch_load_trusted(source)["state_dict"])
