"""``--from-png`` applies every A1111 1.10 infotext field it knows and refuses the others by name.

Infotexts here are laid out as A1111's ``create_infotext`` writes them (its key order and value
formats, ``Seed resize from: WxH``, ``Version`` last); seed resize noise is checked against A1111's
paste arithmetic restated index by index; a tiny-model image made with UniPC, a variation seed and
seed resize reruns from its PNG to the same pixels.
"""

from __future__ import annotations


import numpy as np
import pytest
import torch

from sdhub.errors import BadInputError
from sdhub.generate.generate import generate, params_from_infotext, rerun_png, sampler_infotext_fields
from sdhub.generate.infotext import read_png_parameters
from sdhub.generate.pipeline import GenerationParams
from sdhub.generate.rng import ImageNoise, SeedPlan, randn_local
from sdhub.generate.samplers import resolve_sampler
from sdhub.testing.images import pixels


def a1111_infotext(middle: str = "", extra: str = "", version: str | None = "v1.10.1", sampler: str = "Euler a",
                   prompt: str = "a cat") -> str:
    """A1111 1.10's create_infotext order: Steps ... Size, Model hash, Model, <middle> ..., extras, Version."""
    line = (f"Steps: 20, Sampler: {sampler}, Schedule type: Automatic, CFG scale: 7, Seed: 1234, Size: 512x512, "
            f"Model hash: 6ce0161689, Model: v1-5-pruned-emaonly{middle}{extra}")
    if version:
        line += f", Version: {version}"
    return f"{prompt}\nNegative prompt: blurry\n{line}"


def test_seed_resize_and_variation_seeds_are_read():
    text = a1111_infotext(", Variation seed: 99, Variation seed strength: 0.3, Seed resize from: 640x448")
    params, _ = params_from_infotext(text)
    assert (params.subseed, params.subseed_strength) == (99, 0.3)
    assert (params.seed_resize_from_w, params.seed_resize_from_h) == (640, 448)
    assert params.seed_resize_latent() == (56, 80)


def a1111_pasted_noise(seed: int, shape: tuple[int, int, int], drawn: tuple[int, int]) -> torch.Tensor:
    """A1111's ImageRNG.first for one image with seed resize, restated index by index."""
    small = torch.randn((shape[0], *drawn), generator=torch.Generator().manual_seed(seed))
    full = torch.randn(shape, generator=torch.Generator().manual_seed(seed))
    dy, dx = (shape[1] - drawn[0]) // 2, (shape[2] - drawn[1]) // 2
    rows = drawn[0] if dy >= 0 else drawn[0] + 2 * dy
    columns = drawn[1] if dx >= 0 else drawn[1] + 2 * dx
    for row in range(rows):
        for column in range(columns):
            full[:, max(dy, 0) + row, max(dx, 0) + column] = small[:, max(-dy, 0) + row, max(-dx, 0) + column]
    return full


@pytest.mark.parametrize("drawn", [(4, 6), (11, 11), (8, 3), (9, 12)])
def test_seed_resize_noise_is_pasted_centred_as_a1111_does(drawn):
    noise = ImageNoise((4, 8, 8), SeedPlan.for_batch(42, 1), "cpu", resize_from=drawn)
    first = noise.first()[0]
    assert torch.equal(first, a1111_pasted_noise(42, (4, 8, 8), drawn))
    # the image's generator made one full-size draw, so per-step noise continues as without resize
    plain = ImageNoise((4, 8, 8), SeedPlan.for_batch(42, 1), "cpu")
    plain.first()
    assert torch.equal(noise.next(), plain.next())


def test_seed_resize_with_a_variation_seed_mixes_at_the_old_size():
    noise = ImageNoise((4, 8, 8), SeedPlan.for_batch(5, 1, subseed=6, subseed_strength=0.5), "cpu", resize_from=(4, 4))
    from sdhub.generate.rng import slerp

    mixed = slerp(0.5, randn_local("cpu", 5, (4, 4, 4)), randn_local("cpu", 6, (4, 4, 4)))
    assert torch.equal(noise.first()[0][:, 2:6, 2:6], mixed)


@pytest.mark.parametrize("version,downcast,note", [
    ("v1.6.0", True, "before v1.7.0-225"), ("v1.7.0-224-g1234abc", True, "before v1.7.0-225"),
    ("v1.7.0-225-g1234abc", False, None), ("v1.10.1", False, None), ("1.5.2", True, "before v1.7.0-225"),
    (None, False, "has no Version"),
])
def test_old_versions_rerun_with_downcast_alphas_cumprod_as_a1111s_backcompat(version, downcast, note):
    notes: list[str] = []
    params, _ = params_from_infotext(a1111_infotext(version=version), notes=notes)
    assert params.downcast_alphas_cumprod is downcast
    assert any(note in text for text in notes) if note else notes == []


def test_an_explicit_downcast_field_is_honoured_without_a_version():
    notes: list[str] = []
    params, _ = params_from_infotext(a1111_infotext(", Downcast alphas_cumprod: True", version=None), notes=notes)
    assert params.downcast_alphas_cumprod and notes == []


@pytest.mark.parametrize("extra,field", [
    (', ADetailer model: face_yolov8n.pt, ADetailer confidence: 0.3', "ADetailer model"),
    (', ControlNet 0: "Module: canny, Model: control_v11p_sd15_canny [d14c016b], Weight: 1"', "ControlNet 0"),
    (", Refiner: sd_xl_refiner_1.0 [7440042bbd], Refiner switch at: 0.8", "Refiner"),
    (", Face restoration: CodeFormer", "Face restoration"),
    (", Token merging ratio: 0.5", "Token merging ratio"),
    (", Tiling: True", "Tiling"),
    (", NGMS: 0.5", "NGMS"),
    (', Hypernet: anime, Hypernet strength: 0.8', "Hypernet"),
    (", FP8 weight: Enable for SDXL", "FP8 weight"),
    (", Pad conds: True", "Pad conds"),
])
def test_fields_a_rerun_cannot_honour_are_refused_by_name_in_one_line(extra, field):
    with pytest.raises(BadInputError, match=f"does not support {field} ") as refused:
        params_from_infotext(a1111_infotext(extra=extra))
    message = str(refused.value)
    assert "\n" not in message and f"--ignore-field '{field}'" in message


def test_ignore_field_reruns_without_it_and_says_so():
    extra = ', ADetailer model: face_yolov8n.pt, ADetailer confidence: 0.3'
    notes: list[str] = []
    params, _ = params_from_infotext(a1111_infotext(extra=extra), ignore_fields=["adetailer model",
                                                                                   "ADetailer confidence"],
                                     notes=notes)
    assert params.seed == 1234
    assert [note.split(" (")[0] for note in notes] == ["ignored the infotext's 'ADetailer model'",
                                                       "ignored the infotext's 'ADetailer confidence'"]


def test_fields_at_a1111_defaults_and_lookup_fields_pass():
    extra = (', Lora hashes: "add_detail: 7c6bad76eb54", TI hashes: "easynegative: c74b4e810b03", '
             "Token merging ratio: 0, FP8 weight: Disable, Tiling: False, User: someone, "
             "VAE hash: 735e4c3a44, VAE: vae-ft-mse-840000-ema-pruned.safetensors")
    params, fields = params_from_infotext(a1111_infotext(extra=extra))
    assert fields["VAE hash"] == "735e4c3a44" and params.seed == 1234


@pytest.mark.parametrize("prompt,refused", [
    ("a [red:blue:1.5] cat", True),  # before 1.6 a value of 1 or more counted steps, not a fraction
    ("a [red:blue:0.5] cat", False), ("a [blurry] cat", False),
])
def test_old_prompt_editing_timelines_refuse_only_where_they_move_an_edit(prompt, refused):
    text = a1111_infotext(version="v1.5.2", prompt=prompt)
    if refused:
        with pytest.raises(BadInputError, match="Old prompt editing timelines"):
            params_from_infotext(text)
    else:
        assert params_from_infotext(text)[0].prompt == prompt


def test_unipc_settings_round_trip():
    text = a1111_infotext(", UniPC variant: bh2, UniPC skip type: logSNR, UniPC order: 2, "
                          "UniPC lower order final: False", sampler="UniPC")
    params, _ = params_from_infotext(text)
    assert (params.sampler, params.unipc_variant, params.unipc_skip_type, params.unipc_order,
            params.unipc_lower_order_final) == ("UniPC", "bh2", "logSNR", 2, False)
    written = sampler_infotext_fields(params, resolve_sampler("UniPC"))
    assert written == {"UniPC variant": "bh2", "UniPC skip type": "logSNR", "UniPC order": 2,
                       "UniPC lower order final": False}
    assert sampler_infotext_fields(GenerationParams("a", sampler="UniPC"), resolve_sampler("UniPC")) == {}
    with pytest.raises(BadInputError, match="UniPC variant 'bh9'"):
        params_from_infotext(a1111_infotext(", UniPC variant: bh9", sampler="UniPC"))


def test_unipc_with_variation_and_seed_resize_reruns_to_the_same_image(home_with_model, tmp_path):
    settings = GenerationParams("a cat", negative_prompt="blurry", steps=4, sampler="UniPC", seed=21, width=64,
                                height=64, subseed=5, subseed_strength=0.25, seed_resize_from_w=96,
                                seed_resize_from_h=48, unipc_order=2, rng="cpu")
    original = generate(home_with_model, "tiny-sd1", settings)
    text = read_png_parameters(original.images[0])
    assert ("Variation seed: 5, Variation seed strength: 0.25, Seed resize from: 96x48" in text
            and "UniPC order: 2" in text and "Sampler: UniPC" in text)
    rerun = rerun_png(home_with_model, original.images[0], out_dir=tmp_path)
    assert np.array_equal(pixels(rerun.images[0]), pixels(original.images[0]))
    assert rerun.infotexts[0] == text
    plain = generate(home_with_model, "tiny-sd1", GenerationParams(**{**settings.to_dict(), "seed_resize_from_w": 0,
                                                                      "seed_resize_from_h": 0}), out_dir=tmp_path)
    assert not np.array_equal(pixels(plain.images[0]), pixels(original.images[0]))
