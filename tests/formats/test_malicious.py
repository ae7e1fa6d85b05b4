"""Hostile pickles are refused with one line, nothing in them runs, and nothing is left behind."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from malicious import Case, build_corpus
from sdhub.errors import BadInputError, UnsafeFileError
from sdhub.formats import open_model
from sdhub.ops.convert import convert
from sdhub.ops.scan_pickle import scan_pickle


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> list[Case]:
    return build_corpus(tmp_path_factory.mktemp("hostile"))


def test_corpus_covers_every_technique_with_a_live_payload(corpus: list[Case]) -> None:
    names = {case.name for case in corpus}
    assert len(corpus) >= 25 and sum(case.live for case in corpus) >= 25
    for technique in ("reduce_os_system", "inst_opcode", "obj_opcode", "newobj_getattr", "newobj_ex_getattr",
                      "stack_global_dotted", "getattr_import_chain", "nested_pickle_loads", "file_write_open",
                      "importlib_import_module", "ext1", "ext2", "ext4", "legacy_magic_payload",
                      "legacy_sys_info_payload", "legacy_key_list_payload", "second_pickle_other_prefix",
                      "storage_offset_out_of_bounds", "shape_stride_overflow", "truncated_archive",
                      "corrupt_central_directory", "deep_nesting_payload", "zip64_second_directory",
                      "end_record_in_comment", "legacy_tar_polyglot", "unlisted_record_in_gap"):
        assert technique in names


def test_live_cases_really_run_code_under_torch_load(tmp_path: Path) -> None:
    """Proof the corpus is hostile: PyTorch's own unpickler, in a throwaway process, touches the canaries.

    The proof runs on a second build of the corpus (its canaries live in this test's folder).
    """
    live = [case for case in build_corpus(tmp_path / "proof") if case.live]
    jobs = [{"path": str(c.path), "canary": str(c.canary), "ext": c.extension} for c in live]
    script = textwrap.dedent("""
        import copyreg, json, os, sys, time, torch
        jobs = json.loads(sys.stdin.read())
        for job in jobs:
            if job["ext"]:
                copyreg.add_extension(*job["ext"])
            try:
                torch.load(job["path"], weights_only=False)
            except BaseException:
                pass
            if job["ext"]:
                copyreg.remove_extension(*job["ext"])
        deadline = time.time() + 10
        while time.time() < deadline and not all(os.path.exists(j["canary"]) for j in jobs):
            time.sleep(0.1)
        print(json.dumps([j["canary"] for j in jobs if not os.path.exists(j["canary"])]))
    """)
    result = subprocess.run([sys.executable, "-c", script], input=json.dumps(jobs), capture_output=True, text=True,
                            cwd=tmp_path, timeout=240)
    not_run = [Path(p).name for p in json.loads(result.stdout.strip().splitlines()[-1])]
    assert not_run == []


def test_every_case_is_refused_without_running_anything(corpus: list[Case]) -> None:
    for case in corpus:
        with pytest.raises((UnsafeFileError, BadInputError)) as raised:
            with open_model(case.path) as model:
                model.tensors  # pragma: no cover - reaching this is the failure
        message = str(raised.value)
        assert "\n" not in message and case.path.name in message, (case.name, message)
        assert not case.canary.exists(), case.name


def test_convert_refuses_and_leaves_no_output_or_temporary_file(corpus: list[Case]) -> None:
    folder = corpus[0].path.parent
    before = sorted(p.name for p in folder.iterdir())
    for case in corpus:
        with pytest.raises((UnsafeFileError, BadInputError)):
            convert(case.path)
        assert not case.canary.exists(), case.name
    assert sorted(p.name for p in folder.iterdir()) == before


def test_scan_pickle_lists_the_hostile_global_and_refuses(corpus: list[Case]) -> None:
    case = next(c for c in corpus if c.name == "placeholder_state_payload")
    report = scan_pickle(case.path)
    assert report.verdict == "refused"
    assert report.globals["os.system"] == "refused"
    assert report.globals["argparse.Namespace"] == "placeholder"
    assert report.opcodes["REDUCE"] >= 1 and report.opcodes["BUILD"] == 1
    assert not case.canary.exists()
