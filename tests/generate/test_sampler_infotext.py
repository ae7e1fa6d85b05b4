"""Sampler and schedule in infotexts both ways, the CLI's names, prompt switching per model call,
negative-prompt LoRA tags, and PNG Info of prompts that start with ``{``."""

from __future__ import annotations

import pytest
import torch
from PIL import Image

from sdhub.cli.generate_commands import SAMPLER_NAMES, SCHEDULE_NAMES
from sdhub.errors import BadInputError
from sdhub.generate.generate import params_from_infotext, sampler_infotext_fields
from sdhub.generate.infotext import Infotext, png_bytes_with_parameters
from sdhub.generate.pipeline import GenerationParams
from sdhub.generate.pnginfo import read_image_metadata
from sdhub.generate.samplers import SAMPLERS, resolve_sampler
from sdhub.generate.schedules import SCHEDULE_TYPES


def a1111_line(sampler: str, schedule: str | None, extra: str = "", version: str | None = "v1.10.1") -> str:
    """An infotext laid out as A1111 1.10's create_infotext writes it."""
    fields = f"Steps: 20, Sampler: {sampler}, "
    if schedule is not None:
        fields += f"Schedule type: {schedule}, "
    fields += "CFG scale: 7, Seed: 1234, Size: 512x512, Model hash: 6ce0161689, Model: v1-5-pruned-emaonly"
    fields += extra
    if version:
        fields += f", Version: {version}"
    return f"a cat\nNegative prompt: blurry\n{fields}"


def written_schedule(sampler: str, schedule: str) -> str:
    """What A1111 1.10 writes as Schedule type: p.scheduler, replaced by the schedule's label when the
    sampler's get_sigmas resolves Automatic to a schedule function (DPM++ 2M: Karras)."""
    choice = resolve_sampler(sampler, schedule)
    return choice.infotext_schedule


@pytest.mark.parametrize("sampler", list(SAMPLERS))
@pytest.mark.parametrize("schedule", list(SCHEDULE_TYPES))
def test_every_sampler_and_schedule_written_as_a1111_parses_back(sampler, schedule):
    written = written_schedule(sampler, schedule)
    params, _ = params_from_infotext(a1111_line(sampler, written))
    again = resolve_sampler(params.sampler, params.schedule_type)
    first = resolve_sampler(sampler, schedule)
    assert again.sampler == first.sampler
    assert again.schedule == first.schedule  # the same sigmas are walked
    assert again.infotext_schedule == written


def test_automatic_is_written_as_the_schedule_it_chose():
    assert written_schedule("DPM++ 2M", "Automatic") == "Karras"
    assert written_schedule("DPM++ 2M SDE", "Automatic") == "Exponential"
    assert written_schedule("Euler a", "Automatic") == "Automatic"
    assert written_schedule("DDIM", "Karras") == "Karras"  # A1111 writes it though DDIM ignores it


@pytest.mark.parametrize("old,sampler,schedule", [
    ("DPM++ 2M Karras", "DPM++ 2M", "karras"), ("DPM++ SDE Karras", "DPM++ SDE", "karras"),
    ("LMS Karras", "LMS", "karras"), ("DPM2 a Karras", "DPM2 a", "karras"),
    ("DPM++ 2M SDE Exponential", "DPM++ 2M SDE", "exponential"),
    ("DPM++ 3M SDE Karras", "DPM++ 3M SDE", "karras"),
    # before 1.9 these meant the model's uniform schedule, which 1.10's "Automatic" no longer is
    ("DPM++ 2M", "DPM++ 2M", "uniform"), ("DPM2", "DPM2", "uniform"), ("DPM++ 2M SDE", "DPM++ 2M SDE", "uniform"),
    ("Euler a", "Euler a", "automatic"), ("DDIM", "DDIM", "automatic"),
])
@pytest.mark.parametrize("version", [None, "v1.6.0", "v1.8.0-RC"])
def test_pre_1_9_combined_names_map_to_sampler_and_schedule(old, sampler, schedule, version):
    params, _ = params_from_infotext(a1111_line(old, None, version=version))
    choice = resolve_sampler(params.sampler, params.schedule_type)
    assert (choice.label, choice.schedule) == (sampler, schedule)


@pytest.mark.parametrize("text,message", [
    (a1111_line("Euler Foo", "Automatic"), "unknown sampler 'Euler Foo'"),
    (a1111_line("Euler", "Wavy"), "unknown schedule type 'Wavy'"),
    (a1111_line("DPM++ 2M", "Karras", ", Schedule rho: 5"), "does not support Schedule rho 5"),
    (a1111_line("Euler", "Beta", ", Beta schedule alpha: 0.5, Beta schedule beta: 0.6"),
     "does not support Beta schedule alpha 0.5"),
])
def test_unknown_or_unsupported_sampler_fields_are_refused_in_one_line(text, message):
    with pytest.raises(BadInputError, match=message) as refused:
        params_from_infotext(text)
    assert "\n" not in str(refused.value)


def test_eta_sigma_noise_and_discard_round_trip():
    params = GenerationParams("a cat", sampler="Euler a", eta=0.5, discard_penultimate_sigma=True)
    fields = sampler_infotext_fields(params, resolve_sampler("Euler a"))
    assert fields == {"Discard penultimate sigma": True, "Eta": 0.5}
    dpm = GenerationParams("a cat", sampler="DPM++ SDE", s_noise=0.9)
    assert sampler_infotext_fields(dpm, resolve_sampler("DPM++ SDE")) == {"Sigma noise": 0.9}
    ddim = GenerationParams("a cat", sampler="DDIM", eta=0.3)
    assert sampler_infotext_fields(ddim, resolve_sampler("DDIM")) == {"Eta DDIM": 0.3}
    read, _ = params_from_infotext(a1111_line("Euler a", "Automatic", ", Eta: 0.5, Discard penultimate sigma: True"))
    assert (read.eta, read.discard_penultimate_sigma) == (0.5, True)
    read, _ = params_from_infotext(a1111_line("DDIM", "Automatic", ", Eta DDIM: 0.3, Sigma noise: 0.9"))
    assert (read.eta, read.s_noise) == (0.3, 0.9)
    beta = sampler_infotext_fields(GenerationParams("a", sampler="Euler", schedule_type="Beta"),
                                   resolve_sampler("Euler", "Beta"))
    assert beta == {"Beta schedule alpha": 0.6, "Beta schedule beta": 0.6}


def test_the_cli_help_names_every_sampler_and_schedule():
    assert SAMPLER_NAMES.split(", ") == list(SAMPLERS)
    assert SCHEDULE_NAMES.split(", ") == list(SCHEDULE_TYPES)


def test_pnginfo_reads_a_prompt_that_starts_with_a_brace(tmp_path):
    text = a1111_line("Euler a", "Automatic").replace("a cat", "{red|blue} cat, {{masterpiece}}")
    path = tmp_path / "brace.png"
    path.write_bytes(png_bytes_with_parameters(Image.new("RGB", (8, 8)), text))
    metadata = read_image_metadata(path)
    assert metadata.source == "a1111"
    assert metadata.prompt == "{red|blue} cat, {{masterpiece}}" and metadata.sampler == "Euler a"
    json_path = tmp_path / "fooocus.png"
    json_path.write_bytes(png_bytes_with_parameters(Image.new("RGB", (8, 8)), '{"prompt": "a cat"}'))
    assert read_image_metadata(json_path).source != "a1111"


# --- prompt switching per model call, with the tiny model ---------------------------------------------------

@pytest.fixture(scope="module")
def tiny_loaded(tiny_models):
    from sdhub.generate.loading import load_checkpoint

    return load_checkpoint(tiny_models["sd1"], device="cpu", dtype="fp32")


def contexts_per_call(model, params: GenerationParams) -> list[torch.Tensor]:
    from sdhub.generate.pipeline import sample_images

    seen: list[torch.Tensor] = []

    def record(module, args, kwargs):
        seen.append(kwargs["encoder_hidden_states"][0].clone())

    handle = model.unet.register_forward_pre_hook(record, with_kwargs=True)
    try:
        sample_images(model, params)
    finally:
        handle.remove()
    return seen


def a1111_texts_per_call(prompt_schedule_entries: list[tuple[int, str]], calls: int) -> list[str]:
    """A1111's reconstruct_cond_batch: the first entry with call <= end_at_step, else the first entry."""
    texts = []
    for call in range(calls):
        chosen = next((text for end, text in prompt_schedule_entries if call <= end), prompt_schedule_entries[0][1])
        texts.append(text if (text := chosen) else "")
    return texts


@pytest.mark.parametrize("sampler,calls", [("Heun", 2 * 6 - 1), ("DPM++ SDE", 2 * 6 - 1), ("Euler", 6),
                                           ("DPM2", 2 * 6 - 1), ("DPM++ 2S a", 2 * 6 - 1)])
def test_prompt_edits_switch_at_a1111s_model_calls(tiny_loaded, sampler, calls):
    from sdhub.generate.pipeline import PromptConditioner
    from sdhub.generate.prompt_schedule import prompt_schedule

    prompt = "a [red:blue:4] cat [dog|bird]"
    params = GenerationParams(prompt, steps=6, sampler=sampler, seed=3, width=64, height=64, rng="cpu")
    seen = contexts_per_call(tiny_loaded, params)
    assert len(seen) == calls
    total = resolve_sampler(sampler).sampler.total_steps(6)
    entries = prompt_schedule(prompt, total)
    expected = a1111_texts_per_call(entries, calls)
    conditioner = PromptConditioner(tiny_loaded, [], 1, "Original")
    encoded = {text: conditioner.schedule(text, total)[0].cond[0] for text in set(expected)}
    got = []
    for context in seen:
        matches = [text for text, cond in encoded.items() if torch.equal(cond, context)]
        assert len(matches) == 1
        got.append(matches[0])
    assert got == expected
    if resolve_sampler(sampler).sampler.second_order:
        # over 12 scheduled steps the edit at 4 comes after the 5th call, not the 5th step
        assert got[4].startswith("a red") and got[5].startswith("a blue")


def test_a_lora_tag_in_the_negative_prompt_stays_text(tmp_home, tiny_models):
    from sdhub.generate.generate import generate

    result = generate(tmp_home, str(tiny_models["sd1"]),
                      GenerationParams("a cat", negative_prompt="blurry <lora:missing:1>", steps=2, sampler="Euler",
                                       seed=1, width=64, height=64))
    assert result.loras == [] and not any("missing" in note for note in result.notes)
    info = Infotext.from_text(result.infotexts[0])
    assert info.negative_prompt == "blurry <lora:missing:1>" and "Lora hashes" not in info.params
    stripped = generate(tmp_home, str(tiny_models["sd1"]),
                        GenerationParams("a cat", negative_prompt="blurry ", steps=2, sampler="Euler", seed=1,
                                         width=64, height=64))
    from sdhub.testing.images import pixels

    assert not (pixels(result.images[0]) == pixels(stripped.images[0])).all()  # the tag's text was encoded
