"""``generate(home, model_ref, params)``: resolve the model, load it, sample, write PNGs with infotext.

The model and VAE are named by a path, a catalog name or a hash; ``<lora:name:w>`` tags in the
prompt are taken out and the LoRAs applied from the home's loras folder (in the negative prompt they
stay text, as in A1111); embeddings come from the
embeddings folder. Every image is written atomically to the outputs folder with A1111's
``parameters`` text so A1111's PNG Info and Civitai read it, and ``rerun_png`` makes it again.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Collection, Mapping

import torch

from sdhub.config import Home
from sdhub.errors import BadInputError, NotFoundError, UsageError
from sdhub.generate.extra_networks import LORA_NETWORKS, extract_extra_networks
from sdhub.generate.folder_loading import is_pipeline_folder
from sdhub.generate.infotext import Infotext, read_png_parameters, save_png_with_parameters
from sdhub.generate.loading import LoadedModel, dtype_name, load_checkpoint, select_device, select_dtype
from sdhub.generate.pipeline import GenerationParams, SampledImages
from sdhub.generate.rng import INFOTEXT_RNG
from sdhub.generate.samplers import A1111_VERSION, SamplerChoice, choice_from_infotext
from sdhub.generate.schedules import BETA_ALPHA, BETA_BETA
from sdhub.models.kinds import OTHER
from sdhub.progress import NULL_PROGRESS, Progress, check_cancelled, reporting_stop

LORA_SUFFIXES = (".safetensors", ".pt", ".ckpt", ".bin")
VAE_SIDECAR_SUFFIXES = (".vae.pt", ".vae.ckpt", ".vae.safetensors")


@dataclass
class ResolvedFile:
    """A model file named by the user, with its catalog identity when the home has a catalog."""

    path: Path
    sha256: str | None = None
    legacy_hash: str | None = None

    @property
    def name(self) -> str:
        return self.path.name if self.path.is_dir() else self.path.stem

    @property
    def autov2(self) -> str | None:
        return self.sha256[:10] if self.sha256 else None

    def to_dict(self) -> dict[str, Any]:
        return {"path": str(self.path), "name": self.name, "sha256": self.sha256, "autov2": self.autov2,
                "legacy_hash": self.legacy_hash}


@dataclass
class GenerationResult:
    """What ``sdhub generate --json`` prints: the images written and the parameters that made them."""

    images: list[Path]
    seeds: list[int]
    params: GenerationParams
    infotexts: list[str]
    model: ResolvedFile
    vae: ResolvedFile | None
    loras: list[dict[str, Any]]
    embeddings: list[str]
    device: str
    dtype: str
    rng: str
    load_seconds: float
    sampling_seconds: float
    decode_seconds: float
    vae_fp32_retry: bool = False
    nan_in_output: bool = False
    notes: list[str] = field(default_factory=list)
    hires: Any = None  # HiresParams of a hires-fix run
    img2img: Any = None  # Img2ImgParams of an img2img run
    sd_upscale: Any = None  # SdUpscaleParams of an SD upscale run

    @property
    def seconds_per_step(self) -> float:
        return self.sampling_seconds / max(1, self.params.steps)

    def to_dict(self) -> dict[str, Any]:
        return {
            "images": [str(path) for path in self.images], "seeds": self.seeds, "params": self.params.to_dict(),
            "infotext": self.infotexts[0] if self.infotexts else None, "model": self.model.to_dict(),
            "vae": self.vae.to_dict() if self.vae else None, "loras": self.loras, "embeddings": self.embeddings,
            "device": self.device, "dtype": self.dtype, "rng": self.rng,
            "timings": {"load": round(self.load_seconds, 3), "sampling": round(self.sampling_seconds, 3),
                        "decode": round(self.decode_seconds, 3),
                        "seconds_per_step": round(self.seconds_per_step, 4)},
            "vae_fp32_retry": self.vae_fp32_retry, "nan_in_output": self.nan_in_output, "notes": self.notes,
            "hires": self.hires.to_dict() if self.hires else None,
            "img2img": self.img2img.to_dict() if self.img2img else None,
            "sd_upscale": self.sd_upscale.to_dict() if self.sd_upscale else None,
        }


def resolve_file(home: Home, ref: str, kind: str) -> ResolvedFile:
    """A path or catalog reference (name, hash, id) as a file on disk with its hashes."""
    from sdhub.catalog import Catalog

    candidate = Path(ref).expanduser()
    if kind == "checkpoint" and is_pipeline_folder(candidate):
        folder = candidate.absolute()
        return _catalogued(home, folder) or ResolvedFile(folder)  # a folder has no A1111 hash of its own
    if candidate.is_file():
        candidate = candidate.absolute()
        known = _catalogued(home, candidate)
        if known is not None:
            return known
        from sdhub.ops.hashing import hash_file

        hashes = hash_file(candidate)
        return ResolvedFile(candidate, hashes.sha256, hashes.legacy_model_hash)
    if not home.database_path.is_file():
        raise NotFoundError(f"{ref!r} is not a file and the home {home.root} has no catalog; "
                            "give a path or run `sdhub scan`")
    with Catalog(home) as catalog:
        try:
            asset = catalog.find(ref)
        except NotFoundError:
            if candidate.is_dir():
                raise BadInputError(f"{candidate} is a folder but not a diffusers pipeline (no model_index.json); "
                                    f"give a {kind} file") from None
            raise
        if asset.kind not in (kind, OTHER):  # "other": its tensors did not tell; let the loader try
            raise UsageError(f"{ref!r} is a {asset.kind} ({asset.name}), not a {kind}")
        present = asset.present_files
        if not present:
            raise NotFoundError(f"{asset.name} ({asset.autov2}) is in the catalog but no copy is on disk any more; "
                                "run `sdhub scan`")
        return ResolvedFile(Path(present[0].path), asset.sha256, _legacy_hash(catalog, asset.id))


def _catalogued(home: Home, path: Path) -> ResolvedFile | None:
    """``path`` with its catalog hashes, when the catalog knows it as it is now (a file unchanged since
    the scan; a pipeline folder by its path), else None."""
    from sdhub.catalog import Catalog

    if not home.database_path.is_file():
        return None
    stat = path.stat()
    with Catalog(home) as catalog:
        try:
            asset = catalog.find(str(path))
        except NotFoundError:
            return None
        for record in asset.files:
            if Path(record.path) == path and (path.is_dir() or (record.size, record.mtime_ns) == (
                    stat.st_size, stat.st_mtime_ns)):
                return ResolvedFile(path, asset.sha256, _legacy_hash(catalog, asset.id))
    return None


def _legacy_hash(catalog: Any, asset_id: int) -> str | None:
    row = catalog.db.execute("SELECT value FROM hashes WHERE asset_id = ? AND scheme = 'legacy_model_hash'",
                             [asset_id]).fetchone()
    return row[0] if row else None


# One loaded model is kept between calls (smoke runs, reruns, the TUI): loading dominates small runs.
_CACHE_LOCK = threading.Lock()
_CACHE: dict[str, Any] = {}


def load_model_cached(model: ResolvedFile, vae: ResolvedFile | None, device: str | None, dtype: str | None,
                      vae_dtype: str | None = None, progress: Progress = NULL_PROGRESS) -> tuple[LoadedModel, float]:
    """The loaded model for these files and settings, reusing the last one when nothing changed."""
    target_device = select_device(device)
    target_dtype = select_dtype(target_device, dtype)
    key = (str(model.path), _signature(model.path), str(vae.path) if vae else None,
           str(target_device), target_dtype, vae_dtype)
    with _CACHE_LOCK:
        if _CACHE.get("key") == key:
            loaded = _CACHE["model"]
            _reset_vae_dtype(loaded, vae_dtype)
            return loaded, 0.0
        _CACHE.clear()
    loaded = load_checkpoint(model.path, vae=vae.path if vae else None, device=target_device, dtype=target_dtype,
                             progress=progress)
    _reset_vae_dtype(loaded, vae_dtype)
    with _CACHE_LOCK:
        _CACHE.update(key=key, model=loaded)
    return loaded, loaded.load_seconds


def _signature(path: Path) -> tuple[tuple[str, int, int], ...]:
    """Size and modification time of a model file, or of every file in a pipeline folder."""
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    return tuple((str(p), p.stat().st_size, p.stat().st_mtime_ns) for p in files)


def _reset_vae_dtype(loaded: LoadedModel, vae_dtype: str | None) -> None:
    """Put the VAE back in its requested precision (an fp32 retry may have upcast it)."""
    wanted = select_dtype(loaded.device, vae_dtype) if vae_dtype else loaded.dtype
    if loaded.vae.dtype != wanted:
        # torch.nn.Module.to: diffusers' own .to() warns about fp32 modules on every cast
        torch.nn.Module.to(loaded.vae, wanted)


def clear_model_cache() -> None:
    """Forget the cached model (frees its memory)."""
    with _CACHE_LOCK:
        _CACHE.clear()


def sidecar_vae(model_path: Path) -> Path | None:
    """A VAE named like the checkpoint beside it (``model.vae.pt``), which A1111 picks automatically."""
    for suffix in VAE_SIDECAR_SUFFIXES:
        candidate = model_path.with_name(model_path.stem + suffix)
        if candidate.is_file():
            return candidate
    return None


def _lora_file(home: Home, name: str) -> Path | None:
    folder = home.folder("lora")
    if not folder.is_dir():
        return None
    for path in sorted(folder.rglob("*")):
        if path.is_file() and path.stem == name and path.suffix.lower() in LORA_SUFFIXES:
            return path
    return None


def _lora_hash(path: Path) -> str:
    """A1111's LoRA short hash: the addnet hash of a safetensors file (else SHA-256), 12 hex."""
    from sdhub.ops.hashing import hash_file

    hashes = hash_file(path)
    return (hashes.addnet_hash or hashes.sha256)[:12]


def infotext_params(params: GenerationParams, sampled: SampledImages, model: ResolvedFile, vae: ResolvedFile | None,
                    image_index: int, loras: list[dict[str, Any]]) -> dict[str, Any]:
    """The ``Key: value`` fields A1111 writes for one image of the batch."""
    choice = sampled.sampler
    spec = choice.sampler
    eta = spec.default_eta if params.eta is None else params.eta
    fields: dict[str, Any] = {
        "Steps": params.steps, "Sampler": spec.label, "Schedule type": choice.infotext_schedule,
        "CFG scale": params.cfg_scale,
        "Seed": sampled.seeds[image_index], "Size": f"{params.width}x{params.height}",
        "Model hash": model.autov2, "Model": model.name,
        "VAE hash": vae.autov2 if vae else None, "VAE": vae.path.name if vae else None,  # A1111: file name
        "Clip skip": params.clip_skip if params.clip_skip > 1 else None,
        # A1111 names ENSD only for samplers that draw per-step noise, and not when eta turns that off
        "ENSD": params.eta_noise_seed_delta if params.eta_noise_seed_delta and spec.uses_ensd and eta else None,
        "RNG": INFOTEXT_RNG[sampled.rng],
    }
    if sampled.subseeds and params.subseed_strength:
        fields["Variation seed"] = sampled.subseeds[image_index]
        fields["Variation seed strength"] = params.subseed_strength
    if params.seed_resize_latent():
        fields["Seed resize from"] = f"{params.seed_resize_from_w}x{params.seed_resize_from_h}"
    if loras:
        fields["Lora hashes"] = ", ".join(f"{lora['name']}: {lora['hash']}" for lora in loras)
    if sampled.used_embeddings:
        fields["TI hashes"] = ", ".join(
            f"{name.replace(':', '').replace(',', '')}: {embedding.shorthash}"
            for name, embedding in sampled.used_embeddings.items() if embedding.shorthash)
    if params.emphasis != "Original":
        fields["Emphasis"] = params.emphasis
    if params.downcast_alphas_cumprod:
        fields["Downcast alphas_cumprod"] = True
    fields.update(sampler_infotext_fields(params, choice))
    fields["Version"] = A1111_VERSION
    return fields


def sampler_infotext_fields(params: GenerationParams, choice: SamplerChoice) -> dict[str, Any]:
    """The sampler options A1111 adds to ``extra_generation_params`` when they are not its defaults."""
    spec = choice.sampler
    fields: dict[str, Any] = {}
    if params.discard_penultimate_sigma and not spec.discard_next_to_last_sigma:
        fields["Discard penultimate sigma"] = True
    if choice.uses_schedule and choice.schedule == "beta":
        fields["Beta schedule alpha"], fields["Beta schedule beta"] = BETA_ALPHA, BETA_BETA
    if params.eta is not None and spec.takes("eta") and params.eta != spec.default_eta:
        fields[spec.eta_infotext_key] = params.eta
    if params.s_noise is not None and spec.takes("s_noise") and params.s_noise != 1.0:
        fields["Sigma noise"] = params.s_noise
    if spec.function == "unipc":
        # A1111 reads these back as settings; written when not its defaults, so the rerun is the image
        fields.update(unipc_infotext_fields(params.unipc_options()))
    return fields


def unipc_infotext_fields(options: Any) -> dict[str, Any]:
    """The ``UniPC ...`` settings that differ from A1111's defaults, under A1111's infotext keys."""
    from sdhub.generate.unipc import UniPCOptions

    default = UniPCOptions()
    values = {"UniPC variant": (options.variant, default.variant),
              "UniPC skip type": (options.skip_type, default.skip_type),
              "UniPC order": (options.order, default.order),
              "UniPC lower order final": (options.lower_order_final, default.lower_order_final)}
    return {key: value for key, (value, default_value) in values.items() if value != default_value}


def _next_image_paths(folder: Path, seeds: list[int]) -> list[Path]:
    """A1111-style ``NNNNN-seed.png`` names continuing the folder's numbering."""
    numbers = [int(path.name[:5]) for path in folder.glob("[0-9][0-9][0-9][0-9][0-9]-*.png")]
    start = max(numbers, default=-1) + 1
    return [folder / f"{start + index:05d}-{seed}.png" for index, seed in enumerate(seeds)]


def generate(home: Home, model_ref: str | ResolvedFile, params: GenerationParams,
             progress: Progress = NULL_PROGRESS, *, vae_ref: str | None = None, out_dir: str | Path | None = None,
             device: str | None = None, dtype: str | None = None, vae_dtype: str | None = None,
             auto_fp32_vae: bool = True, file_prefix: str | None = None, hires: Any = None,
             img2img: Any = None, sd_upscale: Any = None) -> GenerationResult:
    """Generate images from ``params`` with the model ``model_ref`` and write them as PNGs with infotext.

    ``model_ref`` may be a ``resolve_file`` result already in hand, so its file is not hashed twice.
    ``hires`` (``HiresParams``) adds A1111's hires fix; ``img2img`` (``Img2ImgParams``) starts from an image;
    ``sd_upscale`` (``SdUpscaleParams``) runs A1111's SD upscale script with tiles of ``params``' size.
    A stop (Ctrl-C, a cancelled ``progress``) raises ``Interrupted`` saying which images were written.
    """
    written: list[Path] = []

    def left() -> str:
        if not written:
            return "no image written"
        return f"{len(written)} of {params.batch_size} images written ({', '.join(p.name for p in written)})"

    def run(each: GenerationParams, template_fields: Mapping[str, str]) -> GenerationResult:
        return _generate(home, model_ref, each, progress, vae_ref=vae_ref, out_dir=out_dir, device=device,
                         dtype=dtype, vae_dtype=vae_dtype, auto_fp32_vae=auto_fp32_vae, file_prefix=file_prefix,
                         written=written, hires=hires, img2img=img2img, sd_upscale=sd_upscale,
                         template_fields=template_fields)

    from sdhub.generate.wildcards import generate_with_wildcards

    with reporting_stop(left):  # __wildcards__ and {variants} are expanded before A1111 parses the prompt
        return generate_with_wildcards(home, params, run)


def _generate(home: Home, model_ref: str | ResolvedFile, params: GenerationParams, progress: Progress, *,
              vae_ref: str | None, out_dir: str | Path | None, device: str | None, dtype: str | None,
              vae_dtype: str | None, auto_fp32_vae: bool, file_prefix: str | None, written: list[Path],
              hires: Any = None, img2img: Any = None, sd_upscale: Any = None,
              template_fields: Mapping[str, str] | None = None) -> GenerationResult:
    params.validate()
    params = params.with_seeds()
    from sdhub.generate.generation_modes import check_mode, sample_mode

    upscaler = check_mode(home, params, hires, img2img, sd_upscale, select_device(device))
    model = model_ref if isinstance(model_ref, ResolvedFile) else resolve_file(home, model_ref, "checkpoint")
    notes: list[str] = []
    if vae_ref is None and (beside := sidecar_vae(model.path)) is not None:
        vae_ref = str(beside)
        notes.append(f"using the VAE next to the model, {beside.name} (A1111's automatic VAE)")
    vae = resolve_file(home, vae_ref, "vae") if vae_ref else None
    loaded, load_seconds = load_model_cached(model, vae, device, dtype, vae_dtype, progress)

    # A1111 takes extra networks from the prompt only; in the negative prompt a tag is plain text
    prompt, positive_tags = extract_extra_networks(params.prompt)
    negative = params.negative_prompt
    from sdhub.generate.lora import NetworkUse, apply_loras, load_lora

    uses, lora_records = [], []
    for tag in positive_tags:
        if tag.network not in LORA_NETWORKS:
            notes.append(f"extra network <{tag.network}:...> is not supported; ignored")
            continue
        path = _lora_file(home, tag.name)
        if path is None:
            notes.append(f"LoRA {tag.name!r} not found in {home.folder('lora')}; generated without it")
            continue
        uses.append(NetworkUse(load_lora(path, tag.name), tag.te_multiplier, tag.unet_multiplier))
        lora_records.append({"name": tag.name, "path": str(path), "hash": _lora_hash(path),
                             "te_multiplier": tag.te_multiplier, "unet_multiplier": tag.unet_multiplier})

    from sdhub.generate.embeddings import load_embeddings

    embeddings, skipped = load_embeddings(home.folder("embedding"))
    notes.extend(f"embedding skipped: {reason}" for reason in skipped)
    sampling = replace(params, prompt=prompt, negative_prompt=negative)
    components = {"lora_unet": loaded.unet}
    if loaded.family == "sdxl":
        if "text_encoder" in loaded.text_encoders:
            components["lora_te1"] = loaded.text_encoders["text_encoder"]
        components["lora_te2"] = loaded.text_encoders["text_encoder_2"]
    else:
        components["lora_te"] = loaded.text_encoders["text_encoder"]
    with apply_loras(components, uses) as applied:
        for name, missing in applied.unmatched.items():
            notes.append(f"LoRA {name}: {len(missing)} modules match nothing in this model (wrong base model?)")
        sampled, pass_fields = sample_mode(loaded, sampling, hires, img2img, sd_upscale, upscaler,
                                           embeddings=embeddings, progress=progress, auto_fp32_vae=auto_fp32_vae)
    notes.extend(sampled.notes)

    folder = Path(out_dir) if out_dir else home.outputs_dir
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise UsageError(f"cannot create the output folder {folder}: {error.strerror or error}") from None
    paths = _next_image_paths(folder, sampled.seeds)
    if file_prefix:
        paths = [folder / f"{file_prefix}-{seed}.png" for seed in sampled.seeds]
    infotexts = []
    for index, (image, path) in enumerate(zip(sampled.images, paths)):
        # A1111 adds hires fields before the sampler's own and "Hires schedule type" after them
        # Dynamic Prompts' Template fields come first among the extras: the extension adds them before A1111's own
        fields = {**(template_fields or {}), **pass_fields.before,
                  **infotext_params(params, sampled, model, vae, index, lora_records),
                  **pass_fields.after}
        text = Infotext.create(params.prompt, params.negative_prompt, fields).to_text()
        check_cancelled(progress)
        save_png_with_parameters(image, path, text)
        written.append(path)
        infotexts.append(text)
    return GenerationResult(
        images=paths, seeds=sampled.seeds, params=params, infotexts=infotexts, model=model, vae=vae,
        loras=lora_records, embeddings=sorted(sampled.used_embeddings), device=str(loaded.device),
        dtype=dtype_name(loaded.dtype), rng=sampled.rng, load_seconds=load_seconds,
        sampling_seconds=sampled.sampling_seconds, decode_seconds=sampled.decode_seconds,
        vae_fp32_retry=sampled.vae_fp32_retry, nan_in_output=sampled.nan_in_output, notes=notes,
        hires=hires, img2img=img2img, sd_upscale=sd_upscale,
    )


def params_from_infotext(text: str, rng_override: str | None = None, *, ignore_fields: Collection[str] = (),
                         notes: list[str] | None = None) -> tuple[GenerationParams, dict[str, str]]:
    """Generation parameters from A1111 infotext, and its raw fields (for the model/VAE hashes).

    Every field is honoured or refused in one line (``infotext_fields``) unless named in
    ``ignore_fields``; what the rerun decided on the way (back-compat, ignored fields) goes to ``notes``.
    """
    from sdhub.generate.infotext_fields import check_rerun_fields
    from sdhub.generate.rng import RNG_SOURCES

    info = Infotext.from_text(text)
    fields = info.generation_fields()

    def number(key: str, cast: type, default: Any) -> Any:
        value = fields.get(key)
        if value in (None, ""):
            return default
        try:
            return cast(float(value)) if cast is int else cast(value)
        except ValueError:
            raise BadInputError(f"the infotext's {key!r} is {value!r}, not a number") from None

    choice = choice_from_infotext(fields.get("Sampler", "Euler a"), info.params.get("Schedule type"),
                                  info.params.get("Version"))
    compat = _backcompat(info, choice, number("Steps", int, 20))
    found = check_rerun_fields({**info.params, **compat}, ignore_fields)
    if notes is not None:
        notes.extend(_backcompat_notes(info, compat) + found)
    rng = rng_override or fields.get("RNG", "GPU").lower()
    if rng not in RNG_SOURCES:
        raise BadInputError(f"the infotext's RNG {fields.get('RNG')!r} is not one of GPU, CPU, NV")
    if rng == "gpu" and not torch.cuda.is_available():
        rng = "nv"  # the NV generator draws the same numbers as CUDA
    params = GenerationParams(
        prompt=info.prompt, negative_prompt=info.negative_prompt, steps=number("Steps", int, 20),
        sampler=choice.label, schedule_type=choice.schedule_type, cfg_scale=number("CFG scale", float, 7.0),
        seed=number("Seed", int, -1),
        width=number("Size-1", int, 512), height=number("Size-2", int, 512),
        clip_skip=number("Clip skip", int, 1), rng=rng,
        subseed=number("Variation seed", int, None),
        subseed_strength=number("Variation seed strength", float, 0.0),
        eta_noise_seed_delta=number("ENSD", int, 0),
        downcast_alphas_cumprod=str(compat.get("Downcast alphas_cumprod",
                                               fields.get("Downcast alphas_cumprod", "False"))) == "True",
        emphasis=fields.get("Emphasis", "Original"),
        eta=number(choice.sampler.eta_infotext_key, float, None), s_noise=number("Sigma noise", float, None),
        discard_penultimate_sigma=fields.get("Discard penultimate sigma", "False") == "True",
        seed_resize_from_w=number("Seed resize from-1", int, 0), seed_resize_from_h=number("Seed resize from-2", int, 0),
        unipc_variant=fields.get("UniPC variant", "bh1"), unipc_skip_type=fields.get("UniPC skip type", "time_uniform"),
        unipc_order=number("UniPC order", int, 3),
        unipc_lower_order_final=fields.get("UniPC lower order final", "True") == "True",
    )
    try:
        params.validate()
    except UsageError as error:
        raise BadInputError(f"cannot rerun this infotext: {error.message}") from None
    return params, fields


def _backcompat(info: Infotext, choice: SamplerChoice, steps: int) -> dict[str, Any]:
    """The switches A1111's back-compat adds for the infotext's ``Version`` (none without one, as in A1111).

    "Old prompt editing timelines" is kept only where it moves a prompt edit: without one it changes nothing.
    """
    from sdhub.generate.infotext import backcompat_fields
    from sdhub.generate.prompt_schedule import prompt_schedule, split_and

    fields = {"Prompt": info.prompt, **info.params}
    added = {key: value for key, value in backcompat_fields(fields).items() if key not in fields}
    if added.get("Old prompt editing timelines"):
        total = choice.sampler.total_steps(steps)
        texts = [part for part, _ in split_and(info.prompt)] + [info.negative_prompt]
        if all(prompt_schedule(text, total) == prompt_schedule(text, total, old_scheduling=True) for text in texts):
            del added["Old prompt editing timelines"]
    return added


def _backcompat_notes(info: Infotext, compat: dict[str, Any]) -> list[str]:
    version = info.params.get("Version")
    if compat.get("Downcast alphas_cumprod"):
        return [f"made by A1111 {version}, before v1.7.0-225: rerun with alphas_cumprod downcast to fp16, "
                "as A1111's back-compat does"]
    if not version and "Downcast alphas_cumprod" not in info.params:
        return ["the infotext has no Version: rerun with fp32 alphas_cumprod as A1111 1.10 does (an image made "
                "before v1.7.0 may differ slightly)"]
    return []


def rerun_png(home: Home, png: str | Path, progress: Progress = NULL_PROGRESS, *, ignore_fields: Collection[str] = (),
              model_ref: str | None = None,
              out_dir: str | Path | None = None, device: str | None = None, dtype: str | None = None,
              rng: str | None = None, init_image: str | Path | None = None,
              resize_mode: str = "Just resize", mask: str | Path | None = None) -> GenerationResult:
    """Make an image again from its PNG infotext, finding the model (and VAE) by hash in the catalog.

    Hires fields rerun the hires fix; an img2img infotext needs its ``init_image`` back, an inpaint its ``mask`` too."""
    path = Path(png)
    if not path.is_file():
        raise BadInputError(f"{path} is not a file")
    text = read_png_parameters(path)
    if not text:
        raise BadInputError(f"{path.name} carries no A1111 'parameters' text to rerun")
    rerun_notes: list[str] = []
    params, fields = params_from_infotext(text, rng, ignore_fields=ignore_fields, notes=rerun_notes)
    from sdhub.generate.generation_modes import mode_from_infotext

    hires, img2img = mode_from_infotext(fields, init_image, resize_mode, mask)
    if model_ref is None:
        model_ref = fields.get("Model hash")
        if not model_ref:
            raise BadInputError(f"{path.name} names no 'Model hash'; pass --model")
        if not home.database_path.is_file():
            raise NotFoundError(f"the image was made with model hash {model_ref}; the home has no catalog to find "
                                "it in (run `sdhub scan`) or pass --model")
    vae_ref = fields.get("VAE hash")
    missing_vae = None
    if vae_ref and home.database_path.is_file():
        try:
            resolve_file(home, vae_ref, "vae")
        except NotFoundError:
            missing_vae, vae_ref = vae_ref, None
    elif vae_ref:
        missing_vae, vae_ref = vae_ref, None
    result = generate(home, model_ref, params, progress, vae_ref=vae_ref, out_dir=out_dir, device=device, dtype=dtype,
                      hires=hires, img2img=img2img)
    if missing_vae and (result.vae is None or result.vae.autov2 != missing_vae):
        result.notes.append(f"the image was made with VAE {fields.get('VAE', '')} ({missing_vae}), which is not in "
                            "the catalog; the result may differ")
    result.notes.extend(rerun_notes)
    return result
