"""``sdhub prompt`` and ``sdhub pnginfo`` as a user runs them."""

from __future__ import annotations

import json
from pathlib import Path

from PIL import Image

from sdhub.generate.infotext import save_png_with_parameters
from sdhub.testing import factory


def test_prompt_json_has_a1111_attention_and_schedule(run_cli, tmp_home):
    result = run_cli("--home", tmp_home.root, "prompt", "(worst quality, low quality:1.3), (bad-hands-5:0.8)", "--json")
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["attention"] == [["worst quality, low quality", 1.3], [", ", 1.0], ["bad-hands-5", 0.8]]
    assert report["schedule"] == [[20, "(worst quality, low quality:1.3), (bad-hands-5:0.8)"]]


def test_prompt_schedule_follows_steps_and_escapes_stay_literal(run_cli, tmp_home):
    result = run_cli("--home", tmp_home.root, "prompt", "rem \\(re:zero\\) [cat:dog:0.5]", "--steps", "10", "--json")
    report = json.loads(result.stdout)
    assert report["attention"] == [["rem (re:zero) ", 1.0], ["cat:dog:0.5", 1 / 1.1]]
    assert report["schedule"] == [[5, "rem \\(re:zero\\) cat"], [10, "rem \\(re:zero\\) dog"]]
    assert [e["text"] for e in report["subprompts"][0]["schedule"]] == ["rem \\(re:zero\\) cat", "rem \\(re:zero\\) dog"]


def test_prompt_finds_embeddings_and_loras_in_the_home(run_cli, tmp_home):
    factory.embedding(tmp_home.folder("embedding") / "bad-hands-5.safetensors", fmt="safetensors", vectors=2)
    factory.lora(tmp_home.folder("lora") / "add_detail.safetensors")
    result = run_cli("--home", tmp_home.root, "prompt", "a cat <lora:add_detail:0.6> <lora:missing>",
                     "--negative", "(bad-hands-5:0.8), blurry", "--json")
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["embeddings"] == ["bad-hands-5"]
    chunk = report["negative"]["schedule"][0]["chunks"][0]
    assert chunk["embeddings"] == ["bad-hands-5"] and "<bad-hands-5#1>" in chunk["tokens"]
    loras = {l["name"]: l for l in report["loras"]}
    assert loras["add_detail"]["te_multiplier"] == 0.6 and loras["add_detail"]["path"].endswith("add_detail.safetensors")
    assert loras["missing"]["path"] is None
    assert report["text_without_networks"] == "a cat  "


def test_prompt_table_shows_chunks_and_prints_brackets_literally(run_cli, tmp_home):
    result = run_cli("--home", tmp_home.root, "prompt", "a [cat:dog:0.5] " + "word, " * 40, "--steps", "4")
    assert result.exit_code == 0, result.stderr
    assert "cat:dog:0.5" in result.stdout
    assert "chunk 2" in result.stdout  # 40 words and commas (80 tokens) do not fit one 75-token chunk
    assert "CLIP (openai/clip-vit-large-patch14, CLIP's BPE vocabulary from open_clip_torch" in result.stdout


def test_prompt_with_a_bad_weight_is_a_one_line_error(run_cli, tmp_home):
    result = run_cli("--home", tmp_home.root, "prompt", "(cat:1.2.3)")
    assert result.exit_code == 2
    assert result.stderr.startswith("sdhub: error:") and "Traceback" not in result.stderr


def test_pnginfo_reads_a1111_parameters(run_cli, tmp_path: Path):
    text = "a cat\nNegative prompt: blurry\nSteps: 20, Sampler: Euler a, CFG scale: 7, Seed: 42, Size: 64x64, Model: tiny"
    path = save_png_with_parameters(Image.new("RGB", (64, 64)), tmp_path / "cat.png", text)
    result = run_cli("pnginfo", path, "--json")
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    assert (data["source"], data["prompt"], data["negative_prompt"], data["seed"]) == ("a1111", "a cat", "blurry", 42)
    assert data["infotext"] == text
    table = run_cli("pnginfo", path)
    assert "Euler a" in table.stdout and "blurry" in table.stdout


def test_pnginfo_on_bad_files_is_a_one_line_error(run_cli, tmp_path: Path):
    missing = run_cli("pnginfo", tmp_path / "nope.png")
    assert missing.exit_code == 2 and "no such file" in missing.stderr
    bad = tmp_path / "bad.png"
    bad.write_text("hello")
    result = run_cli("pnginfo", bad)
    assert result.exit_code == 2 and "not a readable image" in result.stderr and "Traceback" not in result.stderr


def test_prompt_names_the_model_it_is_for(run_cli, tmp_home, tmp_path: Path):
    checkpoint = factory.sd1_checkpoint(tmp_path / "tiny.safetensors")
    result = run_cli("--home", tmp_home.root, "prompt", "a cat", "--model", checkpoint, "--json")
    assert result.exit_code == 0, result.stderr
    assert "model tiny.safetensors: sd1" in json.loads(result.stdout)["notes"]
    unknown = run_cli("--home", tmp_home.root, "prompt", "a cat", "--model", "no-such-model")
    assert unknown.exit_code == 1 and unknown.stderr.startswith("sdhub: error:")


def test_prompt_uses_the_cached_clip_tokenizer_when_present(run_cli, tmp_home, tmp_path: Path, monkeypatch):
    from sdhub.generate.byte_tokenizer import write_tokenizer_files

    cache = tmp_path / "hf" / "hub"
    repo = cache / "models--openai--clip-vit-large-patch14"
    write_tokenizer_files(repo / "snapshots" / ("0" * 40))
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("0" * 40)
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    result = run_cli("--home", tmp_home.root, "prompt", "a cat", "--json")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["tokenizer"] == "CLIP (openai/clip-vit-large-patch14, the Hugging Face cache)"
