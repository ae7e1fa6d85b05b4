"""``sdhub generate``, the ``sdhub test`` group (asuka, smoke, doctor) and ``sdhub smoke``/``sdhub doctor``."""

from __future__ import annotations

from typing import Optional

import typer

from sdhub.cli.app import app
from sdhub.cli.progress import RichProgress
from sdhub.cli.render import format_option, info, output_format, print_json, print_table
from sdhub.cli.state import STATE
from sdhub.errors import UsageError

test_app = typer.Typer(help="Prove models work: the Asuka reference test, smoke tests, the environment doctor.",
                       no_args_is_help=True)
app.add_typer(test_app, name="test")

_RNG_HELP = "Noise source: gpu (CUDA), cpu, or nv (CUDA's numbers on any machine). Default: A1111's GPU noise."
# Spelled out here so `--help` does not import torch; tests/generate/test_sampler_cli.py keeps them in step.
SAMPLER_NAMES = ("DPM++ 2M, DPM++ SDE, DPM++ 2M SDE, DPM++ 2M SDE Heun, DPM++ 2S a, DPM++ 3M SDE, Euler a, Euler, "
                 "LMS, Heun, DPM2, DPM2 a, DPM fast, DPM adaptive, Restart, LCM, DDIM, PLMS, UniPC")
SCHEDULE_NAMES = ("Automatic, Uniform, Karras, Exponential, Polyexponential, SGM Uniform, KL Optimal, "
                  "Align Your Steps, Simple, Normal, DDIM, Beta")
_SAMPLER_HELP = (f"A1111 sampler: {SAMPLER_NAMES}. Old combined names such as 'DPM++ 2M Karras' "
                 "set the schedule too.")
_SCHEDULE_HELP = (f"A1111 schedule type: {SCHEDULE_NAMES}. Automatic is the sampler's own default "
                  "(Karras for DPM++ 2M, DPM++ SDE, DPM2; Exponential for the 2M/3M SDE samplers; else Uniform).")


@app.command("generate")
def generate_command(
    ctx: typer.Context,
    prompt: Optional[str] = typer.Argument(None, help="The prompt (A1111 syntax: (emphasis:1.2), \\[from:to:5], <lora:name:0.8>)."),
    model: Optional[str] = typer.Option(None, "--model", "-m", help="Checkpoint: a path, a catalog name or a hash."),
    negative: str = typer.Option("", "--negative", "-n", help="Negative prompt."),
    steps: int = typer.Option(20, "--steps", help="Sampling steps."),
    sampler: str = typer.Option("DPM++ 2M", "--sampler", help=_SAMPLER_HELP),
    schedule: str = typer.Option("Automatic", "--schedule", help=_SCHEDULE_HELP),
    eta: Optional[float] = typer.Option(None, "--eta", help="Eta of ancestral/SDE samplers (A1111 default 1) "
                                                            "or of DDIM (default 0)."),
    s_noise: Optional[float] = typer.Option(None, "--s-noise", help="Sigma noise (A1111 default 1.0)."),
    cfg: float = typer.Option(7.0, "--cfg", help="CFG scale."),
    seed: int = typer.Option(-1, "--seed", help="Seed; -1 picks a random one (reported)."),
    width: int = typer.Option(512, "--width", help="Width in pixels (multiple of 8)."),
    height: int = typer.Option(512, "--height", help="Height in pixels (multiple of 8)."),
    clip_skip: int = typer.Option(1, "--clip-skip", help="A1111 clip skip (2 = penultimate CLIP layer)."),
    vae: Optional[str] = typer.Option(None, "--vae", help="Replace the baked-in VAE: a path, catalog name or hash."),
    batch: int = typer.Option(1, "--batch", help="Images in one batch (seeds seed, seed+1, ...)."),
    batch_count: int = typer.Option(1, "--batch-count", help="Batches one after another, as A1111's batch count "
                                    "(seeds continue: batch n starts at seed + n*batch)."),
    forever: bool = typer.Option(False, "--forever", help="Batch after batch until Ctrl-C; every finished image "
                                 "is kept (exit 130)."),
    last: bool = typer.Option(False, "--last", help="Draw the last generation again (its settings, seed included); "
                              "options given override those fields."),
    out: Optional[str] = typer.Option(None, "--out", "-o", help="Output folder (default: the home's outputs/)."),
    rng: Optional[str] = typer.Option(None, "--rng", help=_RNG_HELP),
    ensd: int = typer.Option(0, "--ensd", help="Eta noise seed delta (31337 for NovelAI-era images)."),
    subseed: Optional[int] = typer.Option(None, "--subseed", help="Variation seed."),
    subseed_strength: float = typer.Option(0.0, "--subseed-strength", help="Variation strength 0..1."),
    from_png: Optional[str] = typer.Option(None, "--from-png", help="Rerun the A1111 infotext of this PNG."),
    ignore_field: list[str] = typer.Option([], "--ignore-field", help="With --from-png: rerun without this "
                                           "infotext field instead of refusing it (repeatable; the image may differ)."),
    device: Optional[str] = typer.Option(None, "--device", help="cpu, cuda, cuda:N or mps (default: best available)."),
    dtype: Optional[str] = typer.Option(None, "--dtype", help="fp16, bf16 or fp32 (default: fp16 on GPUs, fp32 on CPU)."),
    vae_dtype: Optional[str] = typer.Option(None, "--vae-dtype", help="VAE precision (fp32 = A1111's --no-half-vae)."),
    init_image: Optional[str] = typer.Option(None, "--init-image", help="img2img: start from this image "
                                             "(also with --from-png for an img2img infotext)."),
    denoising: Optional[float] = typer.Option(None, "--denoising-strength", help="img2img (default 0.75) or "
                                              "hires fix (default 0.7) denoising strength."),
    resize_mode: str = typer.Option("Just resize", "--resize-mode", help="img2img: Just resize, Crop and resize, "
                                    "Resize and fill, or Just resize (latent upscale)."),
    mask: Optional[str] = typer.Option(None, "--mask", help="Inpaint: redraw the white area of this mask over "
                                       "--init-image (also with --from-png for an inpaint infotext)."),
    mask_blur: int = typer.Option(4, "--mask-blur", help="Inpaint: mask blur in pixels (A1111's default 4)."),
    mask_invert: bool = typer.Option(False, "--mask-invert", help="Inpaint: redraw the black area instead "
                                     "(A1111's 'Inpaint not masked')."),
    masked_content: str = typer.Option("original", "--masked-content", help="Inpaint: what the masked area starts "
                                       "from: fill, original, latent noise or latent nothing."),
    inpaint_area: str = typer.Option("Whole picture", "--inpaint-area", help="Inpaint: 'Whole picture', or "
                                     "'Only masked' (draw the masked area at the asked size, paste it back)."),
    masked_padding: int = typer.Option(32, "--masked-padding", help="Inpaint, Only masked: padding in pixels."),
    mask_weight: float = typer.Option(1.0, "--mask-weight", help="Inpainting models: A1111's conditional mask "
                                      "weight (1 hides the masked area from the model)."),
    hires: bool = typer.Option(False, "--hires", help="A1111's hires fix: a second pass at a larger size "
                               "(also on with any --hires-* option)."),
    hires_upscaler: Optional[str] = typer.Option(None, "--hires-upscaler", help="Latent (default), Latent "
                                                 "(antialiased), Latent (bicubic), Latent (bicubic antialiased), "
                                                 "Latent (nearest), Latent (nearest-exact), None, Lanczos, Nearest "
                                                 "or the name of a file in the home's upscaler folder."),
    hires_scale: Optional[float] = typer.Option(None, "--hires-scale", help="Hires upscale factor (default 2)."),
    hires_resize: Optional[str] = typer.Option(None, "--hires-resize", help="Hires resize to WxH instead "
                                               "(0 for a side keeps the aspect)."),
    hires_steps: Optional[int] = typer.Option(None, "--hires-steps", help="Second-pass steps (0: the first's)."),
    hires_sampler: Optional[str] = typer.Option(None, "--hires-sampler", help="Second-pass sampler."),
    hires_schedule: Optional[str] = typer.Option(None, "--hires-schedule", help="Second-pass schedule type."),
    hires_prompt: Optional[str] = typer.Option(None, "--hires-prompt", help="Second-pass prompt."),
    hires_negative: Optional[str] = typer.Option(None, "--hires-negative", help="Second-pass negative prompt."),
    hires_cfg: Optional[float] = typer.Option(None, "--hires-cfg", help="Second-pass CFG scale (Forge's)."),
    as_json: bool = typer.Option(False, "--json", help="Print the images and parameters as JSON."),
) -> None:
    """Generate images with A1111's prompt, seed and sampler semantics; PNGs carry A1111 infotext.

    Example: sdhub generate "a cat, (masterpiece:1.2)" --model v1-5-pruned-emaonly --seed 42 --steps 20
    Hires fix: --hires --hires-upscaler Latent --hires-scale 2; img2img: --init-image in.png --denoising-strength 0.6
    """
    from sdhub.generate.generate import rerun_png

    home = STATE.open_home()
    if from_png and (last or forever or batch_count != 1):
        raise UsageError("--from-png reruns one image; leave out --last, --forever and --batch-count")
    with RichProgress() as progress:
        if from_png:
            result = rerun_png(home, from_png, progress, model_ref=model, out_dir=out, device=device, dtype=dtype,
                               rng=rng, ignore_fields=ignore_field, init_image=init_image,
                               resize_mode=resize_mode, mask=mask)
        else:
            from sdhub.cli.generate_runs import run_generation

            result = run_generation(home, dict(ctx.params), _given(ctx), progress, _modes_of)
    for note in result.notes:
        info(f"note: {note}")
    if as_json:
        print_json(result)
        return
    rate = result.params.steps / result.sampling_seconds if result.sampling_seconds else 0.0
    info(f"{result.model.name}: {result.params.steps} steps at {rate:.2f} it/s on {result.device} ({result.dtype}), "
         f"seed {result.params.seed}")
    for path in result.images:
        typer.echo(str(path))


def _given(ctx: typer.Context) -> set[str]:
    """The options given on the command line (not left at their defaults)."""
    # by name: typer may bring its own copy of click, whose ParameterSource is another class
    sources = {name: ctx.get_parameter_source(name) for name in ctx.params}
    return {name for name, source in sources.items()
            if source is not None and source.name not in ("DEFAULT", "DEFAULT_MAP")}


def _modes_of(options: dict) -> dict:
    """``generate``'s mode settings (img2img, hires fix) from ``generate``'s options."""
    modes = _generation_modes(options["init_image"], options["denoising"], options["resize_mode"], options["hires"],
                              options["hires_upscaler"], options["hires_scale"], options["hires_resize"],
                              options["hires_steps"], options["hires_sampler"], options["hires_schedule"],
                              options["hires_prompt"], options["hires_negative"], options["hires_cfg"])
    return _with_mask(modes, options)


def _with_mask(modes: dict, options: dict) -> dict:
    """``modes`` with the inpaint options set on its img2img settings when a ``--mask`` is given."""
    if options["mask"] is None:
        return modes
    if "img2img" not in modes:
        raise UsageError("--mask needs --init-image: inpaint redraws part of an image")
    settings = modes["img2img"]
    settings.mask = options["mask"]
    settings.mask_blur, settings.mask_invert = options["mask_blur"], options["mask_invert"]
    settings.masked_content, settings.inpaint_area = options["masked_content"], options["inpaint_area"]
    settings.masked_padding, settings.mask_weight = options["masked_padding"], options["mask_weight"]
    return modes


def _generation_modes(init_image: Optional[str], denoising: Optional[float], resize_mode: str, hires: bool,
                      upscaler: Optional[str], scale: Optional[float], resize: Optional[str], steps: Optional[int],
                      sampler: Optional[str], schedule: Optional[str], prompt: Optional[str],
                      negative: Optional[str], cfg: Optional[float]) -> dict:
    """``generate``'s ``img2img`` or ``hires`` settings from the options."""
    from sdhub.generate.hires import DEFAULT_STRENGTH, HiresParams
    from sdhub.generate.img2img import DEFAULT_STRENGTH as IMG2IMG_STRENGTH, Img2ImgParams

    hires = hires or any(value is not None for value in (upscaler, scale, resize, steps, sampler, schedule, prompt,
                                                         negative, cfg))
    if init_image is not None:
        if hires:
            raise UsageError("the hires fix is for txt2img; leave out --hires* options with --init-image")
        return {"img2img": Img2ImgParams(init_image, IMG2IMG_STRENGTH if denoising is None else denoising,
                                         resize_mode)}
    if not hires:
        if denoising is not None:
            raise UsageError("--denoising-strength needs --init-image or the hires fix (--hires)")
        return {}
    width = height = 0
    if resize:
        try:
            width, height = (int(side) for side in resize.lower().split("x"))
        except ValueError:
            raise UsageError(f"--hires-resize takes WxH (such as 1024x0), not {resize!r}") from None
    settings = HiresParams(steps=steps or 0, sampler=sampler, schedule_type=schedule, prompt=prompt or "",
                           negative_prompt=negative or "", cfg_scale=cfg, resize_width=width, resize_height=height,
                           denoising_strength=DEFAULT_STRENGTH if denoising is None else denoising)
    if upscaler is not None:
        settings.upscaler = upscaler
    if scale is not None:
        settings.scale = scale
    return {"hires": settings}


_VAE_DTYPE_HELP = "VAE precision: fp32 is A1111's --no-half-vae (the fix for black images)."
_FALLBACK_HELP = ("Redo a VAE decode that gave NaNs in fp32, as A1111 does (--no-vae-fallback keeps the black image, "
                  "as A1111 with that setting off).")
_RETRY_HELP = "When the verdict names a fix (--vae-dtype fp32, --vae NAME), draw again with it and judge that."


def _asuka(model: str, vae: Optional[str], reference: Optional[str], device: Optional[str], dtype: Optional[str],
           as_json: bool, force: bool, vae_dtype: Optional[str] = None, vae_fallback: bool = True,
           retry_fixes: bool = False) -> None:
    from sdhub.generate.reference_tests import run_asuka

    home = STATE.open_home()
    with RichProgress() as progress:
        result = run_asuka(home, model, vae_ref=vae, reference=reference, device=device, dtype=dtype,
                           progress=progress, force=force, vae_dtype=vae_dtype, vae_fallback=vae_fallback,
                           retry_fixes=retry_fixes)
    if as_json:
        print_json(result)
    else:
        _print_result(result)
    if result.verdict != "pass":
        raise typer.Exit(1)


def _print_result(result) -> None:
    name = result.model.get("name") or result.model.get("ref")
    typer.echo(f"{name}: {result.verdict}")
    for reason in result.reasons:
        typer.echo(f"  - {reason}")
    if result.similarity:
        typer.echo(f"  similarity: SSIM {result.similarity['ssim']} (pass at >= {result.similarity['threshold']}), "
                   f"PSNR {result.similarity['psnr']} dB")
    if result.image_path:
        typer.echo(f"  image: {result.image_path} ({result.seconds:.1f} s)")
    for fix in result.fixes:
        typer.echo(f"  fix: {fix['option']} ({fix['why']}); --retry-fixes draws again with it")
    if result.first_try:
        typer.echo(f"  first try: {result.first_try['verdict']}, drawn again with {result.retried_with}")
    for note in result.notes:
        info(f"note: {note}")


@test_app.command("asuka")
def asuka_command(
    model: str = typer.Option(..., "--model", "-m", help="The checkpoint: a path, catalog name or hash."),
    vae: Optional[str] = typer.Option(None, "--vae", help="VAE to use (NAI's animevae for the real test)."),
    reference: Optional[str] = typer.Option(None, "--reference", help="Reference PNG to compare with (SSIM)."),
    device: Optional[str] = typer.Option(None, "--device", help="cpu, cuda, cuda:N or mps."),
    dtype: Optional[str] = typer.Option(None, "--dtype", help="fp16, bf16 or fp32."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
    force: bool = typer.Option(False, "--force", help="Draw even when the model is not the one the test is for "
                                                      "(its hash is checked first; the verdict is then wrong-model)."),
    vae_dtype: Optional[str] = typer.Option(None, "--vae-dtype", help=_VAE_DTYPE_HELP),
    vae_fallback: bool = typer.Option(True, "--vae-fallback/--no-vae-fallback", help=_FALLBACK_HELP),
    retry_fixes: bool = typer.Option(False, "--retry-fixes", help=_RETRY_HELP),
) -> None:
    """Run the Asuka test (NAI-era settings, ENSD 31337) and judge the image; exit 1 unless it passes.

    The model's hash is checked before drawing: another model is refused (exit 1) unless --force.
    On a CPU the run takes minutes; the time it will take is said after the first step.

    Example: sdhub test asuka --model animefull-final-pruned --vae animevae --reference naio.png
    """
    _asuka(model, vae, reference, device, dtype, as_json, force, vae_dtype, vae_fallback, retry_fixes)


def smoke_command(
    refs: Optional[list[str]] = typer.Argument(None, help="Checkpoints: paths, catalog names or hashes."),
    all_models: bool = typer.Option(False, "--all", help="Every checkpoint in the catalog."),
    steps: Optional[int] = typer.Option(None, "--steps", help="Sampling steps (default 12)."),
    size: Optional[int] = typer.Option(None, "--size", help="Square size in pixels (default: the model's native)."),
    device: Optional[str] = typer.Option(None, "--device", help="cpu, cuda, cuda:N or mps."),
    dtype: Optional[str] = typer.Option(None, "--dtype", help="fp16, bf16 or fp32."),
    as_json: bool = typer.Option(False, "--json", help="Print the results as JSON."),
    table_format: Optional[str] = format_option(),
    vae_dtype: Optional[str] = typer.Option(None, "--vae-dtype", help=_VAE_DTYPE_HELP),
    vae_fallback: bool = typer.Option(True, "--vae-fallback/--no-vae-fallback", help=_FALLBACK_HELP),
    retry_fixes: bool = typer.Option(False, "--retry-fixes", help=_RETRY_HELP),
) -> None:
    """Generate one quick image per model and judge it; exit 1 if any model fails (also `sdhub test smoke`).

    Example: sdhub smoke v1-5-pruned-emaonly dreamshaper_8
    """
    from sdhub.generate.reference_tests import run_smoke

    fmt = output_format(table_format, as_json)
    home = STATE.open_home()
    with RichProgress() as progress:
        results = run_smoke(home, refs or [], all_models=all_models, steps=steps, size=size, device=device,
                            dtype=dtype, progress=progress, vae_dtype=vae_dtype, vae_fallback=vae_fallback,
                            retry_fixes=retry_fixes)
    if fmt == "json":
        print_json(results)
    else:
        print_table(((r.model.get("name") or r.model.get("ref"), r.verdict, f"{r.seconds:.1f}",
                      "; ".join(r.reasons) or "-", ", ".join(f["option"] for f in r.fixes) or
                      (f"{r.retried_with} (was {r.first_try['verdict']})" if r.first_try else "-"))
                     for r in results), ["model", "verdict", "seconds", "why", "fix"], fmt=fmt)
    if any(result.verdict != "pass" for result in results):
        raise typer.Exit(1)


def doctor_command(
    fetch_tokenizers: bool = typer.Option(False, "--fetch-tokenizers", help="Download the CLIP tokenizers first."),
    as_json: bool = typer.Option(False, "--json", help="Print the checks as JSON."),
    table_format: Optional[str] = format_option(),
) -> None:
    """Check that this machine and home can generate images, with a one-line fix for each problem.

    Example: sdhub doctor --fetch-tokenizers
    """
    from sdhub.generate.doctor import run_doctor

    fmt = output_format(table_format, as_json)
    home = STATE.open_home(must_exist=False)  # a missing home is one of the things doctor reports
    with RichProgress() as progress:
        report = run_doctor(home, fetch=fetch_tokenizers, progress=progress)
    if fmt == "json":
        print_json(report)
    else:
        for repo in report.fetched:
            info(f"fetched the tokenizer of {repo}")
        print_table(((check.status, check.name, check.detail, check.fix or "") for check in report.checks),
                    ["status", "check", "detail", "fix"], fmt=fmt)
    if not report.ok:
        raise typer.Exit(1)


# The same commands live at the top level and in the ``test`` group, where users look for them.
for _group in (app, test_app):
    _group.command("smoke")(smoke_command)
    _group.command("doctor")(doctor_command)
