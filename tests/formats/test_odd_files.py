"""Odd pickles and files saved in a model's place: each gets an honest one-line report, never "corrupt".

Lists and tuples of tensors (cloneofsimo's lora_diffusion .pt), nested dicts (IP-Adapter .bin),
empty dicts and unnameable structures; Git LFS pointers, empty files, HTML pages and JSON error
bodies. ``hash`` refuses the stand-ins: their hashes would be taken for the model's.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from sdhub.errors import NotAModelError, StandInFileError, UnsupportedStructureError
from sdhub.formats import open_model
from sdhub.ops.convert import convert
from sdhub.ops.scan_pickle import scan_pickle

LFS_POINTER = (b"version https://git-lfs.github.com/spec/v1\n"
               b"oid sha256:4665a5ea423c2713d436b5ee50593a9640e0018c1550b5a0002f74190d6caea8\n"
               b"size 4265146304\n")


def lora_diffusion_pt(path: Path) -> list[torch.Tensor]:
    """A .pt as cloneofsimo's ``save_lora_weight`` writes it: [up, down, up, down, ...] in fp16."""
    torch.manual_seed(0)
    layers = [(torch.nn.Linear(4, 320, bias=False), torch.nn.Linear(320, 4, bias=False)) for _ in range(2)]
    weights = []
    for up, down in layers:
        weights.append(up.weight.to("cpu").to(torch.float16))
        weights.append(down.weight.to("cpu").to(torch.float16))
    torch.save(weights, path)
    return weights


def test_a_list_of_tensors_converts_with_tensors_named_by_position(tmp_path: Path) -> None:
    weights = lora_diffusion_pt(tmp_path / "lora_weight.pt")
    with open_model(tmp_path / "lora_weight.pt") as model:
        assert list(model.tensors) == ["0", "1", "2", "3"]
        assert model.tensors["0"].shape == (320, 4) and model.tensors["1"].shape == (4, 320)
    report = convert(tmp_path / "lora_weight.pt", verify=True)
    assert report.verified and report.tensors == 4
    with open_model(report.output) as written:
        assert all(torch.equal(written.load(str(i)), weights[i]) for i in range(4))
    assert scan_pickle(tmp_path / "lora_weight.pt").verdict == "safe"


def test_a_tuple_and_a_nested_list_are_named_by_position(tmp_path: Path) -> None:
    torch.save((torch.zeros(2, 3), [torch.ones(4), torch.ones(1)]), tmp_path / "pair.pt")
    with open_model(tmp_path / "pair.pt") as model:
        assert {name: info.shape for name, info in model.tensors.items()} == {"0": (2, 3), "1.0": (4,), "1.1": (1,)}


def test_an_ip_adapter_bin_is_read_with_dotted_names(tmp_path: Path) -> None:
    torch.save({"image_proj": {"proj.weight": torch.zeros(3072, 4), "norm.weight": torch.ones(768)},
                "ip_adapter": {"1.to_k_ip.weight": torch.zeros(320, 4), "1.to_v_ip.weight": torch.zeros(320, 4)}},
               tmp_path / "ip-adapter_sd15.bin")
    with open_model(tmp_path / "ip-adapter_sd15.bin") as model:
        assert sorted(model.tensors) == ["image_proj.norm.weight", "image_proj.proj.weight",
                                         "ip_adapter.1.to_k_ip.weight", "ip_adapter.1.to_v_ip.weight"]


def test_an_empty_dict_says_it_holds_no_tensors(tmp_path: Path, run_cli) -> None:
    torch.save({}, tmp_path / "empty.pt")
    with pytest.raises(NotAModelError, match=r"holds no tensors \(an empty dict\)"):
        open_model(tmp_path / "empty.pt")
    scanned = scan_pickle(tmp_path / "empty.pt")
    assert scanned.verdict == "not-a-model" and "corrupt" not in scanned.reason
    result = run_cli("inspect", tmp_path / "empty.pt")
    assert result.exit_code == 2 and result.stdout == ""
    assert result.stderr.strip() == "sdhub: error: empty.pt: holds no tensors (an empty dict); it is not a model"


def test_tensors_without_names_are_an_unsupported_structure(tmp_path: Path, run_cli) -> None:
    torch.save({frozenset({torch.zeros(2), torch.ones(2)}): 1, "weights": {torch.zeros(1), torch.ones(3)}},
               tmp_path / "set.pt")
    torch.save({("up", 0): torch.zeros(2)}, tmp_path / "tuple_keys.pt")
    for name, where in (("set.pt", "a set of 2 items, 2 of them tensors at weights"),
                        ("tuple_keys.pt", "tensors under a tuple key")):
        with pytest.raises(UnsupportedStructureError, match="an unsupported structure") as raised:
            open_model(tmp_path / name)
        assert where in str(raised.value)
        assert scan_pickle(tmp_path / name).verdict == "unsupported"
        result = run_cli("convert", tmp_path / name)
        assert result.exit_code == 2 and len(result.stderr.strip().splitlines()) == 1
        assert "unsupported structure" in result.stderr and "corrupt" not in result.stderr
        assert not (tmp_path / name).with_suffix(".safetensors").exists()


def stand_ins(folder: Path) -> dict[str, tuple[bytes, str]]:
    """Files in a model's place and the words their report must hold."""
    return {
        "flux1-dev.safetensors": (LFS_POINTER, "is a Git LFS pointer to a file of 4,265,146,304 bytes (4.3 GB), "
                                               "sha256 4665a5ea423c…, not the file itself: `git lfs pull`"),
        "v1-5-pruned.ckpt": (b"", "is empty (0 bytes)"),
        "realistic.safetensors": (b"\xef\xbb\xbf\n  <!DOCTYPE html>\n<html><head><title>Just a moment\x1b[2K..."
                                  b"</title></head><body>Checking your browser</body></html>",
                                  "is a web page (HTML, titled 'Just a moment\\x1b[2K...')"),
        "lora.safetensors": (json.dumps({"error": "Unauthorized", "message": "log in"}).encode(),
                             "is a JSON document (error: 'Unauthorized')"),
        "model.bin": (b' {"detail": "Entry not found"}', "is a JSON document (detail: 'Entry not found')"),
    }


def test_files_saved_in_a_models_place_say_what_they_are(tmp_path: Path) -> None:
    for name, (content, words) in stand_ins(tmp_path).items():
        (tmp_path / name).write_bytes(content)
        with pytest.raises(StandInFileError) as raised:
            open_model(tmp_path / name)
        assert str(raised.value).startswith(f"{name}: {words}"), str(raised.value)
        assert "\x1b" not in str(raised.value)


@pytest.mark.parametrize("command", ["hash", "inspect", "convert", "scan-pickle"])
def test_every_command_refuses_a_stand_in_with_the_same_line(tmp_path: Path, run_cli, command: str) -> None:
    for name, (content, words) in stand_ins(tmp_path).items():
        (tmp_path / name).write_bytes(content)
        args = ["-o", tmp_path / "out.safetensors"] if command == "convert" else []
        result = run_cli(command, tmp_path / name, *args)
        if command == "scan-pickle":  # a listing, whose verdict and reason carry the same words
            assert f"{name}: {words}" in result.stdout and "not-a-model" in result.stdout, result.stdout
            continue
        assert result.exit_code == 2, (name, result.stderr)
        assert result.stdout == "" and len(result.stderr.strip().splitlines()) == 1, (name, result.stderr)
        assert f"sdhub: error: {name}: {words}" in result.stderr, result.stderr
        assert "Traceback" not in result.stderr and "\x1b" not in result.stderr
    assert not (tmp_path / "out.safetensors").exists()


def test_hash_refuses_a_pointer_among_good_files_and_hashes_the_others(tmp_path: Path, run_cli) -> None:
    (tmp_path / "flux1-dev.safetensors").write_bytes(LFS_POINTER)
    lora_diffusion_pt(tmp_path / "lora_weight.pt")
    result = run_cli("hash", tmp_path / "flux1-dev.safetensors", tmp_path / "lora_weight.pt", "--json")
    assert result.exit_code == 2
    assert [Path(entry["path"]).name for entry in json.loads(result.stdout)] == ["lora_weight.pt"]
    assert "flux1-dev.safetensors: is a Git LFS pointer" in result.stderr and "1 of 2 files not hashed" in result.stderr


def test_scan_catalogues_stand_ins_as_broken_with_the_reason(tmp_home, run_cli) -> None:
    folder = tmp_home.folder("checkpoint")
    for name, (content, _) in stand_ins(folder).items():
        (folder / name).write_bytes(content)
    result = run_cli("--home", tmp_home.root, "scan", "--json")
    assert result.exit_code == 0, result.stderr
    problems = json.loads(run_cli("--home", tmp_home.root, "ls", "--problems", "--json").stdout)
    by_name = {entry["file_name"]: entry for entry in problems}
    assert sorted(by_name) == sorted(stand_ins(folder))
    for name, (_, words) in stand_ins(folder).items():
        assert by_name[name]["defect"] == "broken"
        assert any(words in str(problem) for problem in by_name[name]["problems"]), by_name[name]
