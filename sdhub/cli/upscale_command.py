"""``sdhub upscale``: A1111's "SD upscale" script (model upscale, then tiled img2img)."""

from __future__ import annotations

from typing import Optional

import typer

from sdhub.cli.app import app
from sdhub.cli.progress import RichProgress
from sdhub.cli.render import info, print_json
from sdhub.cli.state import STATE


@app.command("upscale")
def upscale_command(
    image: str = typer.Argument(..., help="The image to enlarge."),
    model: str = typer.Option(..., "--model", "-m", help="Checkpoint for the tiles' img2img: a path, name or hash."),
    upscaler: str = typer.Option("None", "--upscaler", help="Image upscaler first: None, Lanczos, Nearest or a file "
                                                           "in the home's upscaler folder (name, path or hash)."),
    scale: float = typer.Option(2.0, "--scale", help="Scale factor."),
    prompt: str = typer.Option("", "--prompt", "-p", help="Prompt for every tile."),
    negative: str = typer.Option("", "--negative", "-n", help="Negative prompt."),
    denoising: float = typer.Option(0.75, "--denoising-strength", help="img2img denoising strength of each tile."),
    overlap: int = typer.Option(64, "--overlap", help="Tile overlap in pixels."),
    tile_size: Optional[int] = typer.Option(None, "--tile-size", help="Tile size (default: the model's native size)."),
    steps: int = typer.Option(20, "--steps", help="Sampling steps."),
    sampler: str = typer.Option("DPM++ 2M", "--sampler", help="A1111 sampler."),
    schedule: str = typer.Option("Automatic", "--schedule", help="A1111 schedule type."),
    cfg: float = typer.Option(7.0, "--cfg", help="CFG scale."),
    seed: int = typer.Option(-1, "--seed", help="Seed of the first tile (tile i gets seed + i); -1: random."),
    rng: Optional[str] = typer.Option(None, "--rng", help="Noise source: gpu, cpu or nv."),
    vae: Optional[str] = typer.Option(None, "--vae", help="Replace the baked-in VAE."),
    out: Optional[str] = typer.Option(None, "--out", "-o", help="Output folder (default: the home's outputs/)."),
    device: Optional[str] = typer.Option(None, "--device", help="cpu, cuda, cuda:N or mps."),
    dtype: Optional[str] = typer.Option(None, "--dtype", help="fp16, bf16 or fp32."),
    as_json: bool = typer.Option(False, "--json", help="Print the image and parameters as JSON."),
) -> None:
    """Enlarge an image as A1111's SD upscale script does: upscale, then img2img overlapping tiles.

    Example: sdhub upscale photo.png --model v1-5-pruned-emaonly --upscaler 4x-UltraSharp --scale 2 --denoising-strength 0.3
    """
    from sdhub.generate.pipeline import GenerationParams
    from sdhub.generate.sd_upscale import sd_upscale

    home = STATE.open_home()
    params = GenerationParams(prompt=prompt, negative_prompt=negative, steps=steps, sampler=sampler,
                              schedule_type=schedule, cfg_scale=cfg, seed=seed, rng=rng)
    with RichProgress() as progress:
        result = sd_upscale(home, image, model, params, scale=scale, upscaler=upscaler, overlap=overlap,
                            denoising_strength=denoising, tile_size=tile_size, vae_ref=vae, out_dir=out,
                            device=device, dtype=dtype, progress=progress)
    for note in result.notes:
        info(f"note: {note}")
    if as_json:
        print_json(result)
        return
    info(f"{result.model.name}: tiles of {result.params.width}x{result.params.height}, seed {result.params.seed}")
    for path in result.images:
        typer.echo(str(path))
