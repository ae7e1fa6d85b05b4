"""Single-file checkpoints become diffusers components offline, with the same weights diffusers would load."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from sdhub.errors import BadInputError, MissingDependencyError, UsageError
from sdhub.generate import model_configs
from sdhub.generate.loading import load_checkpoint, select_device, select_dtype


def _diffusers_reference(checkpoint: Path, tmp_path: Path):
    from diffusers import StableDiffusionPipeline

    from sdhub.testing import factory

    config = factory.diffusers_config_dir(tmp_path / "config", "sd1")
    return StableDiffusionPipeline.from_single_file(str(checkpoint), config=str(config), local_files_only=True)


@pytest.mark.parametrize("kind", ["sd1", "sd1_ckpt"])
def test_checkpoint_loads_offline_with_the_weights_diffusers_loads(tiny_models, tmp_path, kind):
    loaded = load_checkpoint(tiny_models[kind], device="cpu")  # compared with diffusers' CPU load below
    assert (loaded.arch, loaded.config.tiny, loaded.device.type, loaded.dtype) == ("sd1", True, "cpu", torch.float32)
    assert loaded.vae_source == "baked-in"
    reference = _diffusers_reference(tiny_models["sd1"], tmp_path)  # same seed: same weights as the .ckpt
    for ours, theirs in ((loaded.unet, reference.unet), (loaded.vae, reference.vae),
                         (loaded.text_encoders["text_encoder"], reference.text_encoder)):
        their_state = theirs.state_dict()
        our_state = ours.state_dict()
        assert set(our_state) == set(their_state)
        for name, tensor in our_state.items():
            assert torch.equal(tensor, their_state[name]), name
    buffers = dict(loaded.text_encoders["text_encoder"].named_buffers())
    position_ids = next(value for name, value in buffers.items() if name.endswith("position_ids"))
    assert torch.equal(position_ids[0], torch.arange(77))  # rebuilt, never taken from the file


def test_loaded_model_works_as_a_diffusers_pipeline(tiny_models):
    pipeline = load_checkpoint(tiny_models["sd1"]).pipeline()
    image = pipeline("a cat", num_inference_steps=2, height=64, width=64, output_type="np",
                     generator=torch.Generator().manual_seed(0)).images[0]
    assert image.shape == (64, 64, 3)


def test_a_catalog_vae_replaces_the_baked_in_one(tiny_models):
    from sdhub.formats import open_model

    loaded = load_checkpoint(tiny_models["sd1"], vae=tiny_models["vae"], device="cpu")
    assert loaded.vae_source == str(tiny_models["vae"])
    with open_model(tiny_models["vae"]) as vae_file:
        expected = vae_file.load("decoder.conv_out.weight")
    assert torch.equal(loaded.vae.decoder.conv_out.weight, expected)
    baked = load_checkpoint(tiny_models["sd1"], device="cpu")
    assert not torch.equal(baked.vae.decoder.conv_out.weight, expected)


def test_dtype_override_casts_every_weight(tiny_models):
    loaded = load_checkpoint(tiny_models["sd1"], dtype="fp16")
    assert {p.dtype for p in loaded.unet.parameters()} == {torch.float16}
    assert {p.dtype for p in loaded.text_encoders["text_encoder"].parameters()} == {torch.float16}


def test_device_and_dtype_defaults_follow_the_hardware():
    assert select_dtype(torch.device("cpu")) == torch.float32
    assert select_dtype(torch.device("cuda")) == torch.float16
    assert select_dtype(torch.device("cpu"), "bf16") == torch.bfloat16
    if not torch.cuda.is_available():
        assert select_device(None).type in ("cpu", "mps")
        with pytest.raises(MissingDependencyError, match="no CUDA device"):
            select_device("cuda")
    with pytest.raises(UsageError, match="unknown dtype"):
        select_dtype(torch.device("cpu"), "fp8")


def test_a_lora_is_not_a_checkpoint(tmp_path):
    from sdhub.testing import factory

    lora = factory.lora(tmp_path / "style.safetensors")
    with pytest.raises(BadInputError, match="not a Stable Diffusion checkpoint"):
        load_checkpoint(lora)


@pytest.mark.parametrize("arch,unet,vae,text", [
    ("sd1", 859_520_964, 83_653_863, {"text_encoder": 123_060_480}),
    ("sd2-v", 865_910_724, 83_653_863, {"text_encoder": 340_387_840}),
    ("sdxl", 2_567_463_684, 83_653_863, {"text_encoder": 123_060_480, "text_encoder_2": 694_659_840}),
    ("sdxl-refiner", 2_259_526_660, 83_653_863, {"text_encoder_2": 694_659_840}),
])
def test_shipped_configs_build_the_published_architectures(arch, unet, vae, text):
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    components = model_configs.shipped_config(arch)

    def count(module: torch.nn.Module) -> int:
        return sum(p.numel() for p in module.parameters())

    with torch.device("meta"):
        assert count(UNet2DConditionModel.from_config(components["unet"])) == unet
        assert count(AutoencoderKL.from_config(components["vae"])) == vae
        for name, expected in text.items():
            settings = {k: v for k, v in components[name].items() if k != "architectures"}
            cls = CLIPTextModelWithProjection if name == "text_encoder_2" else CLIPTextModel
            assert count(cls(CLIPTextConfig(**settings))) == expected


def test_the_shipped_tiny_configs_are_the_ones_the_factory_builds_models_with():
    from sdhub.testing.pipeline_folder import SHIPPED_TINY_CONFIGS, shipped_tiny_configs

    def without_versions(value):
        if isinstance(value, dict):
            return {k: without_versions(v) for k, v in value.items() if k != "_diffusers_version"}
        return value

    shipped = json.loads(SHIPPED_TINY_CONFIGS.read_text(encoding="utf-8"))
    assert without_versions(shipped) == without_versions(shipped_tiny_configs()), \
        "the factory's configs changed: rewrite tiny.json with `python -m sdhub.testing.pipeline_folder`"


def test_missing_tokenizer_says_what_to_download(tmp_path):
    with pytest.raises(MissingDependencyError) as error:
        model_configs.resolve_tokenizer_dir("tokenizer", cache_dir=tmp_path / "empty-cache", packaged=False)
    message = str(error.value)
    assert "openai/clip-vit-large-patch14" in message and "vocab.json" in message
    assert "sdhub doctor --fetch-tokenizers" in message


def test_tokenizer_is_found_in_the_hugging_face_cache(tmp_path):
    from sdhub.testing import factory

    cache = tmp_path / "hub"
    snapshot = cache / "models--openai--clip-vit-large-patch14" / "snapshots" / "abc123"
    factory.tokenizer_dir(snapshot)
    (cache / "models--openai--clip-vit-large-patch14" / "refs").mkdir(parents=True)
    (cache / "models--openai--clip-vit-large-patch14" / "refs" / "main").write_text("abc123")
    assert model_configs.resolve_tokenizer_dir("tokenizer", cache_dir=cache) == snapshot
    # bigG falls back to CLIP-L's files: the two share one BPE vocabulary
    assert model_configs.resolve_tokenizer_dir("tokenizer_2", cache_dir=cache) == snapshot
    config = model_configs.PipelineConfig("sdxl", model_configs.shipped_config("sdxl"))
    tokenizers = model_configs.load_tokenizers(config, cache_dir=cache)
    assert set(tokenizers) == {"tokenizer", "tokenizer_2"}
    assert tokenizers["tokenizer_2"].pad_token == "!"


def test_unknown_architecture_has_no_config():
    with pytest.raises(BadInputError, match="no generation config"):
        model_configs.config_family("flux")
    assert json.loads(json.dumps(model_configs.shipped_config("sd2")))["unet"]["cross_attention_dim"] == 1024


ARCH_FILES = {
    "sd2": lambda f, path: f.sd2_checkpoint(path),
    "sd2-v": lambda f, path: f.sd2_checkpoint(path, v_prediction=True),
    "sdxl": lambda f, path: f.sdxl_checkpoint(path),
    "sdxl-refiner": lambda f, path: f.sdxl_checkpoint(path, refiner=True),
    "sd1-inpainting": lambda f, path: f.sd1_checkpoint(path, inpainting=True),
    "sd1-legacy-ckpt": lambda f, path: f.sd1_checkpoint(path.with_suffix(".ckpt"), fmt="ckpt-legacy"),
}


@pytest.mark.parametrize("kind", list(ARCH_FILES))
def test_every_architecture_loads_and_samples(tmp_path, kind):
    import numpy as np

    from sdhub.generate.pipeline import GenerationParams, sample_images
    from sdhub.testing import factory

    path = ARCH_FILES[kind](factory, tmp_path / f"{kind}.safetensors")
    loaded = load_checkpoint(path)
    expected_arch = {"sd1-inpainting": "sd1", "sd1-legacy-ckpt": "sd1"}.get(kind, kind)
    assert loaded.arch == expected_arch
    assert loaded.prediction_type == ("v_prediction" if kind == "sd2-v" else "epsilon")
    assert (loaded.variant == "inpainting") == (kind == "sd1-inpainting")
    for encoder in loaded.text_encoders.values():  # a learnt final-norm bias, as real CLIPs have (see conftest)
        norm = getattr(encoder, "text_model", encoder).final_layer_norm
        norm.bias.data = (torch.randn(norm.bias.shape, generator=torch.Generator().manual_seed(3)) * 0.5).to(norm.bias)
    sampled = sample_images(loaded, GenerationParams("a cat", "", steps=2, sampler="Euler", seed=1,
                                                     width=64, height=64))
    image = np.asarray(sampled.images[0])
    assert image.shape == (64, 64, 3) and not sampled.nan_in_output and image.std() > 1


def test_sdxl_weights_equal_diffusers_single_file_loading(tmp_path):
    from diffusers import StableDiffusionXLPipeline

    from sdhub.testing import factory

    path = factory.sdxl_checkpoint(tmp_path / "sdxl.safetensors")
    config = factory.diffusers_config_dir(tmp_path / "config", "sdxl")
    reference = StableDiffusionXLPipeline.from_single_file(str(path), config=str(config), local_files_only=True)
    loaded = load_checkpoint(path, device="cpu")  # the reference loads on the CPU
    pairs = [(loaded.unet, reference.unet), (loaded.text_encoders["text_encoder"], reference.text_encoder),
             (loaded.text_encoders["text_encoder_2"], reference.text_encoder_2)]
    for ours, theirs in pairs:
        their_state = theirs.state_dict()
        for name, tensor in ours.state_dict().items():
            assert torch.equal(tensor, their_state[name]), name


def test_unknown_widths_are_refused_with_the_reason(tiny_models, tmp_path):
    from safetensors.torch import load_file, save_file

    state = load_file(str(tiny_models["sd1"]))
    state["model.diffusion_model.input_blocks.0.0.weight"] = torch.zeros(48, 4, 3, 3)
    odd = tmp_path / "odd.safetensors"
    save_file(state, str(odd))
    with pytest.raises(BadInputError, match="48 channels wide; a sd1 model has 320"):
        load_checkpoint(odd)


def test_a_loaded_model_holds_one_file_descriptor_not_one_per_tensor(tiny_models):
    """On the CPU the weights stay mapped from the file; a checkpoint of 1,000+ tensors must not need
    1,000+ descriptors (the common soft limit is 1024, and a real SDXL file has 2,500 tensors)."""
    import subprocess
    import sys

    from sdhub.formats import open_model

    with open_model(tiny_models["sd1"]) as model_file:
        tensors = len(model_file.tensors)
    limit = 256
    assert tensors > 2 * limit  # the old one-mapping-per-tensor loader would run out here
    script = (
        "import os, resource, sys\n"
        "from sdhub.generate.loading import load_checkpoint\n"
        f"resource.setrlimit(resource.RLIMIT_NOFILE, ({limit}, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))\n"
        "loaded = load_checkpoint(sys.argv[1], device='cpu')\n"
        "print(len(os.listdir('/proc/self/fd')))\n"
    )
    done = subprocess.run([sys.executable, "-c", script, str(tiny_models["sd1"])], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert int(done.stdout.split()[-1]) < 64
