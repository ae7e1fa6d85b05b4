"""Reference generations that prove a model works: the community's Asuka test and a quick smoke test.

Each run generates with fixed settings, judges the image (``verdicts``), and records the verdict,
timing and image path on the model's catalog entry. The Asuka test uses the settings of the
October 2022 NovelAI-leak check and reproduces A1111 v1.10.1 set up for an image of that era
(``ASUKA_A1111_SETTINGS``): GPU noise (NV on machines without CUDA), ENSD 31337, clip skip 2 and
alphas_cumprod rounded to fp16 (what v1.10.1's back-compat turns on for an image made before v1.7.0).
Every result records that version and those settings.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from sdhub.config import Home
from sdhub.errors import BadInputError, Interrupted, SdhubError, VerificationError
from sdhub.generate.generate import GenerationResult, ResolvedFile, load_model_cached, resolve_file
from sdhub.generate.model_defaults import generate_with_defaults
from sdhub.generate.pipeline import GenerationParams
from sdhub.generate.samplers import A1111_VERSION
from sdhub.generate.verdicts import Verdict, judge_image
from sdhub.progress import NULL_PROGRESS, Progress, interrupted, reporting_stop

ASUKA_PARAMS = GenerationParams(
    prompt="masterpiece, best quality, masterpiece, asuka langley sitting cross legged on a chair",
    negative_prompt=("lowres, bad anatomy, bad hands, text, error, missing fingers, extra digit, fewer digits, "
                     "cropped, worst quality, low quality, normal quality, jpeg artifacts,signature, watermark, "
                     "username, blurry, artist name"),
    steps=28, sampler="Euler", cfg_scale=12.0, seed=2870305590, width=512, height=512, clip_skip=2,
    eta_noise_seed_delta=31337, downcast_alphas_cumprod=True,
)
#: The A1111 settings (infotext names) beyond v1.10.1's defaults that the Asuka test turns on.
ASUKA_A1111_SETTINGS = {"Downcast alphas_cumprod": True, "ENSD": 31337, "Clip skip": 2, "RNG": "GPU"}
#: A1111's legacy (8-hex) hash of NovelAI's animefull-final-pruned, the model the Asuka test is for.
ASUKA_MODEL_HASH = "925997e9"
ASUKA_MODEL_NAME = "NovelAI's animefull-final-pruned"
#: The settings that define the Asuka test: a model's own defaults never replace them (its preferred VAE does
#: apply, as the test leaves the VAE to the user).
ASUKA_FIXED_FIELDS = ("negative_prompt", "sampler", "schedule_type", "cfg_scale", "clip_skip")

SMOKE_PARAMS = GenerationParams(
    prompt="a photo of a red apple on a wooden table, soft daylight, high detail",
    negative_prompt="lowres, blurry", steps=12, sampler="DPM++ 2M Karras", cfg_scale=7.0, seed=1,
)


@dataclass
class ReferenceTestResult:
    """One reference run: the verdict and reasons, the image, the settings and how long it took."""

    kind: str
    model: dict[str, Any]
    verdict: str
    reasons: list[str]
    image_path: str | None
    seconds: float
    params: dict[str, Any] = field(default_factory=dict)
    similarity: dict[str, Any] | None = None
    stats: dict[str, Any] | None = None
    vae_fp32_retry: bool = False
    notes: list[str] = field(default_factory=list)
    recorded: bool = False
    a1111_version: str = A1111_VERSION  # the A1111 whose behaviour the run reproduces
    a1111_settings: dict[str, Any] = field(default_factory=dict)  # its settings beyond that version's defaults
    fixes: list[dict[str, Any]] = field(default_factory=list)  # what fixes a failed verdict (option, why)
    retried_with: str | None = None  # the fix this run was redrawn with (--retry-fixes)
    first_try: dict[str, Any] | None = None  # the verdict, reasons and image before that fix

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind, "model": self.model, "verdict": self.verdict, "reasons": self.reasons,
            "image_path": self.image_path, "seconds": round(self.seconds, 3), "params": self.params,
            "similarity": self.similarity, "stats": self.stats, "vae_fp32_retry": self.vae_fp32_retry,
            "notes": self.notes, "recorded": self.recorded, "a1111_version": self.a1111_version,
            "a1111_settings": self.a1111_settings, "fixes": self.fixes, "retried_with": self.retried_with,
            "first_try": self.first_try,
        }


def _result(kind: str, generated: GenerationResult, verdict: Verdict, seconds: float,
            notes: list[str]) -> ReferenceTestResult:
    return ReferenceTestResult(
        kind=kind, model=generated.model.to_dict(), verdict=verdict.verdict, reasons=verdict.reasons,
        image_path=str(generated.images[0]), seconds=seconds, params=generated.params.to_dict(),
        similarity=verdict.similarity.to_dict() if verdict.similarity else None,
        stats=verdict.stats.to_dict() if verdict.stats else None, vae_fp32_retry=generated.vae_fp32_retry,
        notes=notes + generated.notes,
    )


def _record(home: Home, model_path: str, result: ReferenceTestResult) -> None:
    """Store the result on the model's catalog entry (the file is cataloged if it was not)."""
    from sdhub.catalog import Catalog

    try:
        with Catalog(home) as catalog:
            add = catalog.add_folder if Path(model_path).is_dir() else catalog.add_file  # a pipeline folder
            asset = add(model_path)
            catalog.record_test(asset.sha256, {
                "kind": result.kind, "verdict": result.verdict, "image_path": result.image_path,
                "seconds": result.seconds, "reasons": result.reasons, "similarity": result.similarity,
                "vae_fp32_retry": result.vae_fp32_retry, "params": result.params,
                "a1111_version": result.a1111_version, "a1111_settings": result.a1111_settings,
            })
        result.recorded = True
    except SdhubError as error:
        result.notes.append(f"not recorded in the catalog: {error}")


class WrongModelError(VerificationError):
    """The Asuka test was asked to draw with a model other than the one it is for."""

    def __init__(self, message: str, *, actual_hash: str) -> None:
        super().__init__(message)
        self.actual_hash = actual_hash


def check_asuka_model(model: ResolvedFile) -> str | None:
    """Refuse (``WrongModelError``) a model whose A1111 hash is not the Asuka test's; a note when it has none."""
    actual = model.legacy_hash
    if not actual:
        return (f"{model.name} has no A1111 model hash (a pipeline folder): it cannot be checked against "
                f"{ASUKA_MODEL_NAME} ({ASUKA_MODEL_HASH}) before drawing")
    if not actual.lower().startswith(ASUKA_MODEL_HASH):
        raise WrongModelError(
            f"{model.path.name} has model hash {actual}, not {ASUKA_MODEL_HASH}: the Asuka test is for "
            f"{ASUKA_MODEL_NAME}, and any other model draws another picture (verdict 'wrong-model'); "
            "nothing was drawn. Add --force to draw it anyway", actual_hash=actual)
    return None


def run_asuka(home: Home, model_ref: str, *, vae_ref: str | None = None, reference: str | Path | None = None,
              device: str | None = None, dtype: str | None = None, vae_dtype: str | None = None,
              progress: Progress = NULL_PROGRESS, overrides: dict[str, Any] | None = None,
              record: bool = True, force: bool = False, vae_fallback: bool = True,
              retry_fixes: bool = False) -> ReferenceTestResult:
    """The Asuka test: canonical settings, a verdict, the image, and the result stored in the catalog.

    The model's hash is checked before anything is drawn: a model other than the test's is refused
    with ``WrongModelError`` unless ``force``. On a CPU the first step is timed and the time the
    whole run will take is reported through ``progress.message``. ``overrides`` replaces canonical
    settings (steps, size) for quick checks; the result says so. The model's preferred VAE (``sdhub set``) is
    used unless ``vae_ref``; its other defaults never replace the test's settings. A failed verdict names its
    fix (``fixes``); ``retry_fixes`` draws again with it. ``vae_fallback``: redo a NaN VAE decode in fp32.
    """
    params = replace(ASUKA_PARAMS, **(overrides or {}))
    notes = []
    if overrides:
        notes.append("non-canonical settings: " + ", ".join(f"{key}={value}" for key, value in overrides.items()))
    reference_image = _open_reference(reference) if reference is not None else None
    started = time.perf_counter()
    model = resolve_file(home, model_ref, "checkpoint")
    try:
        unchecked = check_asuka_model(model)
    except WrongModelError:
        if not force:
            raise
        progress.message(f"{model.path.name} is not {ASUKA_MODEL_NAME} ({model.legacy_hash} is not "
                         f"{ASUKA_MODEL_HASH}): drawing anyway (--force); the verdict will be 'wrong-model'")
    else:
        if unchecked:
            notes.append(unchecked)
    from sdhub.generate.loading import select_device

    if select_device(device).type == "cpu":
        progress.message(f"the Asuka test draws {params.steps} steps at {params.width}x{params.height} on the CPU, "
                         "which takes minutes; the first step is timed for an estimate")
        progress = StepTimeEstimate(progress)

    def draw(vae: str | None, precision: str | None, suffix: str = "") -> GenerationResult:
        with reporting_stop(lambda: "no verdict recorded"):
            return generate_with_defaults(home, model, params, progress, explicit=ASUKA_FIXED_FIELDS, vae_ref=vae,
                                          out_dir=home.outputs_dir / "tests", device=device, dtype=dtype,
                                          vae_dtype=precision, auto_fp32_vae=vae_fallback,
                                          file_prefix=f"asuka-{model.path.stem}{suffix}")

    def judge(generated: GenerationResult) -> Verdict:
        from PIL import Image

        with Image.open(generated.images[0]) as image:
            return judge_image(image, nan_in_output=generated.nan_in_output, vae_fp32_retry=generated.vae_fp32_retry,
                               expected_hash=ASUKA_MODEL_HASH, actual_hash=generated.model.legacy_hash,
                               reference=reference_image)

    result = _judged_run(home, "asuka", draw, judge, vae_ref, vae_dtype, started, notes, retry_fixes)
    result.a1111_settings = dict(ASUKA_A1111_SETTINGS)
    if record:
        _record(home, result.model["path"], result)
    return result


def _judged_run(home: Home, kind: str, draw: Any, judge: Any, vae_ref: str | None, vae_dtype: str | None,
                started: float, notes: list[str], retry_fixes: bool) -> ReferenceTestResult:
    """Draw, judge, name the fixes of a failed verdict, and with ``retry_fixes`` draw again with the first."""
    from sdhub.generate.verdict_fixes import suggest_fixes, with_fix_hint

    generated = draw(vae_ref, vae_dtype)
    verdict = judge(generated)
    fixes = suggest_fixes(home, verdict, generated, vae_dtype)
    verdict.reasons = with_fix_hint(verdict.reasons, fixes)
    run_notes = list(notes)
    if generated.device == "cpu" and generated.dtype == "fp32" and kind == "asuka":
        run_notes.append("ran in fp32 on the CPU; A1111 of 2022 ran fp16 on a GPU, so expect small pixel differences")
    result = _result(kind, generated, verdict, time.perf_counter() - started, run_notes)
    result.fixes = [fix.to_dict() for fix in fixes]
    if not (retry_fixes and fixes):
        return result
    fix = fixes[0]
    # its own file name: the first try's image stays, for comparison
    retried = draw(fix.settings.get("vae_ref", vae_ref), fix.settings.get("vae_dtype", vae_dtype), "-fixed")
    second = judge(retried)
    later = suggest_fixes(home, second, retried, fix.settings.get("vae_dtype", vae_dtype))
    second.reasons = with_fix_hint(second.reasons, later)
    final = _result(kind, retried, second, time.perf_counter() - started,
                    run_notes + [f"drawn again with {fix.option} (--retry-fixes): the first try was {verdict.verdict}"])
    final.fixes = [f.to_dict() for f in later]
    final.retried_with = fix.option
    final.first_try = {"verdict": result.verdict, "reasons": result.reasons, "image_path": result.image_path}
    return final


def format_duration(seconds: float) -> str:
    """Seconds as a short duration a user reads at a glance: '45 s', '8 min 30 s', '1 h 5 min'."""
    whole = max(0, round(seconds))
    if whole < 60:
        return f"{whole} s"
    if whole < 3600:
        return f"{whole // 60} min {whole % 60} s"
    return f"{whole // 3600} h {whole % 3600 // 60} min"


class StepTimeEstimate:
    """Passes progress through; when the first sampling step is done, says how long all the steps take."""

    def __init__(self, progress: Progress) -> None:
        self._progress = progress

    def task(self, description: str, total: float | None = None, unit: str = "") -> Any:
        task = self._progress.task(description, total, unit)
        if unit != "steps" or not total:
            return task
        return _TimedSteps(task, total, self._progress.message)

    def message(self, text: str) -> None:
        self._progress.message(text)

    def __getattr__(self, name: str) -> Any:  # whatever else the wrapped progress offers (cancellation)
        return getattr(self._progress, name)


class _TimedSteps:
    def __init__(self, task: Any, total: float, say: Any) -> None:
        self._task = task
        self._total = total
        self._say = say
        self._started = time.perf_counter()
        self._done = 0.0

    def advance(self, amount: float = 1) -> None:
        self._task.advance(amount)
        if self._done == 0 and amount > 0:
            per_step = (time.perf_counter() - self._started) / amount
            self._say(f"first step took {per_step:.1f} s: about {format_duration(per_step * self._total)} "
                      f"for all {self._total:g} steps, then the VAE decode")
        self._done += amount

    def update(self, *, completed: float | None = None, total: float | None = None,
               description: str | None = None) -> None:
        self._task.update(completed=completed, total=total, description=description)

    def finish(self) -> None:
        self._task.finish()

    def __enter__(self) -> "_TimedSteps":
        return self

    def __exit__(self, *exc: object) -> None:
        self.finish()


def _open_reference(path: str | Path) -> Any:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            return image.convert("RGB")
    except (OSError, UnidentifiedImageError) as error:
        raise BadInputError(f"cannot read the reference image {path}: {error}") from None


def _smoke_draw(home: Home, model: ResolvedFile, params: GenerationParams, progress: Progress, device: str | None,
                dtype: str | None, vae_fallback: bool) -> Any:
    def draw(vae: str | None, precision: str | None, suffix: str = "") -> GenerationResult:
        return generate_with_defaults(home, model, params, progress, vae_ref=vae, out_dir=home.outputs_dir / "tests",
                                      device=device, dtype=dtype, vae_dtype=precision, auto_fp32_vae=vae_fallback,
                                      file_prefix=f"smoke-{model.path.stem}{suffix}")

    return draw


def _smoke_judge(generated: GenerationResult) -> Verdict:
    from PIL import Image

    with Image.open(generated.images[0]) as image:
        return judge_image(image, nan_in_output=generated.nan_in_output, vae_fp32_retry=generated.vae_fp32_retry)


def smoke_targets(home: Home, refs: list[str], all_models: bool) -> list[str]:
    """The checkpoints to smoke-test: the given references, or every checkpoint in the catalog."""
    if refs:
        return refs
    if not all_models:
        raise BadInputError("name at least one model, or pass --all to test every checkpoint in the catalog")
    from sdhub.catalog import Catalog

    if not home.database_path.is_file():
        raise BadInputError(f"the home {home.root} has no catalog yet; run `sdhub scan` first")
    with Catalog(home) as catalog:
        assets = [asset for asset in catalog.list_assets(kind="checkpoint") if asset.present_files]
    return [asset.present_files[0].path for asset in assets]


def run_smoke(home: Home, refs: list[str], *, all_models: bool = False, steps: int | None = None,
              size: int | None = None, device: str | None = None, dtype: str | None = None,
              progress: Progress = NULL_PROGRESS, record: bool = True, vae_dtype: str | None = None,
              vae_fallback: bool = True, retry_fixes: bool = False) -> list[ReferenceTestResult]:
    """A quick generation per model with a verdict each; one broken model does not stop the others.

    Each model draws with its own defaults (``sdhub set``: VAE, clip skip, sampler, CFG, negative prompt).
    A failed verdict names its fix (``fixes``); ``retry_fixes`` draws that model again with it."""
    results = []
    targets = smoke_targets(home, refs, all_models)
    for ref in targets:
        started = time.perf_counter()
        try:
            model = resolve_file(home, ref, "checkpoint")
            loaded, _ = load_model_cached(model, None, device, dtype, progress=progress)
            native = int(loaded.unet.config.sample_size) * 8
            side = size or native
            params = replace(SMOKE_PARAMS, width=side, height=side, steps=steps or SMOKE_PARAMS.steps)
            result = _judged_run(home, "smoke", _smoke_draw(home, model, params, progress, device, dtype,
                                                            vae_fallback), _smoke_judge, None, vae_dtype, started,
                                 [], retry_fixes)
            if record:
                _record(home, str(model.path), result)
        except (KeyboardInterrupt, Interrupted) as stop:
            recorded = sum(1 for r in results if r.recorded)
            raise interrupted(stop, f"{len(results)} of {len(targets)} models tested before it, "
                                    f"{recorded} verdicts recorded" if results else "no verdict recorded") from None
        except SdhubError as error:
            result = ReferenceTestResult("smoke", {"ref": ref}, "error", [str(error)], None,
                                         time.perf_counter() - started)
        results.append(result)
    return results
