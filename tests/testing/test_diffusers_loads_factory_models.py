"""The proof that the factory's layouts are real: diffusers' own loaders accept them (no sdhub loading code)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from sdhub.testing import adapters, factory


@pytest.mark.parametrize("fmt", ["safetensors", "ckpt", "ckpt-legacy"])
def test_sd1_single_file_loads_bit_exact_and_draws_an_image(tmp_path, load_sd1, fmt, generate):
    written = factory.sd1_checkpoint(tmp_path / f"tiny.{fmt}", fmt=fmt)
    reference = factory.tiny_state_dicts("sd1")

    pipe = load_sd1(written)

    unet, vae, text = pipe.unet.state_dict(), pipe.vae.state_dict(), pipe.text_encoder.state_dict()
    pairs = [
        (unet["conv_in.weight"], "model.diffusion_model.input_blocks.0.0.weight"),
        (unet["down_blocks.1.attentions.0.transformer_blocks.0.attn2.to_k.weight"],
         "model.diffusion_model.input_blocks.4.1.transformer_blocks.0.attn2.to_k.weight"),
        (unet["mid_block.attentions.0.proj_in.weight"], "model.diffusion_model.middle_block.1.proj_in.weight"),
        (unet["up_blocks.1.upsamplers.0.conv.weight"], "model.diffusion_model.output_blocks.5.2.conv.weight"),
        (unet["up_blocks.0.upsamplers.0.conv.weight"], "model.diffusion_model.output_blocks.2.1.conv.weight"),
        (unet["up_blocks.3.resnets.2.conv_shortcut.weight"],
         "model.diffusion_model.output_blocks.11.0.skip_connection.weight"),
        (vae["decoder.up_blocks.0.resnets.0.conv1.weight"], "first_stage_model.decoder.up.3.block.0.conv1.weight"),
        (vae["encoder.mid_block.attentions.0.to_q.weight"].reshape(32, 32, 1, 1),
         "first_stage_model.encoder.mid.attn_1.q.weight"),
        (text["embeddings.token_embedding.weight"],
         "cond_stage_model.transformer.text_model.embeddings.token_embedding.weight"),
        (text["encoder.layers.1.mlp.fc2.weight"],
         "cond_stage_model.transformer.text_model.encoder.layers.1.mlp.fc2.weight"),
    ]
    for loaded, key in pairs:
        assert torch.equal(loaded, reference[key]), key

    image = generate(pipe)
    assert image.shape == (64, 64, 3)
    assert not np.isnan(image).any()
    assert image.std() > 0.01  # an image, not a flat field


def test_kohya_peft_and_locon_loras_load_with_load_lora_weights_and_change_the_image(
        tmp_path, load_sd1, sd1_safetensors, generate):
    pipe = load_sd1(sd1_safetensors)
    before = generate(pipe)
    for fmt in ("kohya", "peft", "locon"):
        path = factory.lora(tmp_path / f"tiny-{fmt}.safetensors", fmt=fmt)

        pipe.load_lora_weights(str(path), adapter_name=fmt)

        assert set(pipe.get_list_adapters()) == {"unet", "text_encoder"}, fmt
        assert np.abs(generate(pipe) - before).max() > 0.01, fmt
        pipe.unload_lora_weights()
    np.testing.assert_array_equal(generate(pipe), before)


@pytest.mark.parametrize("fmt", ["pt", "safetensors"])
def test_embedding_loads_with_load_textual_inversion(tmp_path, load_sd1, sd1_safetensors, fmt, generate):
    path = factory.embedding(tmp_path / f"sdhubstyle.{fmt}", fmt=fmt, vectors=2)
    pipe = load_sd1(sd1_safetensors)
    before = generate(pipe, "a <sdhubstyle> cat")

    pipe.load_textual_inversion(str(path), token="<sdhubstyle>")

    token_ids = pipe.tokenizer.convert_tokens_to_ids(["<sdhubstyle>", "<sdhubstyle>_1"])
    rows = pipe.text_encoder.get_input_embeddings().weight[token_ids]
    expected = adapters.embedding_vectors("sd1", 2)["emb_params"]
    assert torch.equal(rows.detach(), expected)
    assert np.abs(generate(pipe, "a <sdhubstyle> cat") - before).max() > 0.001


def test_inpainting_checkpoint_loads_with_the_inpaint_pipeline(tmp_path, generate):
    from diffusers import StableDiffusionInpaintPipeline

    written = factory.sd1_checkpoint(tmp_path / "tiny-inpainting.safetensors", inpainting=True)
    config = factory.diffusers_config_dir(tmp_path / "config", arch="sd1-inpainting")

    pipe = StableDiffusionInpaintPipeline.from_single_file(str(written), config=str(config), local_files_only=True)
    pipe.set_progress_bar_config(disable=True)

    assert pipe.unet.conv_in.weight.shape == (32, 9, 3, 3)
    image = generate(pipe, image=torch.zeros(1, 3, 64, 64), mask_image=torch.ones(1, 1, 64, 64))
    assert not np.isnan(image).any()


@pytest.mark.parametrize("v_prediction", [False, True])
def test_sd2_openclip_layout_loads_bit_exact(tmp_path, v_prediction, generate):
    from diffusers import StableDiffusionPipeline

    written = factory.sd2_checkpoint(tmp_path / "tiny-sd2.safetensors", v_prediction=v_prediction)
    arch = "sd2-v" if v_prediction else "sd2"
    config = factory.diffusers_config_dir(tmp_path / "config", arch=arch)

    pipe = StableDiffusionPipeline.from_single_file(str(written), config=str(config), local_files_only=True)
    pipe.set_progress_bar_config(disable=True)

    state = load_file(written)
    text = pipe.text_encoder.state_dict()
    in_proj = state["cond_stage_model.model.transformer.resblocks.1.attn.in_proj_weight"]
    assert torch.equal(torch.cat([text[f"encoder.layers.1.self_attn.{p}_proj.weight"] for p in "qkv"]), in_proj)
    assert torch.equal(text["embeddings.position_embedding.weight"],
                       state["cond_stage_model.model.positional_embedding"])
    assert pipe.unet.down_blocks[0].attentions[0].proj_in.weight.ndim == 2  # SD2's linear projections
    assert pipe.scheduler.config.prediction_type == ("v_prediction" if v_prediction else "epsilon")
    assert not np.isnan(generate(pipe)).any()


@pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")  # diffusers' Euler vs numpy 2
def test_sdxl_sgm_layout_loads_bit_exact_and_takes_its_lora_and_embedding(tmp_path, generate):
    from diffusers import StableDiffusionXLPipeline

    written = factory.sdxl_checkpoint(tmp_path / "tiny-sdxl.safetensors")
    config = factory.diffusers_config_dir(tmp_path / "config", arch="sdxl")

    pipe = StableDiffusionXLPipeline.from_single_file(str(written), config=str(config), local_files_only=True)
    pipe.set_progress_bar_config(disable=True)

    state = load_file(written)
    big_g = pipe.text_encoder_2.state_dict()
    assert torch.equal(big_g["text_projection.weight"], state["conditioner.embedders.1.model.text_projection"].T)
    assert torch.equal(pipe.text_encoder.state_dict()["embeddings.token_embedding.weight"],
                       state["conditioner.embedders.0.transformer.text_model.embeddings.token_embedding.weight"])
    assert torch.equal(pipe.unet.add_embedding.linear_1.weight, state["model.diffusion_model.label_emb.0.0.weight"])
    assert torch.equal(pipe.unet.up_blocks[1].attentions[2].transformer_blocks[1].attn2.to_v.weight,
                       state["model.diffusion_model.output_blocks.5.1.transformer_blocks.1.attn2.to_v.weight"])
    before = generate(pipe, "a <xlstyle> cat")
    assert not np.isnan(before).any()

    pipe.load_lora_weights(str(factory.lora(tmp_path / "xl-lora.safetensors", base="sdxl")))  # SGM-named UNet modules
    assert set(pipe.get_list_adapters()) == {"unet", "text_encoder", "text_encoder_2"}
    assert np.abs(generate(pipe, "a <xlstyle> cat") - before).max() > 0.01
    pipe.unload_lora_weights()
    vectors = load_file(factory.embedding(tmp_path / "xlstyle.safetensors", base="sdxl", fmt="safetensors"))
    pipe.load_textual_inversion(vectors["clip_l"], token="<xlstyle>", text_encoder=pipe.text_encoder,
                                tokenizer=pipe.tokenizer)
    pipe.load_textual_inversion(vectors["clip_g"], token="<xlstyle>", text_encoder=pipe.text_encoder_2,
                                tokenizer=pipe.tokenizer_2)
    assert np.abs(generate(pipe, "a <xlstyle> cat") - before).max() > 0.001


def test_sdxl_refiner_loads_with_the_img2img_pipeline(tmp_path):
    from diffusers import StableDiffusionXLImg2ImgPipeline

    written = factory.sdxl_checkpoint(tmp_path / "tiny-refiner.safetensors", refiner=True)
    config = factory.diffusers_config_dir(tmp_path / "config", arch="sdxl-refiner")

    pipe = StableDiffusionXLImg2ImgPipeline.from_single_file(str(written), config=str(config), local_files_only=True)

    state = load_file(written)
    assert pipe.text_encoder is None
    assert torch.equal(pipe.text_encoder_2.state_dict()["text_model.final_layer_norm.weight"],
                       state["conditioner.embedders.0.model.ln_final.weight"])
    assert torch.equal(pipe.unet.add_embedding.linear_1.weight, state["model.diffusion_model.label_emb.0.0.weight"])


def test_standalone_vae_loads_with_autoencoder_single_file(tmp_path, sd1_config_dir):
    from diffusers import AutoencoderKL

    for fmt in ("safetensors", "pt"):
        written = factory.vae(tmp_path / f"tiny-vae.{fmt}", fmt=fmt)

        vae = AutoencoderKL.from_single_file(str(written), config=str(sd1_config_dir), subfolder="vae",
                                             local_files_only=True)

        expected = factory.tiny_state_dicts("sd1")["first_stage_model.decoder.mid.attn_1.proj_out.weight"]
        assert torch.equal(vae.decoder.mid_block.attentions[0].to_out[0].weight, expected[:, :, 0, 0]), fmt
