"""``sdhub demo``: build a tiny model and drive the whole workflow on it, in a fresh home.

Each step calls the same library functions the CLI commands call and hands a ``DemoStep`` (a
title, lines for a newcomer to read, and the data behind them) to ``on_step``; the CLI prints
them. Everything is offline and runs in well under a minute on a CPU.
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from sdhub.config import Home, init_home, recorded_layout
from sdhub.progress import NULL_PROGRESS, Progress

DEMO_MODEL_NAME = "sdhub-demo-tiny.safetensors"
DEMO_LORA_NAME = "sdhub-demo-style.safetensors"
DEMO_EMBEDDING_NAME = "sdhub-demo-embedding.pt"
DEMO_PROMPT = "a (red:1.2) fox in the snow, <lora:sdhub-demo-style:0.8>"
DEMO_NEGATIVE = "sdhub-demo-embedding, blurry"


@dataclass
class DemoStep:
    """One step of the demo: what was done and what a user should notice."""

    title: str
    command: str
    lines: list[str]
    data: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {"title": self.title, "command": self.command, "lines": self.lines, "data": self.data,
                "seconds": round(self.seconds, 3)}


@dataclass
class DemoResult:
    home: Home
    steps: list[DemoStep]
    left_in_home: list[str]

    def to_dict(self) -> dict[str, Any]:
        return {"home": self.home.to_dict(), "steps": [s.to_dict() for s in self.steps],
                "left_in_home": self.left_in_home}


def _size(path: Path) -> str:
    size = path.stat().st_size
    return f"{size / 1e6:.1f} MB" if size >= 1e6 else f"{size / 1e3:.0f} KB"


def run_demo(home_root: str | Path | None = None, *, progress: Progress = NULL_PROGRESS,
             on_step: Callable[[DemoStep], None] = lambda step: None) -> DemoResult:
    """Run the demo in ``home_root`` (a new temporary folder when None) and return every step."""
    root = Path(home_root) if home_root is not None else Path(tempfile.mkdtemp(prefix="sdhub-demo-"))
    steps: list[DemoStep] = []

    def step(title: str, command: str, action: Callable[[], tuple[list[str], dict[str, Any]]]) -> dict[str, Any]:
        started = time.monotonic()
        lines, data = action()
        done = DemoStep(title, command, lines, data, time.monotonic() - started)
        steps.append(done)
        on_step(done)
        return data

    # An existing home keeps its layout; a new folder gets sdhub's own.
    home = init_home(root, recorded_layout(root))
    downloads = root / "downloads"
    downloads.mkdir(exist_ok=True)
    pickle_path = downloads / "sdhub-demo-tiny-trained.ckpt"
    model_path = home.folder("checkpoint") / DEMO_MODEL_NAME

    step("A home", f"sdhub init {root}", lambda: (
        [f"home {root} with the {home.layout} layout", *(f"{kind:<10} -> {path}" for kind, path in home.folders.items())],
        home.to_dict()))
    step("Build a tiny model like the ones users download", "(sdhub.testing.factory)",
         lambda: _build_models(home, pickle_path))
    step("Look inside the pickle without running it", f"sdhub scan-pickle {pickle_path.name}",
         lambda: _scan_pickle(pickle_path))
    step("A booby-trapped pickle is refused, and nothing runs", "sdhub convert downloads/free-model.ckpt",
         lambda: _refuse_trap(downloads))
    converted = step("Convert it to .safetensors through the safe unpickler",
                     f"sdhub convert {pickle_path.name} --verify", lambda: _convert(pickle_path))
    step("Inspect what it is and what is wrong with it", f"sdhub inspect {Path(converted['output']).name}",
         lambda: _inspect(Path(converted["output"])))
    step("Prune it: EMA weights in, training state out, fp16",
         f"sdhub prune {Path(converted['output']).name} --ema use --dtype fp16 -o models/{DEMO_MODEL_NAME}",
         lambda: _prune(Path(converted["output"]), model_path))
    step("Hash it the ways A1111 and Civitai do", f"sdhub hash models/{DEMO_MODEL_NAME}",
         lambda: _hash(model_path))
    step("Catalog the home", "sdhub scan && sdhub ls", lambda: _catalog(home, root))
    step("Generate with A1111 semantics: emphasis, a LoRA tag, an embedding", "sdhub generate ...",
         lambda: _generate(home, model_path, progress))
    step("Prove it works: a smoke test with a verdict, recorded in the catalog",
         f"sdhub smoke {Path(DEMO_MODEL_NAME).stem}", lambda: _smoke(home, model_path, progress))
    step("Everything known about it, including where it came from", f"sdhub show {Path(DEMO_MODEL_NAME).stem}",
         lambda: _show(home, model_path))
    left = [str(model_path.relative_to(root)), f"loras/{DEMO_LORA_NAME}", f"embeddings/{DEMO_EMBEDDING_NAME}"]
    return DemoResult(home, steps, left)


def _build_models(home: Home, pickle_path: Path) -> tuple[list[str], dict[str, Any]]:
    from sdhub.testing import factory

    factory.sd1_checkpoint(pickle_path, fmt="ckpt", ema=True, training_state=True, seed=7)
    # An earlier run's LoRA and embedding are kept: written again they would differ in their bytes
    # (safetensors orders header metadata at random), and the catalog would list the old ones as missing.
    lora = home.folder("lora") / DEMO_LORA_NAME
    if not lora.is_file():
        factory.lora(lora, base="sd1", seed=8)
    embedding = home.folder("embedding") / DEMO_EMBEDDING_NAME
    if not embedding.is_file():
        factory.embedding(embedding, base="sd1", fmt="pt", seed=9)
    lines = [
        f"{pickle_path.name}: an SD1-layout training checkpoint (.ckpt pickle) with EMA weights, "
        f"optimizer state and a Lightning callback, {_size(pickle_path)}",
        f"{lora.name}: a kohya LoRA for it, {_size(lora)}",
        f"{embedding.name}: an A1111 textual-inversion embedding, {_size(embedding)}",
    ]
    return lines, {"checkpoint": str(pickle_path), "lora": str(lora), "embedding": str(embedding)}


def _scan_pickle(path: Path) -> tuple[list[str], dict[str, Any]]:
    from sdhub.ops.scan_pickle import scan_pickle

    report = scan_pickle(path)
    lines = [f"verdict: {report.verdict} ({len(report.globals)} globals, {report.tensors} tensors)"]
    lines += [f"  {name}: {verdict}" for name, verdict in sorted(report.globals.items())]
    return lines, report.to_dict()


def _trap_pickle(command: str) -> bytes:
    """A pickle that would run ``os.system(command)`` if anything unpickled it the usual way."""
    argument = command.encode()
    return (b"\x80\x02cposix\nsystem\nq\x00X" + len(argument).to_bytes(4, "little") + argument
            + b"q\x01\x85q\x02Rq\x03.")


def _refuse_trap(folder: Path) -> tuple[list[str], dict[str, Any]]:
    import zipfile

    from sdhub.errors import SdhubError
    from sdhub.ops.convert import convert

    canary = folder / "PWNED"
    trap = folder / "free-model.ckpt"
    with zipfile.ZipFile(trap, "w", zipfile.ZIP_STORED) as archive:
        archive.writestr("archive/data.pkl", _trap_pickle(f"touch {canary}"))
        archive.writestr("archive/version", "3\n")
    try:
        convert(trap)
        refusal = "converted (this should never happen)"
    except SdhubError as error:
        refusal = str(error)
    outputs = sorted(p.name for p in folder.iterdir() if p.name.startswith("free-model") and p != trap)
    lines = [f"refused: {refusal}",
             f"the payload ran: {'YES' if canary.exists() else 'no'}; output left behind: {outputs or 'none'}"]
    trap.unlink()
    return lines, {"refusal": refusal, "payload_ran": canary.exists(), "outputs": outputs}


def _convert(path: Path) -> tuple[list[str], dict[str, Any]]:
    from sdhub.ops.convert import convert

    report = convert(path, verify=True, overwrite=True)  # the demo's own file, from an earlier run
    lines = [f"{Path(report.output).name}: {report.tensors} tensors, {_size(Path(report.output))}, "
             f"every tensor verified against the pickle"]
    if report.placeholders:
        lines.append(f"training objects kept inert, never constructed: {', '.join(report.placeholders)}")
    if report.dropped:
        lines.append(f"non-tensor entries dropped: {', '.join(report.dropped[:6])}"
                     + (" ..." if len(report.dropped) > 6 else ""))
    return lines, report.to_dict()


def _inspect(path: Path) -> tuple[list[str], dict[str, Any]]:
    from sdhub.ops.inspect import inspect_file

    data = inspect_file(path).to_dict()
    lines = [f"kind: {data['kind']}, architecture: {data['architecture']}"]
    for component in data["components"]:
        dtypes = ", ".join(sorted(component["dtypes"]))
        lines.append(f"  {component['name']}: {component['parameters']:,} parameters ({dtypes})")
    lines.append(f"EMA weights: {'yes' if data['ema'] else 'no'}; problems found: {len(data['problems'])}")
    lines += [f"  problem: {problem['message']}" for problem in data["problems"]]
    saved = (data.get("prune") or {}).get("bytes_saved") or {}
    if saved.get("fp16"):
        lines.append(f"prune to fp16 would save {saved['fp16'] / 1e6:.1f} MB")
    return lines, data


def _prune(path: Path, out: Path) -> tuple[list[str], dict[str, Any]]:
    from sdhub.ops.prune import PruneOptions, prune

    report = prune(path, out, PruneOptions(ema="use", dtype="fp16"), overwrite=True)
    lines = [f"{out.name}: {report.bytes_before / 1e6:.1f} MB -> {report.bytes_after / 1e6:.1f} MB "
             f"({report.ema_tensors_used} EMA tensors used as the model's weights, {report.dtype})"]
    return lines, report.to_dict()


def _hash(path: Path) -> tuple[list[str], dict[str, Any]]:
    from sdhub.ops.hashing import hash_model

    result = hash_model(path, all_hashes=True)
    hashes = result.file
    lines = [f"SHA-256 {hashes.sha256}", f"AutoV2 {hashes.autov2}  (A1111 'Model hash' in infotexts)",
             f"legacy {hashes.legacy_model_hash}  AutoV3 {hashes.autov3}  CRC32 {hashes.crc32}",
             f"BLAKE3 {hashes.blake3}",
             "content of each component: " + ", ".join(f"{name} {digest[:10]}"
                                                        for name, digest in (result.components or {}).items())]
    return lines, result.to_dict()


def _catalog(home: Home, root: Path) -> tuple[list[str], dict[str, Any]]:
    from sdhub.catalog import Catalog

    with Catalog(home) as catalog:
        scan = catalog.scan()
        assets = catalog.list_assets()
        lines = [f"scanned: {scan.to_dict().get('files_seen', len(assets))} files"]
        for asset in assets:
            data = asset.to_dict()
            lines.append(f"  {data.get('name')}: {data.get('kind')} {data.get('base_model') or ''}".rstrip())
        return lines, {"scan": scan.to_dict(), "assets": [asset.to_dict() for asset in assets]}


def _generate(home: Home, model_path: Path, progress: Progress) -> tuple[list[str], dict[str, Any]]:
    from sdhub.generate.generate import generate
    from sdhub.generate.pipeline import GenerationParams

    params = GenerationParams(prompt=DEMO_PROMPT, negative_prompt=DEMO_NEGATIVE, steps=6, sampler="Euler a",
                              seed=1234, width=64, height=64)
    result = generate(home, str(model_path), params, progress)
    lines = [f"image: {result.images[0]}",
             f"loras applied: {', '.join(l['name'] for l in result.loras) or 'none'}; "
             f"embeddings used: {', '.join(result.embeddings) or 'none'}",
             "infotext (what A1111's PNG Info shows):", *("  " + line for line in result.infotexts[0].splitlines())]
    return lines, result.to_dict()


def _smoke(home: Home, model_path: Path, progress: Progress) -> tuple[list[str], dict[str, Any]]:
    from sdhub.generate.reference_tests import run_smoke

    result = run_smoke(home, [str(model_path)], steps=4, progress=progress)[0]
    lines = [f"verdict: {result.verdict}", *(f"  {reason}" for reason in result.reasons),
             f"image: {result.image_path}"]
    return lines, result.to_dict()


def _show(home: Home, model_path: Path) -> tuple[list[str], dict[str, Any]]:
    from sdhub.catalog import Catalog

    with Catalog(home) as catalog:
        details = catalog.show(str(model_path)).to_dict()
    asset = details.get("asset", details)
    lines = [f"name: {asset.get('name')}, kind: {asset.get('kind')}, base: {asset.get('base_model')}, "
             f"status: {asset.get('status')}"]
    for parent in details.get("ancestors", []):
        name = parent.get("name") or "a file not in the catalog"
        lines.append(f"derived from: {name} (SHA-256 {parent.get('sha256', '')[:10]}..., by {parent.get('relation', '')})")
    for copy in details.get("files", []):
        lines.append(f"file: {copy.get('path')}")
    return lines, details
