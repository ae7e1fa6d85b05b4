"""LoRA-family networks merged into real tiny diffusers pipelines, compared with diffusers' own loader."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from sdhub.errors import BadInputError
from sdhub.generate.lora import NetworkUse, apply_loras, kohya_module_names, load_lora, pipeline_components
from sdhub.testing import factory


def _load_sd1(folder: Path):
    from diffusers import StableDiffusionPipeline

    checkpoint = folder / "tiny-sd1.safetensors"
    if not checkpoint.exists():
        factory.sd1_checkpoint(checkpoint)
        factory.diffusers_config_dir(folder / "config", arch="sd1")
    pipe = StableDiffusionPipeline.from_single_file(str(checkpoint), config=str(folder / "config"),
                                                    local_files_only=True, safety_checker=None)
    pipe.set_progress_bar_config(disable=True)
    return pipe


@pytest.fixture(scope="module")
def sd1_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("sd1")
    factory.sd1_checkpoint(folder / "tiny-sd1.safetensors")
    factory.diffusers_config_dir(folder / "config", arch="sd1")
    factory.lora(folder / "detail.safetensors", base="sd1", fmt="kohya")
    return folder


@pytest.fixture(scope="module")
def sd1_pipe(sd1_folder: Path):
    """One pipeline shared by the tests: every test restores its weights (which one test checks)."""
    return _load_sd1(sd1_folder)


def _latents(pipe) -> torch.Tensor:
    generator = torch.Generator().manual_seed(42)
    return pipe("a cat", num_inference_steps=1, height=64, width=64, guidance_scale=7.0, generator=generator,
                output_type="latent").images


def _weights(pipe) -> dict[str, torch.Tensor]:
    state = {f"unet.{k}": v.clone() for k, v in pipe.unet.state_dict().items()}
    state.update({f"te.{k}": v.clone() for k, v in pipe.text_encoder.state_dict().items()})
    return state


def test_weight_one_equals_diffusers_lora_loading(sd1_folder: Path, sd1_pipe):
    lora_path = sd1_folder / "detail.safetensors"
    ours = sd1_pipe
    with apply_loras(ours, [NetworkUse(load_lora(lora_path), 1.0, 1.0)]) as applied:
        assert applied.unmatched == {}
        our_weights, our_latents = _weights(ours), _latents(ours)

    reference = _load_sd1(sd1_folder)
    reference.load_lora_weights(str(lora_path))
    reference_latents = _latents(reference)  # diffusers runs the LoRA as extra layers (unfused)
    torch.testing.assert_close(our_latents, reference_latents, rtol=1e-4, atol=1e-5)
    reference.fuse_lora()
    reference.unload_lora_weights()
    fused = _weights(reference)
    assert set(fused) == set(our_weights)
    for key, value in our_weights.items():
        torch.testing.assert_close(value, fused[key], rtol=0, atol=1e-7, msg=key)


def test_weight_zero_is_bit_identical_to_no_lora_and_restore_is_exact(sd1_folder: Path, sd1_pipe):
    pipe = sd1_pipe
    baseline_weights, baseline = _weights(pipe), _latents(pipe)
    network = load_lora(sd1_folder / "detail.safetensors")
    with apply_loras(pipe, [NetworkUse(network, 0.0, 0.0)]):
        assert torch.equal(_latents(pipe), baseline)
    with apply_loras(pipe, [NetworkUse(network, 0.8, 0.8)]):
        assert not torch.allclose(_latents(pipe), baseline)
    after = _weights(pipe)
    assert all(torch.equal(after[k], baseline_weights[k]) for k in baseline_weights)
    assert torch.equal(_latents(pipe), baseline)


def test_text_encoder_and_unet_multipliers_are_separate(sd1_folder: Path, sd1_pipe):
    pipe = sd1_pipe
    before = _weights(pipe)
    network = load_lora(sd1_folder / "detail.safetensors")
    with apply_loras(pipe, [NetworkUse(network, te_multiplier=0.5, unet_multiplier=0.0)]):
        now = _weights(pipe)
        assert all(torch.equal(now[k], before[k]) for k in now if k.startswith("unet."))
        assert any(not torch.equal(now[k], before[k]) for k in now if k.startswith("te."))


def test_delta_follows_up_down_alpha_over_rank_times_multiplier(sd1_folder: Path, sd1_pipe):
    pipe = sd1_pipe
    tensors = load_file(str(sd1_folder / "detail.safetensors"))
    name = "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q"
    up, down, alpha = tensors[f"{name}.lora_up.weight"], tensors[f"{name}.lora_down.weight"], tensors[f"{name}.alpha"]
    module = pipe.unet.down_blocks[0].attentions[0].transformer_blocks[0].attn1.to_q
    original = module.weight.detach().clone()
    with apply_loras(pipe, [NetworkUse(load_lora(sd1_folder / "detail.safetensors"), 0.7, 0.7)]):
        expected = original + (up @ down) * (alpha.item() / down.shape[0]) * 0.7
        torch.testing.assert_close(module.weight, expected, rtol=0, atol=1e-6)


@pytest.mark.parametrize("fmt", ["locon", "loha", "lokr"])
def test_lycoris_formats_apply_their_own_formula(sd1_folder: Path, sd1_pipe, tmp_path: Path, fmt: str):
    path = factory.lora(tmp_path / f"{fmt}.safetensors", base="sd1", fmt=fmt)
    tensors = load_file(str(path))
    pipe = sd1_pipe
    names = kohya_module_names(pipeline_components(pipe))
    originals = {name: module.weight.detach().clone() for name, module in names.items()}
    with apply_loras(pipe, [NetworkUse(load_lora(path), 1.0, 1.0)]) as applied:
        assert applied.unmatched == {}
        checked = 0
        for name in {key.split(".")[0] for key in tensors}:
            module, original = names[name], originals[name]
            t = {key[len(name) + 1:]: value for key, value in tensors.items() if key.startswith(name + ".")}
            if fmt == "locon":
                rank = t["lora_down.weight"].shape[0]
                delta = t["lora_up.weight"].flatten(1) @ t["lora_down.weight"].flatten(1) * (t["alpha"].item() / rank)
            elif fmt == "loha":
                rank = t["hada_w1_b"].shape[0]
                delta = (t["hada_w1_a"] @ t["hada_w1_b"]) * (t["hada_w2_a"] @ t["hada_w2_b"]) * (t["alpha"].item() / rank)
            else:
                rank = t["lokr_w2_b"].shape[0]
                delta = torch.kron(t["lokr_w1"], t["lokr_w2_a"] @ t["lokr_w2_b"]) * (t["alpha"].item() / rank)
            torch.testing.assert_close(module.weight, original + delta.reshape(original.shape), rtol=0, atol=1e-5)
            checked += 1
        assert checked == len(applied.backups) > 0
        if fmt == "locon":  # 3x3 convolutions of the resnets are patched too
            assert any(m.weight.ndim == 4 and m.weight.shape[-1] == 3 for m in applied.backups)


def test_unknown_module_names_are_reported_not_applied(sd1_folder: Path, sd1_pipe, tmp_path: Path):
    from safetensors.torch import save_file

    path = tmp_path / "odd.safetensors"
    save_file({"lora_unet_nowhere_to_q.lora_down.weight": torch.zeros(4, 8),
               "lora_unet_nowhere_to_q.lora_up.weight": torch.zeros(8, 4)}, str(path))
    pipe = sd1_pipe
    with apply_loras(pipe, [NetworkUse(load_lora(path))]) as applied:
        assert applied.unmatched == {"odd": ["lora_unet_nowhere_to_q"]}
        assert applied.matched == {"odd": 0}


def test_a_file_without_lora_weights_is_refused(tmp_path: Path):
    from safetensors.torch import save_file

    path = tmp_path / "not-a-lora.safetensors"
    save_file({"model.weight": torch.zeros(2, 2)}, str(path))
    with pytest.raises(BadInputError, match="no kohya/LyCORIS"):
        load_lora(path)


def test_sdxl_lora_with_sgm_unet_names_matches_every_module(tmp_path: Path):
    from diffusers import StableDiffusionXLPipeline

    checkpoint = factory.sdxl_checkpoint(tmp_path / "tiny-sdxl.safetensors")
    config = factory.diffusers_config_dir(tmp_path / "config", arch="sdxl")
    pipe = StableDiffusionXLPipeline.from_single_file(str(checkpoint), config=str(config), local_files_only=True)
    network = load_lora(factory.lora(tmp_path / "xl.safetensors", base="sdxl"))
    assert any(name.startswith("lora_unet_input_blocks") for name in network.modules)
    assert any(name.startswith("lora_te2_") for name in network.modules)
    with apply_loras(pipe, [NetworkUse(network)]) as applied:
        assert applied.unmatched == {}
        assert applied.matched["xl"] == len(network.modules)


def test_prompt_tags_resolve_to_files_with_a1111_hashes(tmp_path: Path):
    import hashlib
    import struct

    from safetensors.torch import save_file

    from sdhub.generate.extra_networks import extract_extra_networks
    from sdhub.generate.lora import resolve_loras

    folder = tmp_path / "loras"
    trained = factory.lora(folder / "add_detail.safetensors")  # kohya metadata carries sshs_model_hash
    plain = folder / "sub" / "plain.safetensors"
    plain.parent.mkdir()
    save_file({"lora_te_x.lora_down.weight": torch.ones(1, 2), "lora_te_x.lora_up.weight": torch.ones(2, 1)},
              str(plain), metadata={"ss_output_name": "Plain Style"})
    _, tags = extract_extra_networks("<lora:add_detail:0.6> <lyco:Plain Style:0.2:0.4> <lora:absent>")
    resolved = resolve_loras(tags, folder)
    assert [(u.network.name, u.te_multiplier, u.unet_multiplier) for u in resolved.uses] == [
        ("add_detail", 0.6, 0.6), ("Plain Style", 0.2, 0.4)]
    assert resolved.missing == ["absent"]
    embedded = load_lora(trained).metadata.get("sshs_model_hash")
    data = plain.read_bytes()
    header = struct.unpack("<Q", data[:8])[0]
    addnet = hashlib.sha256(data[8 + header:]).hexdigest()[:12]
    assert resolved.hashes["Plain Style"] == addnet
    assert embedded and resolved.hashes["add_detail"] == embedded[:12]  # A1111 trusts the trainer's hash


def test_peft_format_lora_equals_diffusers_loading(sd1_folder: Path, sd1_pipe, tmp_path: Path):
    path = factory.lora(tmp_path / "peft.safetensors", base="sd1", fmt="peft")
    with apply_loras(sd1_pipe, [NetworkUse(load_lora(path))]) as applied:
        assert applied.unmatched == {} and applied.matched["peft"] > 0
        ours = _weights(sd1_pipe)
    reference = _load_sd1(sd1_folder)
    reference.load_lora_weights(str(path))
    reference.fuse_lora()
    reference.unload_lora_weights()
    fused = _weights(reference)
    for key, value in ours.items():
        torch.testing.assert_close(value, fused[key], rtol=0, atol=1e-6, msg=key)
