"""``sdhub get``: from a reference to a verified, catalogued file in the right folder of the home.

One place for the whole story: resolve the reference (Civitai, Hugging Face, plain URL), skip the
download when the catalog already holds the published hash, download or copy into the folder
the home's layout gives the model's kind, convert a pickle through the safe converter, add the
file to the catalog with its source's metadata and first preview, and write A1111 sidecars.
A whole Hugging Face repo lands as one folder: a diffusers pipeline is catalogued as one asset,
the model files of any other repo each as their own.

Hashes already computed on the way in are handed to the catalog, so a placed file is not read
again for them: every hash of a Hugging Face file (taken while it is read from the Hub cache),
the SHA-256 of a download (checked against the published one; the catalog reads the file once
for the other schemes) and the SHA-256 of a pickle (from the download or the converter).
"""

from __future__ import annotations

import glob
import io
import os
import re
import shlex
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sdhub.atomic import atomic_output
from sdhub.config import ASSET_KINDS, NSFW_LEVELS, UNFILED_KIND, Home, preview_nsfw_max
from sdhub.errors import AuthError, Interrupted, NetworkError, NotFoundError, SdhubError, UsageError
from sdhub.progress import NULL_PROGRESS, Progress, interrupted
from sdhub.sources import huggingface as hub
from sdhub.sources.civitai import CivitaiChoice, CivitaiClient, token_help
from sdhub.sources.civitai_checks import check_before_download
from sdhub.sources.download import DownloadResult, download
from sdhub.sources.placing import place_file
from sdhub.sources.http import HttpClient, redact
from sdhub.sources.refs import CivitaiListingRef, CivitaiRef, HubRef, UrlRef, hf_endpoint, parse_ref

if TYPE_CHECKING:
    from sdhub.catalog import Catalog
    from sdhub.ops.hashing import FileHashes

PICKLE_SUFFIXES = (".ckpt", ".pt", ".pth", ".bin")
PREVIEW_MAX_BYTES = 20 << 20


@dataclass
class GetOptions:
    """The choices of ``sdhub get`` (all optional)."""

    kind: str | None = None
    version: str | None = None
    format: str | None = None
    fp: str | None = None
    size: str | None = None
    file_type: str | None = None
    to: Path | None = None
    #: At most this many connections per download; None: added while they help, up to 8.
    connections: int | None = None
    sidecars: bool = True
    keep_pickle: bool = False
    include: list[str] = field(default_factory=list)
    #: ``--prefer`` words (full, fp32, ckpt...) put before the file rule; ``--file``: one file by name.
    prefer: list[str] = field(default_factory=list)
    file_name: str | None = None


@dataclass
class GetResult:
    """What ``get`` did for one reference; ``to_dict`` is the ``--json`` output."""

    ref: str
    source: str
    path: Path
    kind: str
    sha256: str | None = None
    size: int | None = None
    already_present: bool = False
    download: DownloadResult | None = None
    converted_from: Path | None = None
    pickle_kept: bool = False
    preview: Path | None = None
    sidecars: list[str] = field(default_factory=list)
    remote: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.path.name

    def to_dict(self) -> dict[str, Any]:
        return {
            "ref": self.ref, "source": self.source, "path": str(self.path), "name": self.name, "kind": self.kind,
            "sha256": self.sha256, "size": self.size, "already_present": self.already_present,
            "download": self.download.to_dict() if self.download else None,
            "converted_from": str(self.converted_from) if self.converted_from else None,
            "pickle_kept": self.pickle_kept, "preview": str(self.preview) if self.preview else None,
            "sidecars": self.sidecars, "remote": self.remote, "warnings": self.warnings,
        }


def normalise_kind(kind: str | None) -> str | None:
    """The kind ``--kind`` names (any kind, or an alias such as ``lycoris`` or ``upscale_models``)."""
    from sdhub.models.kinds import kind_named

    return None if kind is None else kind_named(kind)


def options_from(options: GetOptions | None, overrides: dict[str, Any]) -> GetOptions:
    """``options`` with keyword overrides (the TUI passes plain keywords)."""
    known = {f.name for f in fields(GetOptions)}
    unknown = set(overrides) - known
    if unknown:
        raise UsageError(f"unknown get options: {', '.join(sorted(unknown))}")
    chosen = replace(options or GetOptions(), **{k: v for k, v in overrides.items() if v is not None})
    if chosen.connections is not None and not 1 <= chosen.connections <= 16:
        raise UsageError("--connections must be between 1 and 16")
    if chosen.to is not None:
        chosen.to = Path(chosen.to).expanduser().absolute()
    chosen.kind = normalise_kind(chosen.kind)
    return chosen


def detect_kind(path: Path) -> tuple[str | None, str | None]:
    """The asset kind the tensors of ``path`` say it is (None when they do not tell) and its variant
    (an upscaler's architecture, which picks A1111's DAT/, HAT/ or SwinIR/ folder)."""
    try:
        from sdhub.formats import open_model
        from sdhub.models.detect import detect
    except ImportError:
        return None, None
    try:
        with open_model(path) as model:
            detection = detect(model.tensors, model.metadata)
    except (SdhubError, OSError, ValueError):
        return None, None
    if detection.kind not in ASSET_KINDS:
        return None, None
    return detection.kind, detection.variant


# -- the catalog side ---------------------------------------------------------------------------
def _catalog(home: Home) -> Catalog:
    from sdhub.catalog import Catalog

    return Catalog(home)


def find_present(home: Home, sha256: str | None) -> Path | None:
    """A file of the library with these bytes (or converted from them), if the catalog knows one."""
    if not sha256 or not home.database_path.exists():
        return None
    with _catalog(home) as catalog:
        return catalog.local_copy(sha256)


def _write_sidecars(result: GetResult, civitai: dict[str, Any] | None) -> None:
    from sdhub.catalog.sidecars import write_sidecars

    preview = str(result.preview) if result.preview else None
    result.sidecars = write_sidecars(result.path, civitai=civitai, user={}, preview=preview)


# -- steps shared by the sources ----------------------------------------------------------------
def _convert_pickle(home: Home, path: Path, options: GetOptions, result: GetResult,
                    progress: Progress) -> tuple[Path, str | None]:
    """Replace a pickle by a safetensors copy made by the safe converter; keep it only if asked.

    Returns the file to catalogue and the pickle's SHA-256 as the converter read it (None when
    nothing was converted). A pickle the converter refuses (it would run code, or is not a
    model) does not stay in the library: it is moved to ``catalog/quarantine/`` and the refusal
    is raised.
    """
    try:
        from sdhub.ops.convert import convert
    except ImportError:
        result.warnings.append(f"{path.name} is a pickle and sdhub's safe converter is not installed: kept as is")
        return path, None
    target = path.with_suffix(".safetensors")
    number = 2
    while target.exists():
        target = path.with_name(f"{path.stem}-{number}.safetensors")
        number += 1
    try:
        report = convert(path, target, progress=progress)
    except (KeyboardInterrupt, Interrupted) as stop:
        raise interrupted(stop, f"the download {path} is kept, not converted or catalogued: "
                                "run the same command to finish") from None
    except SdhubError as error:
        quarantine = home.catalog_dir / "quarantine"
        quarantine.mkdir(parents=True, exist_ok=True)
        kept = quarantine / path.name
        os.replace(path, kept)
        error.message = f"{error.message}; the downloaded file was moved to {kept}"
        raise
    output = Path(report.output)
    if report.dropped or report.placeholders:
        result.warnings.append(f"converting {path.name} dropped non-tensor entries: "
                               f"{', '.join([*report.placeholders, *report.dropped][:8])}")
    result.converted_from = path
    if options.keep_pickle:
        result.pickle_kept = True
    else:
        path.unlink(missing_ok=True)
    return output, report.source_sha256


def choose_preview(images: list[dict[str, Any]], highest: int) -> dict[str, Any] | None:
    """The first still image whose NSFW level (either Civitai encoding) is at most ``highest``."""
    from sdhub.catalog.remote import image_nsfw_level, nsfw_level_shown

    for image in images:
        if isinstance(image, dict) and image.get("url") and image.get("type", "image") == "image" \
                and nsfw_level_shown(image_nsfw_level(image), highest):
            return image
    return None


def _save_preview(home: Home, images: list[dict[str, Any]], sha256: str, result: GetResult) -> None:
    """Fetch the first still image of a model page that the user's NSFW setting allows into
    ``catalog/previews/<sha256>.png``."""
    from sdhub.catalog.remote import image_nsfw_level

    highest = preview_nsfw_max()
    image = choose_preview(images, highest)
    if image is None:
        if any(isinstance(i, dict) and i.get("url") for i in images):
            shown = next(name for name, bit in NSFW_LEVELS.items() if bit == highest)
            result.warnings.append(f"no preview saved: every image is above the NSFW level shown ({shown}); "
                                   "`sdhub settings preview_nsfw LEVEL` shows more")
        return
    url = str(image["url"])
    result.remote["preview_url"] = url
    result.remote["preview_nsfw_level"] = image_nsfw_level(image)
    client = HttpClient(timeout=30)
    try:
        response = client.open(url, what="preview image", stream=True)
        if response.status_code != 200:
            result.warnings.append(f"preview image {redact(url)}: HTTP {response.status_code}; not saved")
            return
        data = response.raw.read(PREVIEW_MAX_BYTES + 1, decode_content=True)
    except NetworkError as error:
        result.warnings.append(f"preview image not saved: {error}")
        return
    finally:
        client.close()
    if len(data) > PREVIEW_MAX_BYTES:
        result.warnings.append(f"preview image {redact(url)} is larger than 20 MB; not saved")
        return
    try:
        from PIL import Image

        with Image.open(io.BytesIO(data)) as picture:
            picture.load()
            folder = home.catalog_dir / "previews"
            folder.mkdir(parents=True, exist_ok=True)
            target = folder / f"{sha256}.png"
            with atomic_output(target) as out:
                picture.convert("RGBA" if picture.mode in ("RGBA", "LA", "P") else "RGB").save(out, "PNG")
            result.preview = target
    except (OSError, ValueError) as error:
        result.warnings.append(f"preview image {redact(url)} could not be read ({error}); not saved")


# -- sources ------------------------------------------------------------------------------------
def _civitai_data(choice: CivitaiChoice) -> dict[str, Any]:
    """The version answer enriched with the model's tags, creator, description, licence and status."""
    from sdhub.catalog.civitai_record import with_model_fields

    return with_model_fields(choice.version, choice.model)


def _get_civitai(home: Home, text: str, ref: CivitaiRef, options: GetOptions, progress: Progress) -> GetResult:
    client = CivitaiClient()
    try:
        choice = client.resolve(ref, version=options.version, file_type=options.file_type, format=options.format,
                                size=options.size, fp=options.fp, prefer=options.prefer, file_name=options.file_name)
        from sdhub.sources.get_wildcards import get_wildcard_pack, is_wildcard_pack

        if is_wildcard_pack(choice) and options.kind in (None, "wildcards"):
            return get_wildcard_pack(home, text, choice, client, options, progress)
        kind = options.kind or choice.kind or UNFILED_KIND
        folder = options.to or home.folder(kind)
        data = _civitai_data(choice)
        result = GetResult(ref=text, source="civitai", path=folder, kind=kind, remote=choice.to_dict())
        if choice.file_choice is not None:
            result.remote["file_rule"] = choice.file_choice.reason
        present = find_present(home, choice.sha256)
        if present is not None:
            result.path, result.already_present = present, True
            progress.message(f"{present.name} is already in the library ({choice.sha256[:10]}); not downloading")
        else:
            result.warnings += check_before_download(choice.model, choice.version, choice.file,
                                                     has_token=client.http.has_token, token_help=token_help())
            result.download = download(
                client.http, choice.download_url, folder, expected_sha256=choice.sha256,
                fallback_name=str(choice.file.get("name") or f"civitai-{choice.version.get('id')}.safetensors"),
                connections=options.connections, quarantine_dir=home.catalog_dir / "quarantine",
                progress=progress, describe_error=client.describe_download_error,
                what=f"Civitai {choice.to_dict()['model_name'] or ''}".strip(),
            )
            result.path, result.already_present = result.download.path, result.download.reused
            if options.kind is None and options.to is None:
                _follow_the_tensors(home, result, f"Civitai calls it {choice.model_type or 'a model'}")
        given = None if options.kind or choice.kind is None else (choice.kind, "civitai", choice.kind_evidence)
        _finish(home, result, options, "civitai", data, data.get("images") or [], progress, given_kind=given)
        if result.kind == UNFILED_KIND and options.to is None:
            reason = (f"Civitai model type {choice.model_type!r} has no folder in a home" if choice.kind is None
                      else f"cannot tell what kind of model {result.name} is")
            result.warnings.append(unfiled_note(result, reason))
        return result
    finally:
        client.close()


def _get_hub(home: Home, text: str, ref: HubRef, options: GetOptions, progress: Progress) -> GetResult:
    patterns, skipped = options.include or None, ""
    if ref.folder is not None and patterns is None:
        patterns = [f"{glob.escape(ref.folder)}/*"]  # fnmatch's * crosses /: the folder's whole tree
    if ref.path is None and not options.include:
        patterns, skipped = _repo_patterns(ref, options, patterns)
    files = hub.fetch(ref, allow_patterns=patterns, progress=progress)
    if ref.path is None:
        result = _get_hub_repo(home, text, ref, files, options, progress)
        if skipped:
            result.warnings.append(skipped)
        return result
    data = {"repo": ref.repo_path, "repo_type": ref.repo_type, "revision": files.commit, "filename": ref.path,
            "url": f"{hf_endpoint()}/{ref.repo_path}/blob/{files.commit}/{ref.path}"}
    cached = files.root / ref.path
    detected, variant = detect_kind(cached)
    kind = options.kind or detected or UNFILED_KIND
    folder = options.to or home.folder_for(kind, variant if kind == detected else None)
    result = GetResult(ref=text, source="huggingface", path=folder, kind=kind, remote=data)
    blob = Path(os.path.realpath(cached)).name
    present = find_present(home, blob if len(blob) == 64 else None)
    hashes = None
    if present is not None:
        result.path, result.already_present = present, True
    else:
        result.path, hashes, result.already_present = hub.place_hub_file(files, ref.path, folder, progress)
    _finish(home, result, options, "huggingface", data, [], progress, hashes=hashes)
    if result.kind == UNFILED_KIND and options.to is None:
        result.warnings.append(unfiled_note(result, f"cannot tell what kind of model {ref.path} is"))
    return result


def _repo_patterns(ref: HubRef, options: GetOptions, default: list[str] | None) -> tuple[list[str] | None, str]:
    """The files of a whole repo (or folder) to fetch, and a line saying what was left out: what a diffusers
    pipeline loads, or one file per model of loose single-file models by the file rule; else ``default``."""
    from sdhub.sources.hub_selection import select_repo_files

    try:
        sizes = hub.list_files(ref)
    except SdhubError:
        if options.file_name is not None:
            raise
        return default, ""  # offline, gated, missing...: the download itself says so, or uses the cache
    if ref.folder is None and "model_index.json" in sizes and options.file_name is None:
        patterns, note = _pipeline_patterns(sizes)
        return patterns or default, note
    if ref.folder is not None:
        sizes = {name: size for name, size in sizes.items() if name.startswith(f"{ref.folder}/")}
    selection = select_repo_files(sizes, prefer=options.prefer, file_name=options.file_name,
                                  what=f"Hugging Face repo {ref.repo_path}")
    if selection is None:
        return default, ""
    return selection.patterns, selection.note()


def _pipeline_patterns(sizes: dict[str, int]) -> tuple[list[str] | None, str]:
    """For a diffusers pipeline repo (its files and sizes), the files its pipeline loads (configs,
    tokenizers, one set of weights per component) and a line saying what was left out."""
    from sdhub.models.pipeline_folder import pipeline_download_names

    wanted, skipped = pipeline_download_names(sizes)
    if not skipped:
        return None, ""
    left_out = sum(sizes[name] for name in skipped)
    note = (f"left out {len(skipped)} file{'s' if len(skipped) != 1 else ''} ({left_out / 1e9:.2f} GB) the pipeline does not load: "
            f"{', '.join(skipped[:4])}{', ...' if len(skipped) > 4 else ''}; --include '*' fetches every file")
    return [glob.escape(name) for name in wanted], note


def _get_hub_repo(home: Home, text: str, ref: HubRef, files: hub.HubFiles, options: GetOptions,
                  progress: Progress) -> GetResult:
    """A whole repo as one folder: a diffusers pipeline becomes one asset, else each model file is one."""
    from sdhub.catalog.analysis import PIPELINE_INDEX, is_model_file_name

    kind = options.kind or "checkpoint"
    placed = hub.place_hub_folder(files, options.to or home.folder(kind), ref.repo_id.split("/")[-1], progress)
    tree = f"{hf_endpoint()}/{ref.repo_path}/tree/{files.commit}" + (f"/{ref.folder}" if ref.folder else "")
    data = {"repo": ref.repo_path, "repo_type": ref.repo_type, "revision": files.commit, "url": tree}
    result = GetResult(ref=text, source="huggingface", path=placed.path, kind=kind, already_present=placed.reused,
                       size=sum(h.size for h in placed.hashes.values()), remote={**data, "files": files.files})
    with _catalog(home) as catalog:
        if PIPELINE_INDEX in placed.hashes:
            asset = catalog.add_folder(placed.path, progress,
                                       known_sha256={Path(name).as_posix(): h.sha256 for name, h in placed.hashes.items()})
            asset = catalog.set_remote(asset.sha256, "huggingface", data)
            result.sha256, result.size, result.kind = asset.sha256, asset.size, asset.kind
            return result
        for name, hashes in sorted(placed.hashes.items()):
            if is_model_file_name(Path(name).name) and not any(p.startswith(".") for p in Path(name).parts):
                asset = catalog.add_file(placed.path / name, progress, hashes=hashes)
                catalog.set_remote(asset.sha256, "huggingface", {
                    **data, "filename": name, "url": f"{hf_endpoint()}/{ref.repo_path}/blob/{files.commit}/{name}"})
    return result


def _get_url(home: Home, text: str, ref: UrlRef, options: GetOptions, progress: Progress) -> GetResult:
    client = HttpClient()
    try:
        staging = options.to or home.folder(options.kind or UNFILED_KIND)
        downloaded = download(client, ref.url, staging, connections=options.connections,
                              quarantine_dir=home.catalog_dir / "quarantine", progress=progress,
                              what=f"download {redact(ref.url)}")
    finally:
        client.close()
    result = GetResult(ref=text, source="url", path=downloaded.path, kind=options.kind or UNFILED_KIND,
                       download=downloaded, sha256=downloaded.sha256, size=downloaded.size,
                       remote={"url": redact(ref.url)})
    present = find_present(home, downloaded.sha256)
    if present is not None and present != downloaded.path:
        downloaded.path.unlink(missing_ok=True)  # the same bytes are in the library already
        result.path, result.already_present = present, True
    elif options.to is None and options.kind is None:
        _follow_the_tensors(home, result, "")
    _finish(home, result, options, None, None, [], progress)
    if result.kind == UNFILED_KIND and options.to is None:
        result.warnings.append(unfiled_note(result, f"cannot tell what kind of model {result.name} is"))
    return result


def _follow_the_tensors(home: Home, result: GetResult, said: str) -> None:
    """Move a new download into the folder of the kind its tensors show, when that is not where it is
    (a Civitai "Checkpoint" that holds only a diffusion model, a plain URL's file kept in downloads/)."""
    detected, variant = detect_kind(result.path)
    if detected is None:
        return
    folder = home.folder_for(detected, variant)
    if folder.resolve() != result.path.parent.resolve():
        assert result.download is not None  # called only right after a download, which hashed what it wrote
        sha256, size = result.download.sha256, result.download.size
        result.path, _ = place_file(result.path, folder, result.path.name, sha256, size)
        if said and detected != result.kind:
            result.warnings.append(f"{said}; its tensors say {detected}: filed in {folder}")
    result.kind = detected


def unfiled_note(result: GetResult, reason: str) -> str:
    """What to say about a download kept in downloads/: where it is, and how to file it."""
    name = shlex.quote(result.path.name)
    return (f"{reason}: kept in {result.path} and catalogued as {UNFILED_KIND}; file it with "
            f"`sdhub mv {name} --kind KIND` ({', '.join(ASSET_KINDS)}) or `sdhub mv {name} --to FOLDER`, "
            "or pass --kind to get next time")


def _finish(home: Home, result: GetResult, options: GetOptions, source: str | None, data: dict[str, Any] | None,
            images: list[dict[str, Any]], progress: Progress, *, hashes: FileHashes | None = None,
            given_kind: tuple[str, str, str] | None = None) -> None:
    """Convert a pickle, catalogue the file with its source's metadata and preview, write its sidecars.

    ``hashes`` are every hash of the placed file when the source computed them (a Hugging Face file).
    ``given_kind`` (kind, source, evidence): the kind the source gives, recorded with its evidence; it
    is the asset's kind where the tensors cannot tell, and the tensors' kind wins where they can.
    ``result.kind`` ends as the kind the catalog records.
    """
    verified = None if result.already_present else (
        hashes.sha256 if hashes else result.download.sha256 if result.download else None)
    pickle: tuple[Path, FileHashes | None, str | None] | None = None  # path, hashes, SHA-256
    if not result.already_present and result.path.suffix.lower() in PICKLE_SUFFIXES:
        converted, read_sha256 = _convert_pickle(home, result.path, options, result, progress)
        if converted != result.path:
            pickle = (result.path, hashes, read_sha256 or verified)
            result.path, hashes, verified = converted, None, None
    with _catalog(home) as catalog:
        if pickle is not None and result.pickle_kept:
            catalog.add_file(pickle[0], progress, hashes=pickle[1], expected_sha256=pickle[2])
        asset = catalog.add_file(result.path, progress, hashes=hashes, expected_sha256=verified)
        if given_kind is not None:
            asset = catalog.set_kind(asset.sha256, given_kind[0], by=given_kind[1], evidence=given_kind[2])
        elif options.kind is not None:
            # --kind is the user's word for what the file is: the catalog keeps it over the tensors' guess,
            # and a copy kept unfiled in downloads/ by an earlier get is filed now.
            if result.already_present and options.to is None and result.path.parent == home.downloads_dir \
                    and options.kind != UNFILED_KIND:
                moved = catalog.move(str(result.path), kind=options.kind).moved  # records the kind too
                result.path = Path(moved[0]["to"]) if moved else result.path
                asset = catalog.get(asset.sha256)
            else:
                asset = catalog.set_kind(asset.sha256, options.kind)
        result.sha256, result.size, result.kind = asset.sha256, asset.size, asset.kind
        if pickle is not None and pickle[2] and pickle[2] != asset.sha256:
            # Recorded even when the pickle is gone: the link waits, and tells where the file came from.
            catalog.record_lineage(asset.sha256, pickle[2], "convert")
        if source and data:
            if pickle is not None and result.pickle_kept and pickle[2]:
                catalog.set_remote(pickle[2], source, data)
            catalog.set_remote(asset.sha256, source, data)
        if images:
            _save_preview(home, images, pickle[2] if pickle and pickle[2] else asset.sha256, result)
            if result.preview is not None:
                catalog.add_preview(asset.sha256, source=source or "download", path=result.preview,
                                    url=result.remote.get("preview_url"),
                                    nsfw_level=result.remote.get("preview_nsfw_level"))
    if options.sidecars and source == "civitai":
        _write_sidecars(result, data)
    elif options.sidecars and result.preview is not None:
        _write_sidecars(result, None)


def get(home: Home, ref: str, *, options: GetOptions | None = None, progress: Progress = NULL_PROGRESS,
        **overrides: Any) -> GetResult:
    """Fetch one model into the home: verified, in its folder, catalogued with its metadata."""
    chosen = options_from(options, overrides)
    parsed = parse_ref(ref)
    # A token pasted inside a URL (?token=...) is not repeated in results or messages.
    ref = re.sub(r"([?&](?:token|access_token)=)[^&#]+", r"\1***", ref)
    try:
        if isinstance(parsed, CivitaiRef):
            return _get_civitai(home, ref, parsed, chosen, progress)
        if isinstance(parsed, HubRef):
            return _get_hub(home, ref, parsed, chosen, progress)
        if isinstance(parsed, CivitaiListingRef):
            raise UsageError(f"{ref} is a Civitai {parsed.page} page, not one model: list it with "
                             "`sdhub civitai browse URL`, fetch from it with `sdhub get URL --all` or `--pick 1,3`")
        return _get_url(home, ref, parsed, chosen, progress)
    except OSError as error:
        # Disk trouble while placing or cataloguing (full, read-only, permissions): one line, no traceback.
        where = f" ({error.filename})" if getattr(error, "filename", None) else ""
        raise SdhubError(f"{ref}: {error.strerror or error}{where}") from None


# -- civitai sync -------------------------------------------------------------------------------
@dataclass
class SyncResult:
    """What ``civitai sync`` learnt: assets matched on Civitai, not found there, and failures."""

    checked: int = 0
    matched: list[dict[str, Any]] = field(default_factory=list)
    not_found: list[str] = field(default_factory=list)
    errors: list[dict[str, str]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"checked": self.checked, "matched": self.matched, "not_found": self.not_found,
                "errors": self.errors}


def _civitai_kind(catalog: Catalog, sha256: str, found_by: str, version: dict[str, Any]) -> None:
    """Record the kind Civitai's file or model type gives (it is the asset's kind where its tensors cannot tell)."""
    files = [f for f in version.get("files") or [] if isinstance(f, dict)]
    file = next((f for f in files if str((f.get("hashes") or {}).get("SHA256", "")).lower() == found_by.lower()),
                files[0] if len(files) == 1 else {})
    choice = CivitaiChoice(model=version.get("model") or {}, version=version, file=file, download_url="")
    if choice.kind is not None:
        catalog.set_kind(sha256, choice.kind, by="civitai", evidence=choice.kind_evidence)


def _with_model(client: CivitaiClient, version: dict[str, Any]) -> dict[str, Any]:
    """The by-hash answer completed with the model's own fields from ``/models/{id}`` (tags, description,
    creator, licence, status), as Civitai Helper fetches them; as it was when that model cannot be read."""
    from sdhub.catalog.civitai_record import with_model_fields

    model_id = version.get("modelId")
    if not isinstance(model_id, int) and not (isinstance(model_id, str) and model_id.isdigit()):
        return version
    try:
        return with_model_fields(version, client.model(int(model_id)))
    except NotFoundError:
        return version


def civitai_sync(home: Home, *, sidecars: bool = True, progress: Progress = NULL_PROGRESS) -> SyncResult:
    """Look up every catalogued asset without Civitai metadata by its SHA-256 and fill it in."""
    report = SyncResult()
    with _catalog(home) as catalog:
        assets = catalog.without_remote("civitai")
        client = CivitaiClient()
        task = progress.task("Looking up on Civitai", total=len(assets), unit="files")
        try:
            for asset in assets:
                report.checked += 1
                try:
                    found_by, version = client.by_any_hash(catalog.origin_hashes(asset.sha256))
                except NotFoundError:
                    report.not_found.append(asset.sha256)
                    task.advance(1)
                    continue
                except SdhubError as error:
                    if isinstance(error, (AuthError, UsageError)):
                        raise
                    report.errors.append({"sha256": asset.sha256, "error": str(error)})
                    task.advance(1)
                    continue
                version = _with_model(client, version)
                present = asset.present_files
                result = GetResult(ref=asset.sha256, source="civitai",
                                   path=Path(present[0].path) if present else home.root, kind=asset.kind)
                _save_preview(home, version.get("images") or [], asset.sha256, result)
                catalog.set_remote(asset.sha256, "civitai", version)
                _civitai_kind(catalog, asset.sha256, found_by, version)
                if result.preview is not None:
                    catalog.add_preview(asset.sha256, source="civitai", path=result.preview,
                                        url=result.remote.get("preview_url"),
                                        nsfw_level=result.remote.get("preview_nsfw_level"))
                if sidecars:
                    from sdhub.catalog.sidecars import write_sidecars

                    for record in present:
                        write_sidecars(record.path, civitai=version, user={},
                                       preview=str(result.preview) if result.preview else None)
                report.matched.append({"sha256": asset.sha256, "name": asset.name,
                                       "model": (version.get("model") or {}).get("name"),
                                       "version": version.get("name"), "version_id": version.get("id"),
                                       "found_by": found_by})
                task.advance(1)
        finally:
            task.finish()
            client.close()
    return report
