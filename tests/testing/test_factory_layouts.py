"""The factory's files have the key names, nesting and containers of real Stable Diffusion files."""

from __future__ import annotations

import hashlib
import json
import pickle
import pickletools
import types
import zipfile

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

from sdhub.testing import adapters, factory

LIGHTNING_GLOBAL = "pytorch_lightning.callbacks.model_checkpoint ModelCheckpoint"
TORCH_LEGACY_MAGIC = (0x1950A86A20F9469CFC6C).to_bytes(10, "little")


class Placeholder:
    """What a test unpickler puts where the Lightning class was."""


class _LightningUnpickler(pickle.Unpickler):
    def find_class(self, module, name):
        if f"{module} {name}" == LIGHTNING_GLOBAL:
            return Placeholder
        return super().find_class(module, name)


# torch.load(pickle_module=...) subclasses .Unpickler; the legacy format also calls .load.
placeholder_pickle = types.SimpleNamespace(
    Unpickler=_LightningUnpickler, load=lambda file, **kw: _LightningUnpickler(file, **kw).load(), __name__="test")


def pickle_globals(data: bytes) -> set[str]:
    return {str(arg) for op, arg, _ in pickletools.genops(data) if op.name == "GLOBAL"}


def test_sd1_has_the_canonical_ldm_keys_and_shapes(tmp_path):
    state = load_file(factory.sd1_checkpoint(tmp_path / "tiny.safetensors"))

    assert state["model.diffusion_model.input_blocks.0.0.weight"].shape == (32, 4, 3, 3)
    assert state["model.diffusion_model.input_blocks.1.1.proj_in.weight"].ndim == 4  # SD1: 1x1 conv projections
    assert state["model.diffusion_model.input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight"].shape == (32, 32)
    assert state["model.diffusion_model.out.2.weight"].shape == (4, 32, 3, 3)
    assert {"time_embed.0.weight", "time_embed.2.weight", "middle_block.2.out_layers.3.weight",
            "input_blocks.11.0.in_layers.0.weight", "output_blocks.11.1.proj_out.weight"} <= {
        k.removeprefix("model.diffusion_model.") for k in state}
    assert not any(k.startswith("model.diffusion_model.input_blocks.12.") for k in state)
    for side in ("encoder", "decoder"):
        for part in ("q", "k", "v", "proj_out"):
            assert state[f"first_stage_model.{side}.mid.attn_1.{part}.weight"].shape == (32, 32, 1, 1)
    # LDM numbers decoder levels from the highest resolution: up.0 has no upsampler, up.3 does.
    assert "first_stage_model.decoder.up.3.upsample.conv.weight" in state
    assert "first_stage_model.decoder.up.0.upsample.conv.weight" not in state
    assert state["first_stage_model.decoder.up.1.block.0.nin_shortcut.weight"].shape == (16, 32, 1, 1)
    assert "first_stage_model.post_quant_conv.weight" in state
    position_ids = state["cond_stage_model.transformer.text_model.embeddings.position_ids"]
    assert position_ids.dtype == torch.int64 and torch.equal(position_ids, torch.arange(77).unsqueeze(0))
    assert "cond_stage_model.transformer.text_model.final_layer_norm.weight" in state
    assert state["alphas_cumprod"].shape == (1000,)
    assert state["betas"][0].item() == pytest.approx(0.00085) and state["betas"][-1].item() == pytest.approx(0.012)
    assert state["alphas_cumprod"][-1].item() == pytest.approx(0.0047, abs=1e-4)  # SD1's known final value
    assert not any(k.startswith("model_ema.") for k in state)


def test_ema_keys_follow_the_dots_removed_rule_and_hold_different_values(tmp_path):
    state = load_file(factory.sd1_checkpoint(tmp_path / "ema.safetensors", ema=True))

    unet = [k for k in state if k.startswith("model.diffusion_model.")]
    ema = [k for k in state if k.startswith("model_ema.") and k not in ("model_ema.decay", "model_ema.num_updates")]
    assert len(ema) == len(unet)
    weight = state["model.diffusion_model.input_blocks.0.0.weight"]
    ema_weight = state["model_ema.diffusion_modelinput_blocks00weight"]
    assert ema_weight.shape == weight.shape and not torch.equal(ema_weight, weight)
    assert "model_ema.diffusion_modeloutput_blocks52convbias" in state
    for key in unet:
        assert "model_ema." + key.removeprefix("model.").replace(".", "") in state
    assert state["model_ema.decay"].item() == pytest.approx(0.9999)
    assert state["model_ema.num_updates"].dtype == torch.int32
    assert not any(k.startswith(("model_ema.first_stage", "model_ema.cond_stage")) for k in state)


def test_zip_ckpt_is_a_torch_zip_with_state_dict_and_global_step(tmp_path):
    path = factory.sd1_checkpoint(tmp_path / "tiny.ckpt", fmt="ckpt")

    assert zipfile.is_zipfile(path)
    assert "archive/data.pkl" in zipfile.ZipFile(path).namelist()
    loaded = torch.load(path, weights_only=True)
    assert set(loaded) == {"state_dict", "global_step"}
    assert torch.equal(loaded["state_dict"]["model.diffusion_model.input_blocks.0.0.weight"],
                       factory.tiny_state_dicts("sd1")["model.diffusion_model.input_blocks.0.0.weight"])


def test_legacy_ckpt_is_the_pre_zip_pickle_stream(tmp_path):
    path = factory.sd1_checkpoint(tmp_path / "old.ckpt", fmt="ckpt-legacy")

    data = path.read_bytes()
    assert not zipfile.is_zipfile(path)
    assert data.startswith(b"\x80\x02\x8a\x0a" + TORCH_LEGACY_MAGIC)  # pickled protocol-2 LONG1 magic number
    loaded = torch.load(path, weights_only=True)
    assert loaded["state_dict"]["cond_stage_model.transformer.text_model.embeddings.position_ids"].dtype == torch.int64


@pytest.mark.parametrize("fmt", ["ckpt", "ckpt-legacy"])
def test_training_state_pickles_lightning_extras_without_lightning_installed(tmp_path, fmt):
    path = factory.sd1_checkpoint(tmp_path / "train.ckpt", fmt=fmt, ema=True, training_state=True)

    data = zipfile.ZipFile(path).read("archive/data.pkl") if fmt == "ckpt" else path.read_bytes()
    if fmt == "ckpt":
        assert LIGHTNING_GLOBAL in pickle_globals(data)
    assert b"cpytorch_lightning.callbacks.model_checkpoint\nModelCheckpoint\n" in data
    with pytest.raises(pickle.UnpicklingError, match="ModelCheckpoint"):
        torch.load(path, weights_only=True)  # what a careful loader sees
    loaded = torch.load(path, weights_only=False, pickle_module=placeholder_pickle)
    assert {"state_dict", "epoch", "global_step", "pytorch-lightning_version", "optimizer_states",
            "lr_schedulers", "callbacks"} <= set(loaded)
    assert list(loaded["callbacks"]) == [Placeholder]
    assert loaded["optimizer_states"][0]["state"][0]["exp_avg"].ndim == 4
    assert "model_ema.decay" in loaded["state_dict"]


def test_dtype_casts_floats_and_keeps_integer_buffers(tmp_path):
    state = load_file(factory.sd1_checkpoint(tmp_path / "fp16.safetensors", dtype=torch.float16, ema=True))

    assert state["model.diffusion_model.input_blocks.0.0.weight"].dtype == torch.float16
    assert state["alphas_cumprod"].dtype == torch.float16
    assert state["cond_stage_model.transformer.text_model.embeddings.position_ids"].dtype == torch.int64
    assert state["model_ema.num_updates"].dtype == torch.int32


def test_same_seed_same_bytes_other_seed_other_weights(tmp_path):
    first = factory.sd1_checkpoint(tmp_path / "a.safetensors", seed=3)
    again = factory.sd1_checkpoint(tmp_path / "b.safetensors", seed=3)
    other = factory.sd1_checkpoint(tmp_path / "c.safetensors", seed=4)

    assert first.read_bytes() == again.read_bytes()
    assert first.read_bytes() != other.read_bytes()


def test_writes_are_atomic_and_leave_no_temporary_files(tmp_path):
    factory.sd1_checkpoint(tmp_path / "a.ckpt", fmt="ckpt")
    with pytest.raises(ValueError, match="training_state"):
        factory.sd1_checkpoint(tmp_path / "b.safetensors", training_state=True)
    with pytest.raises(ValueError, match="fmt"):
        factory.sd1_checkpoint(tmp_path / "c.bin", fmt="bin")

    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.ckpt"]
    assert (tmp_path / "a.ckpt").stat().st_mode & 0o777 == 0o644


def test_full_size_has_sd15_shapes_without_allocating_them():
    shapes = factory.checkpoint_shapes("sd1", size="full")

    assert shapes["model.diffusion_model.input_blocks.0.0.weight"] == (320, 4, 3, 3)
    assert shapes["model.diffusion_model.input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight"] == (320, 768)
    assert shapes["model.diffusion_model.middle_block.1.proj_in.weight"] == (1280, 1280, 1, 1)
    assert shapes["first_stage_model.decoder.mid.attn_1.q.weight"] == (512, 512, 1, 1)
    assert shapes["cond_stage_model.transformer.text_model.embeddings.token_embedding.weight"] == (49408, 768)
    assert shapes["cond_stage_model.transformer.text_model.embeddings.position_ids"] == (1, 77)
    assert not any(k.startswith("cond_stage_model.transformer.text_model.encoder.layers.12.") for k in shapes)
    parameters = sum(torch.Size(s).numel() for s in shapes.values())
    assert 1.06e9 < parameters < 1.07e9  # SD1.5: ~860M UNet + ~84M VAE + ~123M CLIP-L
    with_ema = factory.checkpoint_shapes("sd1", size="full", ema=True)
    unet = sum(torch.Size(s).numel() for k, s in shapes.items() if k.startswith("model.diffusion_model."))
    assert sum(torch.Size(s).numel() for s in with_ema.values()) == parameters + unet + 2


def test_sd2_uses_the_openclip_layout_and_v_files_carry_a_sidecar(tmp_path):
    path = factory.sd2_checkpoint(tmp_path / "v.safetensors", v_prediction=True)

    state = load_file(path)
    assert state["cond_stage_model.model.transformer.resblocks.0.attn.in_proj_weight"].shape == (3 * 64, 64)
    assert {"cond_stage_model.model.positional_embedding", "cond_stage_model.model.token_embedding.weight",
            "cond_stage_model.model.ln_final.weight", "cond_stage_model.model.text_projection",
            "cond_stage_model.model.transformer.resblocks.1.mlp.c_proj.bias"} <= set(state)
    assert state["model.diffusion_model.input_blocks.1.1.proj_in.weight"].ndim == 2
    assert state["model.diffusion_model.input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight"].shape == (32, 64)
    assert not any(k.startswith("cond_stage_model.transformer.") for k in state)
    assert 'parameterization: "v"' in path.with_suffix(".yaml").read_text()
    with safe_open(path, "pt") as opened:
        assert opened.metadata() == {"sdhub.prediction": "v"}
    plain = factory.sd2_checkpoint(tmp_path / "eps.safetensors")
    assert not plain.with_suffix(".yaml").exists()


def test_sdxl_base_and_refiner_use_the_sgm_embedders(tmp_path):
    base = load_file(factory.sdxl_checkpoint(tmp_path / "xl.safetensors"))
    refiner = load_file(factory.sdxl_checkpoint(tmp_path / "refiner.safetensors", refiner=True))

    assert "conditioner.embedders.0.transformer.text_model.embeddings.position_embedding.weight" in base
    assert "conditioner.embedders.1.model.ln_final.weight" in base
    assert base["conditioner.embedders.1.model.text_projection"].shape == (64, 64)
    assert "model.diffusion_model.input_blocks.8.1.transformer_blocks.1.attn1.to_q.weight" in base
    assert not any(k.startswith("model.diffusion_model.input_blocks.9.") for k in base)
    # ADM input: pooled OpenCLIP-G width + 6 size/crop Fourier features (5 with the aesthetic score on the refiner)
    assert base["model.diffusion_model.label_emb.0.0.weight"].shape[1] == 64 + 6 * 8
    assert refiner["model.diffusion_model.label_emb.0.0.weight"].shape[1] == 64 + 5 * 8
    assert base["model.diffusion_model.input_blocks.4.1.transformer_blocks.0.attn2.to_k.weight"].shape[1] == 32 + 64
    assert "conditioner.embedders.0.model.ln_final.weight" in refiner
    assert not any(k.startswith(("conditioner.embedders.1.", "conditioner.embedders.0.transformer.")) for k in refiner)
    assert "alphas_cumprod" not in base


def test_kohya_lora_keys_and_metadata(tmp_path):
    path = factory.lora(tmp_path / "style.safetensors")

    with safe_open(path, "pt") as opened:
        keys, metadata = set(opened.keys()), opened.metadata()
    assert "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q.lora_down.weight" in keys
    assert "lora_unet_up_blocks_3_attentions_2_proj_out.lora_up.weight" in keys
    assert "lora_te_text_model_encoder_layers_0_self_attn_q_proj.alpha" in keys
    assert all(k.endswith((".lora_down.weight", ".lora_up.weight", ".alpha")) for k in keys)
    assert metadata["ss_network_module"] == "networks.lora"
    assert metadata["ss_network_dim"] == "4" and metadata["ss_network_alpha"] == "2.0"
    assert metadata["ss_base_model_version"] == "sd_v1"
    assert metadata["ss_output_name"] == "style"
    assert metadata["modelspec.architecture"] == "stable-diffusion-v1/lora"
    assert json.loads(metadata["ss_tag_frequency"])["10_sdhubtoken"]["sdhubtoken"] == 10
    data = path.read_bytes()
    payload = data[8 + int.from_bytes(data[:8], "little"):]
    assert metadata["sshs_model_hash"] == hashlib.sha256(payload).hexdigest()


def test_lycoris_and_sdxl_networks_use_their_key_suffixes(tmp_path):
    loha = load_file(factory.lora(tmp_path / "loha.safetensors", fmt="loha"))
    lokr = load_file(factory.lora(tmp_path / "lokr.safetensors", fmt="lokr"))
    locon = load_file(factory.lora(tmp_path / "locon.safetensors", fmt="locon"))
    xl = load_file(factory.lora(tmp_path / "xl.safetensors", base="sdxl"))

    name = "lora_unet_down_blocks_1_attentions_0_transformer_blocks_0_attn2_to_k"
    assert {f"{name}.{suffix}" for suffix in ("hada_w1_a", "hada_w1_b", "hada_w2_a", "hada_w2_b", "alpha")} <= set(loha)
    w1 = loha[f"{name}.hada_w1_a"] @ loha[f"{name}.hada_w1_b"]
    delta = w1 * (loha[f"{name}.hada_w2_a"] @ loha[f"{name}.hada_w2_b"])
    assert delta.shape == (32, 32)
    assert torch.kron(lokr[f"{name}.lokr_w1"], lokr[f"{name}.lokr_w2_a"] @ lokr[f"{name}.lokr_w2_b"]).shape == (32, 32)
    assert locon["lora_unet_down_blocks_0_resnets_0_conv1.lora_down.weight"].shape == (4, 32, 3, 3)
    assert "lora_unet_down_blocks_0_resnets_0_conv1.lora_down.weight" not in load_file(
        factory.lora(tmp_path / "plain.safetensors"))
    assert "lora_te1_text_model_encoder_layers_0_self_attn_q_proj.lora_down.weight" in xl
    assert "lora_te2_text_model_encoder_layers_1_mlp_fc2.lora_up.weight" in xl
    assert "lora_unet_input_blocks_4_1_transformer_blocks_0_attn2_to_k.lora_down.weight" in xl  # SGM names
    assert "lora_unet_output_blocks_2_1_transformer_blocks_1_ff_net_2.alpha" in xl


def test_embeddings_in_a1111_and_safetensors_layouts(tmp_path):
    pt = torch.load(factory.embedding(tmp_path / "e.pt", vectors=3), weights_only=True)
    single = load_file(factory.embedding(tmp_path / "e.safetensors", fmt="safetensors"))
    xl = load_file(factory.embedding(tmp_path / "xl.safetensors", base="sdxl", fmt="safetensors"))

    assert pt["string_to_token"] == {"*": 265}
    assert pt["string_to_param"]["*"].shape == (3, 32)
    assert pt["name"] == "e" and pt["step"] == 500 and "sd_checkpoint" in pt and "sd_checkpoint_name" in pt
    assert set(single) == {"emb_params"} and single["emb_params"].shape == (2, 32)
    assert xl["clip_l"].shape == (2, 32) and xl["clip_g"].shape == (2, 64)


def test_standalone_vae_has_no_prefix_and_pt_nests_it_with_loss_keys(tmp_path):
    plain = load_file(factory.vae(tmp_path / "vae.safetensors"))
    nested = torch.load(factory.vae(tmp_path / "vae.pt", fmt="pt"), weights_only=True)

    assert "decoder.mid.attn_1.q.weight" in plain and "encoder.conv_in.weight" in plain
    assert not any(k.startswith("first_stage_model.") for k in plain)
    assert {"loss.logvar", "loss.discriminator.main.0.weight"} <= set(nested["state_dict"])
    assert set(plain) <= set(nested["state_dict"])


def test_tokenizer_is_byte_level_clip_with_77_positions(tmp_path):
    from transformers import CLIPTokenizer

    tokenizer = CLIPTokenizer.from_pretrained(factory.tokenizer_dir(tmp_path / "tok"))

    ids = tokenizer("A Cat!", padding="max_length").input_ids
    assert len(ids) == 77 and len(tokenizer) == 514
    assert ids[0] == tokenizer.bos_token_id == 512 and tokenizer.eos_token_id == 513
    # lowercased, split into words and punctuation, one token per byte, word ends marked
    assert tokenizer.convert_ids_to_tokens(ids[1:7]) == ["a</w>", "c", "a", "t</w>", "!</w>", "<|endoftext|>"]
    assert (tmp_path / "tok" / "merges.txt").read_text() == "#version: 0.2\n"


def test_tiny_state_dicts_match_the_written_file(tmp_path):
    for arch, write in (("sd1", factory.sd1_checkpoint), ("sdxl", factory.sdxl_checkpoint)):
        written = load_file(write(tmp_path / f"{arch}.safetensors"))
        in_memory = factory.tiny_state_dicts(arch)
        assert set(written) == set(in_memory)
        assert all(torch.equal(written[k], in_memory[k]) for k in written)
    assert adapters.embedding_widths("sdxl") == {"clip_l": 32, "clip_g": 64}


def test_sd1_checkpoint_once_writes_a_shared_file_once_under_concurrency(tmp_path):
    import threading

    target = tmp_path / "shared" / "sd1-ema.ckpt"
    threads = [threading.Thread(target=factory.sd1_checkpoint_once, args=(target,), kwargs={"fmt": "ckpt", "ema": True})
               for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    first_write = target.stat().st_mtime_ns

    assert factory.sd1_checkpoint_once(target, fmt="ckpt", ema=True) == target
    assert target.stat().st_mtime_ns == first_write
    assert sorted(p.name for p in target.parent.iterdir()) == ["sd1-ema.ckpt", "sd1-ema.ckpt.lock"]
    assert "model_ema.decay" in torch.load(target, weights_only=True)["state_dict"]


def test_full_size_tensors_are_filled_one_by_one_with_seeded_values():
    from sdhub.testing import writers

    def shapes_only():
        return {"weight": torch.empty(320, 4, 3, 3, device="meta"), "position_ids": torch.arange(77).unsqueeze(0)}

    filled = writers.materialize(shapes_only(), torch.float16, seed=0)

    assert filled["weight"].dtype == torch.float16 and filled["weight"].device.type == "cpu"
    assert 0.01 < filled["weight"].float().std().item() < 0.05
    assert torch.equal(filled["position_ids"], torch.arange(77).unsqueeze(0))
    assert torch.equal(writers.materialize(shapes_only(), torch.float16, seed=0)["weight"], filled["weight"])


def test_a_write_that_fails_halfway_leaves_neither_the_file_nor_a_temporary(tmp_path):
    from sdhub.testing import writers

    factory.sd1_checkpoint(tmp_path / "kept.safetensors")
    before = (tmp_path / "kept.safetensors").read_bytes()

    def fail_halfway(temporary):
        temporary.write_bytes(b"half a file")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        writers.write_atomically(tmp_path / "kept.safetensors", fail_halfway)

    assert sorted(p.name for p in tmp_path.iterdir()) == ["kept.safetensors"]
    assert (tmp_path / "kept.safetensors").read_bytes() == before
