"""prune: EMA, precision, VAE, CLIP repair and refusals, checked tensor by tensor against the source."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from sdhub.errors import UsageError, VerificationError
from sdhub.models.components import ema_key_for
from sdhub.ops.hashing import hash_components
from sdhub.ops.inspect import inspect_file
from sdhub.ops.prune import PruneOptions, prune
from sdhub.testing import factory

UNET = "model.diffusion_model."
POSITION_IDS = "cond_stage_model.transformer.text_model.embeddings.position_ids"


@pytest.fixture(scope="module")
def ema_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return factory.sd1_checkpoint(tmp_path_factory.mktemp("ema") / "sd1-ema.ckpt", fmt="ckpt", ema=True)


@pytest.fixture(scope="module")
def source_state(ema_checkpoint: Path) -> dict[str, torch.Tensor]:
    return torch.load(ema_checkpoint, weights_only=True)["state_dict"]  # a file this test suite wrote


def test_ema_use_writes_exactly_the_ema_weights_under_the_model_names(ema_checkpoint: Path, source_state,
                                                                      tmp_path: Path) -> None:
    report = prune(ema_checkpoint, tmp_path / "emaonly.safetensors", PruneOptions(ema="use", dtype="keep"))
    out = load_file(report.output)
    unet_keys = [k for k in source_state if k.startswith(UNET)]
    assert report.ema == "used" and report.ema_tensors_used == len(unet_keys)
    assert not any(k.startswith("model_ema.") for k in out)
    for key in unet_keys:
        assert torch.equal(out[key], source_state[ema_key_for(key)]), key
        assert not torch.equal(out[key], source_state[key])  # the factory's EMA differs from the live weights
    for key, value in source_state.items():
        if not key.startswith(("model_ema.", UNET)):
            assert torch.equal(out[key], value), key
    assert set(out) == {k for k in source_state if not k.startswith("model_ema.")}


def test_fp16_prune_equals_torch_casts_and_records_the_source(ema_checkpoint: Path, source_state,
                                                              tmp_path: Path) -> None:
    report = prune(ema_checkpoint, tmp_path / "fp16.safetensors")  # defaults: EMA used, fp16
    out = load_file(report.output)
    for key, tensor in out.items():
        source = source_state[ema_key_for(key)] if key.startswith(UNET) else source_state[key]
        if key == POSITION_IDS:
            assert tensor.dtype == torch.int64 and torch.equal(tensor, source)
        elif key in ("betas", "alphas_cumprod") or not key.startswith(("model.", "first_stage", "cond_stage")):
            assert torch.equal(tensor, source)  # the noise schedule keeps full precision
        else:
            assert tensor.dtype == torch.float16
            assert torch.equal(tensor, source.to(torch.float16)), key
    with safe_open(report.output, "pt") as handle:
        metadata = handle.metadata()
    expected_sha = hashlib.sha256(ema_checkpoint.read_bytes()).hexdigest()
    assert metadata["sdhub.source_sha256"] == report.source_sha256 == expected_sha
    assert report.bytes_before == ema_checkpoint.stat().st_size
    assert report.bytes_after == Path(report.output).stat().st_size < report.bytes_before / 3


def test_pruned_fp16_file_loads_in_diffusers_and_generates(ema_checkpoint: Path, source_state, tmp_path: Path) -> None:
    from diffusers import StableDiffusionPipeline

    report = prune(ema_checkpoint, tmp_path / "for-diffusers.safetensors", PruneOptions(dtype="fp16"))
    config = factory.diffusers_config_dir(tmp_path / "config", arch="sd1")
    pipeline = StableDiffusionPipeline.from_single_file(report.output, config=str(config), local_files_only=True,
                                                        safety_checker=None, torch_dtype=torch.float32)
    key = UNET + "input_blocks.0.0.weight"
    expected = source_state[ema_key_for(key)].to(torch.float16).to(torch.float32)
    assert torch.equal(pipeline.unet.conv_in.weight.detach(), expected)
    image = pipeline("a photo", num_inference_steps=2, height=64, width=64, output_type="np",
                     generator=torch.Generator().manual_seed(0)).images[0]
    assert image.shape == (64, 64, 3) and bool((image == image).all())  # finite, not NaN


def test_inspect_predicts_the_pruned_size(ema_checkpoint: Path, tmp_path: Path) -> None:
    predicted = inspect_file(ema_checkpoint, check_values=False).prune["size_after"]["fp16"]
    report = prune(ema_checkpoint, tmp_path / "predicted.safetensors")
    assert abs(report.bytes_after - predicted) <= 16


def test_refuses_to_overwrite_its_input(tmp_path: Path) -> None:
    model = factory.sd1_checkpoint(tmp_path / "model.safetensors")
    before = model.read_bytes()
    with pytest.raises(UsageError, match="never overwrites its input"):
        prune(model, model)
    assert model.read_bytes() == before


def test_ema_use_on_a_file_without_ema_is_refused(tmp_path: Path) -> None:
    model = factory.sd1_checkpoint(tmp_path / "model.safetensors")
    with pytest.raises(UsageError, match="no EMA weights"):
        prune(model, tmp_path / "out.safetensors", PruneOptions(ema="use"))
    assert prune(model, tmp_path / "out.safetensors").ema == "none"


def test_bake_and_drop_a_vae(tmp_path: Path) -> None:
    model = factory.sd1_checkpoint(tmp_path / "model.safetensors", seed=1)
    vae = factory.vae(tmp_path / "other.pt", fmt="pt", seed=5)
    baked = prune(model, tmp_path / "baked.safetensors", PruneOptions(dtype="keep", vae="bake", vae_file=str(vae)))
    assert hash_components(baked.output)["vae"] == hash_components(vae)["vae"] != hash_components(model)["vae"]
    assert not any(k.startswith("loss.") for k in load_file(baked.output))  # the VAE's discriminator stays out
    dropped = prune(model, tmp_path / "novae.safetensors", PruneOptions(vae="drop"))
    assert dropped.dropped["vae"] > 0
    assert "missing_vae" in inspect_file(dropped.output, check_values=False).problem_codes()


def test_vae_can_stay_fp32_while_the_rest_is_fp16(tmp_path: Path) -> None:
    model = factory.sd1_checkpoint(tmp_path / "model.safetensors")
    out = load_file(prune(model, tmp_path / "out.safetensors", PruneOptions(vae_dtype="fp32")).output)
    assert out["first_stage_model.decoder.conv_out.weight"].dtype == torch.float32
    assert out[UNET + "out.2.weight"].dtype == torch.float16


def test_broken_position_ids_are_repaired_only_when_asked(tmp_path: Path) -> None:
    state = factory.tiny_state_dicts("sd1")
    broken = torch.arange(77, dtype=torch.float32).unsqueeze(0)
    broken[0, 40] = 39.9999
    state[POSITION_IDS] = broken
    save_file(state, tmp_path / "merged.safetensors")
    kept = prune(tmp_path / "merged.safetensors", tmp_path / "kept.safetensors")
    assert any("--fix-clip" in w for w in kept.warnings)
    assert torch.equal(load_file(kept.output)[POSITION_IDS], broken)  # never cast, never silently changed
    fixed = prune(tmp_path / "merged.safetensors", tmp_path / "fixed.safetensors", PruneOptions(fix_clip=True))
    assert fixed.position_ids_fixed == [POSITION_IDS]
    repaired = load_file(fixed.output)[POSITION_IDS]
    assert repaired.dtype == torch.int64 and torch.equal(repaired, torch.arange(77).unsqueeze(0))
    assert "broken_position_ids" not in inspect_file(fixed.output).problem_codes()


def test_fp16_overflow_stops_unless_forced_and_leaves_no_file(tmp_path: Path) -> None:
    state = factory.tiny_state_dicts("sd1")
    state[UNET + "out.2.bias"] = torch.tensor([1.0, 1e5, 2.0, -3.0])
    save_file(state, tmp_path / "hot.safetensors")
    with pytest.raises(VerificationError, match="out.2.bias.*--force"):
        prune(tmp_path / "hot.safetensors", tmp_path / "hot-fp16.safetensors")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["hot.safetensors"]
    forced = prune(tmp_path / "hot.safetensors", tmp_path / "hot-fp16.safetensors", PruneOptions(force=True))
    assert load_file(forced.output)[UNET + "out.2.bias"].tolist() == [1.0, 65504.0, 2.0, -3.0]
    bf16 = load_file(prune(tmp_path / "hot.safetensors", tmp_path / "hot-bf16.safetensors",
                           PruneOptions(dtype="bf16")).output)
    assert torch.equal(bf16[UNET + "out.2.bias"], state[UNET + "out.2.bias"].to(torch.bfloat16))


def test_loras_take_the_cast_path_and_keep_their_metadata(tmp_path: Path) -> None:
    lora = factory.lora(tmp_path / "lora.safetensors", base="sd1", fmt="kohya")
    out = prune(lora, tmp_path / "lora-fp16.safetensors")
    source = load_file(lora)
    pruned = load_file(out.output)
    assert set(pruned) == set(source)
    assert all(torch.equal(pruned[k], v.to(torch.float16)) for k, v in source.items())
    with safe_open(out.output, "pt") as handle:
        assert handle.metadata()["ss_network_dim"] == "4"


def test_an_embedding_is_refused_with_nothing_written(tmp_path: Path) -> None:
    # Nothing to prune in it (no EMA, training state or VAE), and a copy beside it in embeddings/ would be
    # loaded by A1111 as a second embedding; a .pt becomes .safetensors with convert.
    embedding = factory.embedding(tmp_path / "emb.pt", fmt="pt")
    with pytest.raises(UsageError, match="textual-inversion embedding: there is nothing to prune"):
        prune(embedding, tmp_path / "emb.safetensors")
    assert [p.name for p in tmp_path.iterdir()] == ["emb.pt"]


def test_training_state_is_dropped_or_kept(tmp_path: Path) -> None:
    vae = factory.vae(tmp_path / "vae-training.pt", fmt="pt")
    dropped = prune(vae, tmp_path / "vae.safetensors", PruneOptions(dtype="keep"))
    assert dropped.dropped["training"] == 3
    kept = load_file(prune(vae, tmp_path / "vae-kept.safetensors",
                           PruneOptions(dtype="keep", keep_training_state=True)).output)
    assert "loss.discriminator.main.0.weight" in kept


def test_an_existing_output_is_replaced_only_when_asked(tmp_path: Path) -> None:
    model = factory.sd1_checkpoint(tmp_path / "model.safetensors")
    (tmp_path / "model-pruned.safetensors").write_bytes(b"someone else's file")
    with pytest.raises(UsageError, match="already exists"):
        prune(model)
    assert (tmp_path / "model-pruned.safetensors").read_bytes() == b"someone else's file"
    report = prune(model, overwrite=True)
    assert report.output == str(tmp_path / "model-pruned.safetensors")
    assert inspect_file(report.output, check_values=False).kind == "checkpoint"


def test_v_prediction_survives_pruning(tmp_path: Path) -> None:
    model = factory.sd2_checkpoint(tmp_path / "sd2-768-v.ckpt", fmt="ckpt", v_prediction=True)
    report = prune(model, tmp_path / "sd2-768-v-pruned.safetensors")
    assert inspect_file(report.output, check_values=False).architecture == "sd2-v"  # no .yaml beside it


def test_a_diffusers_layout_vae_is_baked_under_the_original_names(tmp_path: Path) -> None:
    """Hub VAEs (``diffusion_pytorch_model.safetensors``) have diffusers names; checkpoints need the original ones."""
    import json

    from diffusers import AutoencoderKL
    from diffusers.loaders.single_file_utils import convert_ldm_vae_checkpoint

    model = factory.sd1_checkpoint(tmp_path / "model.safetensors", seed=1)
    original_file = factory.vae(tmp_path / "vae.safetensors", seed=5)
    original = load_file(str(original_file))
    config = json.loads((factory.diffusers_config_dir(tmp_path / "config") / "vae" / "config.json").read_text())
    renamed = convert_ldm_vae_checkpoint(dict(original), AutoencoderKL.from_config(config).config)  # diffusers' own
    assert any(".up_blocks." in name for name in renamed) and any(t.dim() == 2 for t in renamed.values())
    hub_file = tmp_path / "diffusion_pytorch_model.safetensors"
    save_file({name: tensor.contiguous() for name, tensor in renamed.items()}, str(hub_file))

    for dtype, cast in (("keep", lambda t: t), ("fp16", lambda t: t.to(torch.float16))):
        baked = prune(model, tmp_path / f"baked-{dtype}.safetensors",
                      PruneOptions(dtype=dtype, vae="bake", vae_file=str(hub_file)))
        written = load_file(baked.output)
        vae_names = {name for name in written if name.startswith("first_stage_model.")}
        assert vae_names == {"first_stage_model." + name for name in original}
        for name, tensor in original.items():
            assert torch.equal(written["first_stage_model." + name], cast(tensor)), name
    assert hash_components(tmp_path / "baked-keep.safetensors")["vae"] == hash_components(original_file)["vae"]
