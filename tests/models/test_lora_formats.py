"""LoRA formats of every family: kohya, LyCORIS (LoCon, LoHa, LoKr, DoRA, IA3, GLoRA, full diff), PEFT,
ComfyUI/BFL, XLabs, diffusers attention processors and cloneofsimo's lora_diffusion, for SD1, SD2, SDXL,
SD3/SD3.5 and FLUX.1: the flavour and the base model a user sees, and the evidence for them."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import torch

import sdhub
from sdhub.models.detect import detect
from sdhub.models.detect_lora import LORA_FLAVOUR_DESCRIPTIONS
from sdhub.testing import lora_layouts as layouts

_LYCORIS_ON_UNETS = ("locon", "loha", "lokr", "dora", "ia3", "glora")
# (family, format) pairs as they are published; the expected (flavour, family, architecture).
HEADER_CASES = [
    *[(family, fmt) for family in ("sd1", "sd2", "sdxl") for fmt in ("kohya", "peft", *_LYCORIS_ON_UNETS)],
    ("sd1", "attn-proc"), ("sd2", "attn-proc"), ("sd1", "lora-diffusion"), ("sd2", "lora-diffusion"),
    *[("flux1", fmt) for fmt in ("kohya", "peft", "comfyui", "xlabs", "lokr", "loha", "dora")],
    *[(family, fmt) for family in ("sd3", "sd3.5-medium", "sd3.5-large") for fmt in ("kohya", "peft", "comfyui")],
    ("sd3.5-large", "lokr"),
]
ARCHITECTURE = {"sd3.5-medium": "sd3.5-medium", "sd3.5-large": "sd3.5-large"}


def _infos(shapes: dict[str, tuple[int, ...]]) -> dict[str, tuple[torch.dtype, tuple[int, ...]]]:
    return {name: (torch.float16, shape) for name, shape in shapes.items()}


def _family(family: str) -> str:
    return "sd3" if family.startswith("sd3") else family


def test_every_published_format_has_a_described_flavour() -> None:
    flavours = {layouts.FLAVOUR_OF_FORMAT.get(fmt, fmt) for fmt in layouts.LORA_FORMATS}
    assert flavours <= set(LORA_FLAVOUR_DESCRIPTIONS), flavours - set(LORA_FLAVOUR_DESCRIPTIONS)


@pytest.mark.parametrize("family, fmt", HEADER_CASES, ids=[f"{f}-{m}" for f, m in HEADER_CASES])
def test_real_size_headers_are_recognised_from_their_tensors_alone(family: str, fmt: str) -> None:
    shapes = layouts.lora_shapes(family, fmt, size="full")  # every module a real network patches, no memory
    detection = detect(_infos(shapes), {})
    expected_flavour = layouts.FLAVOUR_OF_FORMAT.get(fmt, fmt)
    assert (detection.kind, detection.lora_flavour, detection.base_model) == (
        "lora", expected_flavour, _family(family)), detection.evidence
    assert detection.architecture == ARCHITECTURE.get(family)
    assert not any(line.startswith("warning") for line in detection.evidence), detection.evidence


def test_flux_and_sd3_headers_have_their_real_names_and_widths() -> None:
    flux = layouts.lora_shapes("flux1", "kohya")
    assert flux["lora_unet_double_blocks_0_img_attn_qkv.lora_down.weight"] == (16, 3072)
    assert flux["lora_unet_double_blocks_18_txt_mlp_2.lora_up.weight"] == (3072, 16)
    assert flux["lora_unet_single_blocks_37_linear1.lora_up.weight"] == (21504, 16)
    assert flux["lora_te1_text_model_encoder_layers_11_self_attn_q_proj.lora_down.weight"] == (16, 768)
    assert flux["lora_te3_encoder_block_23_layer_1_DenseReluDense_wi_0.lora_up.weight"] == (10240, 16)
    ai_toolkit = layouts.lora_shapes("flux1", "peft")
    assert ai_toolkit["transformer.single_transformer_blocks.37.proj_out.lora_A.weight"] == (16, 15360)
    assert ai_toolkit["transformer.transformer_blocks.0.attn.add_q_proj.lora_B.weight"] == (3072, 16)
    comfy = layouts.lora_shapes("flux1", "comfyui")
    assert comfy["diffusion_model.double_blocks.0.img_attn.qkv.lora_B.weight"] == (9216, 16)
    xlabs = layouts.lora_shapes("flux1", "xlabs")
    assert xlabs["double_blocks.0.processor.proj_lora1.down.weight"] == (16, 3072)
    assert xlabs["double_blocks.18.processor.qkv_lora2.up.weight"] == (9216, 16)
    sd3 = layouts.lora_shapes("sd3", "kohya")
    assert sd3["lora_unet_joint_blocks_0_x_block_attn_qkv.lora_down.weight"] == (16, 1536)
    assert "lora_unet_joint_blocks_23_context_block_attn_proj.lora_down.weight" not in sd3  # last block: qkv only
    large = layouts.lora_shapes("sd3.5-large", "peft")
    assert large["transformer.transformer_blocks.37.attn.to_q.lora_A.weight"] == (16, 2432)
    sdxl = layouts.lora_shapes("sdxl", "kohya")
    # kohya names SDXL's UNet by its SGM paths; the cross-attention keys take in both encoders' 768 + 1280.
    assert sdxl["lora_unet_input_blocks_4_1_transformer_blocks_1_attn2_to_k.lora_down.weight"] == (16, 2048)
    assert sdxl["lora_te2_text_model_encoder_layers_31_mlp_fc2.lora_down.weight"] == (16, 5120)


# ---- LoKr: the Kronecker factors multiply out to the module ---------------------------------------


def _lokr(modules: dict[str, tuple[tuple[int, int], tuple[int, int]]], *, decompose_w1: bool, rank: int = 8
          ) -> dict[str, tuple]:
    """LoKr tensors for {module: ((out_small, in_small), (out_large, in_large))}, w2 always decomposed."""
    tensors: dict[str, tuple] = {}
    for module, ((a, c), (b, d)) in modules.items():
        if decompose_w1:
            tensors[f"{module}.lokr_w1_a"] = (torch.float16, (a, rank))
            tensors[f"{module}.lokr_w1_b"] = (torch.float16, (rank, c))
        else:
            tensors[f"{module}.lokr_w1"] = (torch.float16, (a, c))
        tensors[f"{module}.lokr_w2_a"] = (torch.float16, (b, rank))
        tensors[f"{module}.lokr_w2_b"] = (torch.float16, (rank, d))
        tensors[f"{module}.alpha"] = (torch.float16, ())
    return tensors


@pytest.mark.parametrize("width, base", [(768, "sd1"), (1024, "sd2"), (2048, "sdxl")])
@pytest.mark.parametrize("decompose_w1", [False, True], ids=["w1", "w1_a-w1_b"])
def test_lokr_gets_its_base_from_the_kronecker_product_of_its_factors(width: int, base: str,
                                                                        decompose_w1: bool) -> None:
    # attn2.to_k of a 640-wide block: out 640 = 16 x 40, in = the text embedding's width = 16 x (width / 16).
    module = "lora_unet_down_blocks_1_attentions_0_transformer_blocks_0_attn2_to_k"
    detection = detect(_lokr({module: ((16, 16), (40, width // 16))}, decompose_w1=decompose_w1), {})
    assert (detection.kind, detection.lora_flavour, detection.base_model) == ("lora", "lokr", base)
    assert f"cross-attention input width {width} ({base})" in detection.evidence


def test_lokr_with_tiny_factors_falls_back_on_kohya_metadata() -> None:
    module = "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn2_to_k"
    tensors = _lokr({module: ((2, 2), (4, 8))}, decompose_w1=False)  # 8 x 16: no real model's width
    legacy = {"ss_network_module": "lycoris.kohya", "ss_v2": "False"}  # as kohya wrote before SDXL
    detection = detect(tensors, legacy)
    assert (detection.lora_flavour, detection.base_model) == ("lokr", "sd1")
    assert any("ss_v2 = False" in line for line in detection.evidence)
    assert detect(tensors, {"ss_v2": "True"}).base_model == "sd2"
    assert detect(tensors, {"ss_v2": "False", "ss_base_model_version": "sdxl_base_v1-0"}).base_model == "sdxl"
    assert detect(tensors, {}).base_model is None


# ---- metadata claims the tensors contradict -------------------------------------------------------


@pytest.mark.parametrize("fmt", ["kohya", "peft", "xlabs", "comfyui"])
def test_a_flux_lora_whose_metadata_claims_sd15_is_still_flux(fmt: str) -> None:
    shapes = _infos(layouts.lora_shapes("flux1", fmt, size="tiny"))
    for claim in ({"ss_base_model_version": "sd_1.5"}, {"ss_base_model_version": "sd_v1", "ss_v2": "False"},
                  {"modelspec.architecture": "stable-diffusion-v1/lora"}):
        detection = detect(shapes, claim)
        assert (detection.kind, detection.base_model) == ("lora", "flux1"), detection.evidence
        assert any("the tensors win" in line for line in detection.evidence), detection.evidence


def test_sd3_metadata_is_read_when_the_tensors_say_nothing() -> None:
    tiny = {"lora_unet_joint_blocks_0_x_block_attn_qkv.lora_down.weight": (torch.float16, (4, 32)),
            "lora_unet_joint_blocks_0_x_block_attn_qkv.lora_up.weight": (torch.float16, (96, 4))}
    assert detect(tiny, {}).base_model == "sd3"  # joint_blocks are SD3's, whatever the width
    text_only = _infos(layouts.lora_shapes("sdxl", "kohya", size="tiny", diffusion=False))
    assert detect(text_only, {"modelspec.architecture": "stable-diffusion-3-medium/lora"}).base_model == "sd3"


# ---- LoRAs of the text encoders alone --------------------------------------------------------------


@pytest.mark.parametrize("family, fmt, expected, families", [
    ("sd1", "kohya", "sd1", None),       # lora_te_: SD1's single CLIP-L (a guess: every family but SD2 has one)
    ("sd2", "kohya", "sd2", None),       # OpenCLIP-H 1024: SD2's only
    ("sdxl", "kohya", "sdxl", None),     # lora_te1_ CLIP-L + lora_te2_ CLIP-G
    ("sdxl", "peft", "sdxl", None),      # text_encoder. + text_encoder_2.
    ("flux1", "kohya", "flux1", None),   # CLIP-L + T5-XXL (lora_te3_), no CLIP-G
    ("flux1", "peft", "flux1", None),    # diffusers: text_encoder_2 is Flux's T5
    ("sd3", "kohya", "sd3", None),       # CLIP-L + CLIP-G + T5-XXL
])
def test_text_encoder_loras_alone_are_placed_by_their_encoders(family: str, fmt: str, expected: str,
                                                               families: list[str] | None) -> None:
    shapes = _infos(layouts.lora_shapes(family, fmt, size="full", diffusion=False))
    detection = detect(shapes, {})
    assert (detection.kind, detection.base_model) == ("lora", expected), detection.evidence


def test_a_t5_part_alone_fits_flux_or_sd3_and_metadata_picks_one() -> None:
    t5 = {k: v for k, v in layouts.lora_shapes("flux1", "kohya", size="tiny", diffusion=False).items()
          if k.startswith("lora_te3_")}
    detection = detect(_infos(t5), {})
    assert (detection.kind, detection.base_model, detection.details["families"]) == ("lora", None, ["flux1", "sd3"])
    assert any("T5-XXL (4096)" in line for line in detection.evidence)
    assert detect(_infos(t5), {"ss_base_model_version": "flux1"}).base_model == "flux1"
    assert detect(_infos(t5), {"ss_base_model_version": "sd_v1"}).base_model is None  # SD1 has no T5


def test_an_sdxl_text_lora_claiming_sd1_keeps_sdxl() -> None:
    shapes = _infos(layouts.lora_shapes("sdxl", "kohya", size="tiny", diffusion=False))
    detection = detect(shapes, {"ss_base_model_version": "sd_v1"})
    assert detection.base_model == "sdxl"
    assert any(line.startswith("warning: the metadata says sd1") for line in detection.evidence)


# ---- other layouts, from hand-written names -------------------------------------------------------


def test_peft_dora_older_diffusers_and_unrelated_lists() -> None:
    dora = {"transformer.transformer_blocks.0.attn.to_q.lora_A.weight": (torch.float16, (4, 3072)),
            "transformer.transformer_blocks.0.attn.to_q.lora_B.weight": (torch.float16, (3072, 4)),
            "transformer.transformer_blocks.0.attn.to_q.lora_magnitude_vector": (torch.float16, (3072,))}
    assert (detect(dora, {}).lora_flavour, detect(dora, {}).base_model) == ("dora", "flux1")
    compatible = {"unet.down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_k.lora.down.weight":
                  (torch.float16, (4, 768)),
                  "unet.down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_k.lora.up.weight":
                  (torch.float16, (320, 4))}
    assert (detect(compatible, {}).lora_flavour, detect(compatible, {}).base_model) == ("diffusers", "sd1")
    # A list of tensors that are not (up, down) pairs of one small rank is not taken for a LoRA.
    not_pairs = {"0": (torch.float32, (64, 3, 3, 3)), "1": (torch.float32, (64,))}
    assert detect(not_pairs, {}).kind != "lora"
    loose = {"0": (torch.float32, (320, 4)), "1": (torch.float32, (8, 768))}  # ranks 4 and 8 do not chain
    assert detect(loose, {}).kind != "lora"


# ---- tiny real files, through the library ----------------------------------------------------------

FILE_CASES = [
    ("sd1-kohya-legacy.safetensors", "sd1", "kohya", {"legacy_metadata": True}, "kohya", "sd1"),
    ("sdxl-lokr.safetensors", "sdxl", "lokr", {}, "lokr", "sdxl"),
    ("sd2-loha.safetensors", "sd2", "loha", {}, "loha", "sd2"),
    ("sd1-dora.safetensors", "sd1", "dora", {}, "dora", "sd1"),
    ("sd1-ia3.safetensors", "sd1", "ia3", {}, "ia3", "sd1"),
    ("sd1-glora.safetensors", "sd1", "glora", {}, "glora", "sd1"),
    ("sd1-full.safetensors", "sd1", "full", {}, "full", "sd1"),
    ("flux-kohya.safetensors", "flux1", "kohya", {}, "kohya", "flux1"),
    ("flux-ai-toolkit.safetensors", "flux1", "peft", {}, "peft", "flux1"),
    ("flux-comfyui.safetensors", "flux1", "comfyui", {}, "peft", "flux1"),
    ("flux-xlabs.safetensors", "flux1", "xlabs", {}, "xlabs", "flux1"),
    ("flux-lokr.safetensors", "flux1", "lokr", {"text_encoders": False}, "lokr", "flux1"),
    ("sd3-kohya.safetensors", "sd3", "kohya", {}, "kohya", "sd3"),
    ("sd35-large-peft.safetensors", "sd3.5-large", "peft", {"text_encoders": False}, "peft", "sd3"),
    ("attn-procs.safetensors", "sd1", "attn-proc", {}, "diffusers-attn-proc", "sd1"),
    ("pytorch_lora_weights.bin", "sd2", "attn-proc", {}, "diffusers-attn-proc", "sd2"),
    ("lora.pt", "sd1", "lora-diffusion", {"text_encoders": False}, "lora-diffusion", "sd1"),
    ("lora.text_encoder.pt", "sd1", "lora-diffusion", {"diffusion": False}, "lora-diffusion", "sd1"),
    ("lora_diffusion.safetensors", "sd2", "lora-diffusion", {}, "lora-diffusion", "sd2"),
]


@pytest.fixture(scope="module")
def lora_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("loras")
    return {name: layouts.write_lora(folder / name, family, fmt, **options)
            for name, family, fmt, options, _, _ in FILE_CASES}


@pytest.mark.parametrize("name, flavour, base", [(c[0], c[4], c[5]) for c in FILE_CASES],
                         ids=[c[0] for c in FILE_CASES])
def test_tiny_files_inspect_with_their_flavour_and_base(lora_files: dict[str, Path], name: str, flavour: str,
                                                         base: str) -> None:
    report = sdhub.inspect(lora_files[name])
    assert (report.kind, report.detection.lora_flavour, report.base_model) == ("lora", flavour, base), \
        report.detection.evidence
    assert report.detection.evidence
    assert [p.code for p in report.problems if p.severity == "error"] == []
    assert report.tensor_count == len(layouts.lora_shapes(*[(c[1], c[2]) for c in FILE_CASES if c[0] == name][0],
                                                          size="tiny", **_parts(name)))


def _parts(name: str) -> dict[str, bool]:
    options = next(c[3] for c in FILE_CASES if c[0] == name)
    return {k: v for k, v in options.items() if k in ("text_encoders", "diffusion")}


def test_the_pickled_forms_convert_and_verify(lora_files: dict[str, Path], tmp_path: Path) -> None:
    # cloneofsimo's .pt is a torch.save'd list: its tensors are named by position, in order (up, down, up...).
    listed = sdhub.convert(lora_files["lora.pt"], tmp_path / "lora.safetensors", verify=True)
    assert (listed.status, listed.verified) == ("converted", True)
    converted = sdhub.inspect(listed.output)
    assert (converted.kind, converted.detection.lora_flavour, converted.base_model) == ("lora", "lora-diffusion", "sd1")
    from safetensors import safe_open

    with safe_open(str(listed.output), "pt") as handle:
        names = list(handle.keys())
        assert sorted(names, key=int) == [str(i) for i in range(len(names))]
        first_up, first_down = handle.get_tensor("0"), handle.get_tensor("1")
    assert first_up.shape[1] == first_down.shape[0] == 4  # (up, down) of rank 4
    original = torch.load(lora_files["lora.pt"], weights_only=True)  # our own test file: safe to load
    assert torch.equal(original[0], first_up) and torch.equal(original[1], first_down)
    processors = sdhub.convert(lora_files["pytorch_lora_weights.bin"], tmp_path / "procs.safetensors", verify=True)
    assert processors.verified
    assert sdhub.inspect(processors.output).detection.lora_flavour == "diffusers-attn-proc"


def test_convert_verify_on_the_command_line(lora_files: dict[str, Path], tmp_path: Path, run_cli) -> None:
    text_encoder = tmp_path / "lora.text_encoder.pt"
    text_encoder.write_bytes(lora_files["lora.text_encoder.pt"].read_bytes())
    result = run_cli("convert", text_encoder, "--verify")
    assert result.exit_code == 0, result.stderr
    inspected = run_cli("inspect", tmp_path / "lora.text_encoder.safetensors", "--json")
    data = json.loads(inspected.stdout)
    assert (data["kind"], data["lora_flavour"], data["base_model"]) == ("lora", "lora-diffusion", "sd1")


@pytest.mark.parametrize("layout", ["sdhub", "a1111", "comfyui", "stabilitymatrix"])
def test_scan_and_hash_catalogue_each_format_with_its_base(lora_files: dict[str, Path], tmp_path: Path,
        layout: str) -> None:
    home = sdhub.init_home(tmp_path / "home", layout)
    folder = home.folder("lora")
    picked = ["flux-xlabs.safetensors", "sdxl-lokr.safetensors", "sd3-kohya.safetensors", "lora.pt",
              "pytorch_lora_weights.bin"]
    for name in picked:
        (folder / name).write_bytes(lora_files[name].read_bytes())
    # A Flux LoRA whose metadata says SD 1.5 is catalogued as the Flux LoRA its tensors prove.
    layouts.write_lora(folder / "flux-claims-sd15.safetensors", "flux1", "kohya", text_encoders=False,
                       metadata={"ss_base_model_version": "sd_1.5", "ss_v2": "False"})
    report = sdhub.scan(home)
    assert report.errors == []
    expected = {c[0]: c[5] for c in FILE_CASES}
    with sdhub.Catalog(home) as catalog:
        for name in picked:
            asset = catalog.find(str(folder / name))
            assert (asset.kind, asset.base_model) == ("lora", expected[name]), name
        assert catalog.find(str(folder / "flux-claims-sd15.safetensors")).base_model == "flux1"
        assert {a.name for a in catalog.list_assets(kind="lora", base="flux1")} == {"flux-xlabs", "flux-claims-sd15"}
    for name in ("flux-xlabs.safetensors", "lora.pt"):
        hashes = sdhub.hash(lora_files[name])
        assert (hashes.kind, hashes.not_a_model) == ("lora", None)
        assert hashes.file.sha256 == hashlib.sha256(lora_files[name].read_bytes()).hexdigest()
    # AutoV3 (A1111's LoRA short hash): the tensor data's hash, as kohya's sshs_model_hash would record it.
    assert sdhub.hash(lora_files["flux-xlabs.safetensors"]).file.autov3


@pytest.mark.parametrize("prefix", ["lycoris_", "lora_transformer_"])
@pytest.mark.parametrize("width, base", [(3072, "flux1"), (1536, "sd3"), (2432, "sd3")])
def test_lycoris_on_diffusers_transformers_is_placed_by_width(prefix: str, width: int, base: str) -> None:
    # LyCORIS as SimpleTuner runs it names diffusers' modules with its "lycoris_" prefix; others use kohya's style.
    module = f"{prefix}transformer_blocks_0_attn_to_q"
    tensors = {f"{module}.lokr_w1": (torch.bfloat16, (16, 16)),
               f"{module}.lokr_w2": (torch.bfloat16, (width // 16, width // 16)),
               f"{module}.alpha": (torch.bfloat16, ())}
    detection = detect(tensors, {})
    assert (detection.kind, detection.lora_flavour, detection.base_model) == ("lora", "lokr", base)
    assert any(f"attention input width {width}" in line for line in detection.evidence)


def test_blocks_tell_the_family_when_no_attention_is_patched() -> None:
    mlp_only = {k: v for k, v in layouts.lora_shapes("sd3", "kohya", size="tiny", text_encoders=False).items()
                if "_mlp_" in k}
    assert mlp_only and detect(_infos(mlp_only), {}).base_model == "sd3"
    flux_mlp = {k: v for k, v in layouts.lora_shapes("flux1", "comfyui", size="tiny").items() if "_mlp." in k}
    assert flux_mlp and detect(_infos(flux_mlp), {}).base_model == "flux1"
    # A lone a1 (no b1), or weights without LyCORIS' on_input, are no network.
    assert detect({"block.a1.weight": (torch.float32, (8, 4)), "block.conv.weight": (torch.float32, (8, 8, 3, 3))},
                  {}).kind != "lora"


def test_embeddings_bundled_in_a_lora_are_named() -> None:
    shapes = _infos({**layouts.lora_shapes("sdxl", "kohya", size="tiny"),
                     "bundle_emb.sksdog.clip_l": (2, 768), "bundle_emb.sksdog.clip_g": (2, 1280)})
    detection = detect(shapes, {})
    assert (detection.kind, detection.base_model) == ("lora", "sdxl")
    assert detection.details["bundled_embeddings"] == ["sksdog"]
    assert "with 1 bundled embedding(s): sksdog" in detection.evidence


def test_sdxl_loras_as_diffusers_and_comfyui_save_them() -> None:
    # diffusers' train_dreambooth_lora_sdxl.py: UNet lora.down/lora.up, text encoders lora_linear_layer.
    diffusers = {}
    for module, (out_dim, in_dim) in {
            "unet.down_blocks.1.attentions.0.transformer_blocks.0.attn2.to_k": (640, 2048),
            "text_encoder.text_model.encoder.layers.0.self_attn.q_proj": (768, 768),
            "text_encoder_2.text_model.encoder.layers.0.self_attn.q_proj": (1280, 1280)}.items():
        wrapper = "lora" if module.startswith("unet.") else "lora_linear_layer"
        diffusers[f"{module}.{wrapper}.down.weight"] = (torch.float16, (4, in_dim))
        diffusers[f"{module}.{wrapper}.up.weight"] = (torch.float16, (out_dim, 4))
    detection = detect(diffusers, {})
    assert (detection.lora_flavour, detection.base_model) == ("diffusers", "sdxl")
    # ComfyUI's LoRA save: diffusion_model. + the SGM (LDM) names, lora_down/lora_up/alpha.
    comfy = {"diffusion_model.input_blocks.4.1.transformer_blocks.0.attn2.to_k.lora_down.weight":
             (torch.float16, (8, 2048)),
             "diffusion_model.input_blocks.4.1.transformer_blocks.0.attn2.to_k.lora_up.weight": (torch.float16, (640, 8)),
             "diffusion_model.input_blocks.4.1.transformer_blocks.0.attn2.to_k.alpha": (torch.float16, ())}
    assert (detect(comfy, {}).kind, detect(comfy, {}).base_model) == ("lora", "sdxl")
