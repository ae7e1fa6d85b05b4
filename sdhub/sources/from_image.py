"""``sdhub get --from-png``: every model an image names, found in the library or fetched.

An image names its models in its metadata: A1111's infotext (``Model hash`` and ``Model``,
``VAE hash``, ``Lora hashes``, ``TI hashes``), the ``Hashes`` JSON that Civitai's extension adds,
Civitai's own ``Civitai resources`` list (version ids), and ComfyUI's graphs (file names in loader
nodes). Each model is looked up in the catalog by any hash scheme or prefix (as ``sdhub show``
resolves a hash), by its Civitai version id, then on Civitai by hash or version id; what the
library lacks is fetched with the ordinary ``get`` flow, so it is verified, placed and catalogued.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path, PureWindowsPath
from typing import TYPE_CHECKING, Any

from sdhub.config import Home
from sdhub.errors import BadInputError, Interrupted, NotFoundError, SdhubError, UsageError
from sdhub.generate.infotext import parse_hashes
from sdhub.generate.pnginfo import read_image_metadata
from sdhub.progress import NULL_PROGRESS, Progress
from sdhub.sources.civitai import CivitaiChoice, CivitaiClient, pick_file
from sdhub.sources.get import GetOptions, GetResult, find_present, get

if TYPE_CHECKING:
    from sdhub.catalog import Catalog
    from sdhub.catalog.records import Asset

PRESENT, FETCHED, WOULD_FETCH, NOT_FOUND, FAILED = "present", "fetched", "would fetch", "not found", "failed"
_HEX = re.compile(r"^[0-9a-f]{8,64}$")
#: How ``Hashes`` keys and ``Civitai resources`` types name a model's kind.
_KINDS = {
    "model": "checkpoint", "checkpoint": "checkpoint", "vae": "vae", "lora": "lora", "lyco": "lora",
    "lycoris": "lora", "locon": "lora", "dora": "lora", "embed": "embedding", "embedding": "embedding",
    "textualinversion": "embedding", "ti": "embedding", "hypernet": "hypernetwork", "hypernetwork": "hypernetwork",
}
#: ComfyUI loader inputs that name a model file, and the kind of that file.
_COMFY_INPUTS = {"ckpt_name": "checkpoint", "lora_name": "lora", "vae_name": "vae"}
_COMFY_EMBEDDING = re.compile(r"embedding:([^\s,()\[\]:<>]+)", re.IGNORECASE)
_MODEL_SUFFIXES = (".safetensors", ".ckpt", ".pt", ".pth", ".bin", ".gguf", ".sft")
#: At most this many models are read from one image (a hostile file may name millions).
MAX_RESOURCES = 256


@dataclass
class NamedResource:
    """A model an image names: its kind, file name, hashes (lowercase hex, as given) and Civitai ids."""

    kind: str
    name: str | None = None
    hashes: list[str] = field(default_factory=list)
    version_id: int | None = None
    civitai_name: str | None = None
    named_by: list[str] = field(default_factory=list)

    @property
    def stem(self) -> str | None:
        """The file name without folder and model suffix, lower case (how names are compared)."""
        if not self.name:
            return None
        base = PureWindowsPath(self.name).name  # ComfyUI on Windows writes SDXL\\model.safetensors
        lowered = base.lower()
        return next((base[:-len(s)] for s in _MODEL_SUFFIXES if lowered.endswith(s)), base).lower()

    def label(self) -> str:
        """What a user calls it: the file name, else Civitai's name, else the hash or version id."""
        if self.name:
            return self.name
        if self.civitai_name:
            return self.civitai_name
        return self.hashes[0] if self.hashes else f"Civitai version {self.version_id}"

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "name": self.name, "hashes": self.hashes, "version_id": self.version_id,
                "civitai_name": self.civitai_name, "named_by": self.named_by}


@dataclass
class ResourceResult:
    """What became of one model an image names: present (``path``), fetched, would fetch, not found or
    failed (``reason`` says why)."""

    image: str
    resource: NamedResource
    status: str
    path: Path | None = None
    reason: str | None = None
    civitai: dict[str, Any] | None = None
    get: GetResult | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"image": self.image, **self.resource.to_dict(), "status": self.status,
                "path": str(self.path) if self.path else None, "reason": self.reason, "civitai": self.civitai,
                "get": self.get.to_dict() if self.get else None}


@dataclass
class FromImageReport:
    """Every model the images name, each with what was done; ``errors`` lists images not read."""

    dry_run: bool = False
    resources: list[ResourceResult] = field(default_factory=list)
    errors: list[tuple[str, SdhubError]] = field(default_factory=list)

    def count(self, status: str) -> int:
        return sum(1 for result in self.resources if result.status == status)

    def to_dict(self) -> dict[str, Any]:
        return {"dry_run": self.dry_run, "resources": [r.to_dict() for r in self.resources],
                "errors": [{"image": image, "error": str(error)} for image, error in self.errors]}


# -- reading what an image names ----------------------------------------------------------------
def _hash(value: Any) -> str | None:
    text = str(value).strip().lower() if isinstance(value, (str, int)) else ""
    return text if _HEX.match(text) else None


def _version_id(value: Any) -> int | None:
    try:
        number = int(value)
    except (TypeError, ValueError):
        return None
    return number if 0 < number < 1 << 53 else None


def _json(text: str | None) -> Any:
    if not text:
        return None
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        return None


def _a1111_resources(params: dict[str, str]) -> list[NamedResource]:
    found: list[NamedResource] = []
    model = params.get("Model") or None
    if _hash(params.get("Model hash")) or model:
        found.append(NamedResource("checkpoint", model, [h for h in [_hash(params.get("Model hash"))] if h],
                                   named_by=["Model hash" if params.get("Model hash") else "Model"]))
    vae = params.get("VAE") or None
    if _hash(params.get("VAE hash")) or vae:
        found.append(NamedResource("vae", vae, [h for h in [_hash(params.get("VAE hash"))] if h],
                                   named_by=["VAE hash" if params.get("VAE hash") else "VAE"]))
    for key, kind in (("Lora hashes", "lora"), ("TI hashes", "embedding")):
        for name, value in parse_hashes(params.get(key) or "").items():
            digest = _hash(value)
            found.append(NamedResource(kind, name, [digest] if digest else [], named_by=[key]))
    hashes = _json(params.get("Hashes"))
    for key, value in (hashes.items() if isinstance(hashes, dict) else ()):
        prefix, _, name = str(key).partition(":")
        kind = _KINDS.get(prefix.lower())
        digest = _hash(value)
        if kind and digest:
            name = name or (model if kind == "checkpoint" else vae if kind == "vae" else "") or None
            found.append(NamedResource(kind, name, [digest], named_by=["Hashes"]))
    listed = _json(params.get("Civitai resources"))
    for entry in (listed if isinstance(listed, list) else ()):
        if not isinstance(entry, dict):
            continue
        digest, version = _hash(entry.get("hash")), _version_id(entry.get("modelVersionId"))
        if not (digest or version):
            continue
        names = [str(entry[k]) for k in ("modelName", "modelVersionName") if isinstance(entry.get(k), (str, int))]
        kind = _KINDS.get(str(entry.get("type", "")).lower().replace(" ", ""), "other")
        found.append(NamedResource(kind, None, [digest] if digest else [], version,
                                   " ".join(names) or None, ["Civitai resources"]))
    return found


def _comfyui_resources(raw: dict[str, str]) -> list[NamedResource]:
    """The model files a ComfyUI image's API graph (``prompt``) names, else its UI graph (``workflow``)."""
    found: list[NamedResource] = []
    graph = _json(raw.get("prompt"))
    if isinstance(graph, dict):
        for node in graph.values():
            inputs = node.get("inputs") if isinstance(node, dict) else None
            for key, value in (inputs.items() if isinstance(inputs, dict) else ()):
                if key in _COMFY_INPUTS and isinstance(value, str) and value.strip():
                    found.append(NamedResource(_COMFY_INPUTS[key], value.strip(), named_by=[f"ComfyUI {key}"]))
                elif isinstance(value, str) and "embedding:" in value.lower():
                    found += [NamedResource("embedding", name, named_by=["ComfyUI prompt"])
                              for name in _COMFY_EMBEDDING.findall(value)]
        return found
    workflow = _json(raw.get("workflow"))
    nodes = workflow.get("nodes") if isinstance(workflow, dict) else None
    for node in (nodes if isinstance(nodes, list) else ()):
        if not isinstance(node, dict) or not isinstance(node.get("widgets_values"), list):
            continue
        node_type = str(node.get("type", ""))
        kind = ("checkpoint" if "checkpoint" in node_type.lower() else "lora" if "lora" in node_type.lower()
                else "vae" if node_type == "VAELoader" else None)
        value = next((v for v in node["widgets_values"] if isinstance(v, str) and v.lower().endswith(_MODEL_SUFFIXES)),
                     None)
        if kind and value:
            found.append(NamedResource(kind, value, named_by=[f"ComfyUI {node_type}"]))
    return found


def _same(a: NamedResource, b: NamedResource) -> bool:
    """Whether two mentions are one model: the same version id, a shared hash (one a prefix of the
    other), or the same kind and file name (``Lora hashes`` and ``Hashes`` give different schemes)."""
    if a.version_id and a.version_id == b.version_id:
        return True
    if any(x.startswith(y) or y.startswith(x) for x in a.hashes for y in b.hashes):
        return True
    return a.kind == b.kind and a.stem is not None and a.stem == b.stem


def _merge(found: list[NamedResource]) -> list[NamedResource]:
    merged: list[NamedResource] = []
    for resource in found:
        same = next((m for m in merged if _same(m, resource)), None)
        if same is None:
            merged.append(resource)
            continue
        same.hashes += [h for h in resource.hashes if h not in same.hashes]
        same.named_by += [n for n in resource.named_by if n not in same.named_by]
        same.name = same.name or resource.name
        same.version_id = same.version_id or resource.version_id
        same.civitai_name = same.civitai_name or resource.civitai_name
        if same.kind == "other":
            same.kind = resource.kind
    return merged


def image_resources(image: str | Path) -> list[NamedResource]:
    """The models an image's metadata names (A1111 infotext, Civitai's fields, ComfyUI graphs)."""
    metadata = read_image_metadata(Path(image))
    found: list[NamedResource] = []
    if metadata.source == "a1111":
        found += _a1111_resources(metadata.parameters)
    if "prompt" in metadata.raw or "workflow" in metadata.raw:
        found += _comfyui_resources(metadata.raw)
    if not found and metadata.source in ("none", "comfyui") and not metadata.prompt:
        raise BadInputError(f"{image}: no generation metadata sdhub reads (A1111 parameters, ComfyUI prompt or "
                            "workflow)")
    if not found:
        raise BadInputError(f"{image}: its {metadata.source} metadata names no model by hash, Civitai id or file name")
    return _merge(found[:MAX_RESOURCES])


# -- finding and fetching -----------------------------------------------------------------------
def _has_hash(catalog: Catalog, asset: Asset, prefix: str) -> bool:
    """Whether one of the asset's hashes (or the hash of what it was made from) starts with ``prefix``."""
    row = catalog.db.execute(
        "SELECT 1 FROM hashes WHERE asset_id = ? AND value >= ? AND value < ? UNION "
        "SELECT 1 FROM assets WHERE id = ? AND source_sha256 >= ? AND source_sha256 < ?",
        [asset.id, prefix, prefix + "g", asset.id, prefix, prefix + "g"]).fetchone()
    return row is not None


def _by_name(catalog: Catalog, resource: NamedResource) -> Asset | None:
    """The catalogued asset whose file name (or name) is the resource's, of a kind that fits."""
    if resource.stem is None:
        return None
    try:
        asset = catalog.find(PureWindowsPath(resource.name or "").name)
    except (NotFoundError, UsageError):
        return None
    names = {asset.name.lower()} | {n for f in asset.files for n in (Path(f.path).name.lower(),
                                                                       Path(f.path).stem.lower())}
    if resource.stem not in names and PureWindowsPath(resource.name or "").name.lower() not in names:
        return None  # a prefix match: another file
    return asset if resource.kind in ("other", asset.kind) else None


def _by_hash(catalog: Catalog, resource: NamedResource, value: str) -> Asset | None:
    """The asset carrying ``value`` (any scheme, or a prefix of one), as ``sdhub show HASH`` finds it;
    where several carry it (the legacy hash of every file under 1 MiB), the one of the resource's name."""
    try:
        asset = catalog.find(value)
    except NotFoundError:
        return None
    except UsageError:
        asset = _by_name(catalog, resource)
    return asset if asset is not None and _has_hash(catalog, asset, value) else None


def _by_version(catalog: Catalog, version_id: int) -> Asset | None:
    row = catalog.db.execute("SELECT a.sha256 FROM remote r JOIN assets a ON a.id = r.asset_id "
                             "WHERE r.source = 'civitai' AND r.version_id = ? ORDER BY a.id", [str(version_id)]).fetchone()
    return catalog.get(row[0]) if row else None


def _in_library(home: Home, resource: NamedResource) -> tuple[Asset | None, Path | None, str]:
    """The catalogued asset the resource is, its file (None when no copy is on disk) and how it was found."""
    from sdhub.catalog import Catalog

    if not home.database_path.exists():
        return None, None, ""
    with Catalog(home) as catalog:
        found: tuple[Asset | None, str] = (None, "")
        for value in resource.hashes:
            asset = _by_hash(catalog, resource, value)
            if asset is not None:
                found = (asset, f"hash {value}")
                break
        if found[0] is None and resource.version_id:
            found = (_by_version(catalog, resource.version_id), f"Civitai version {resource.version_id}")
        if found[0] is None and not resource.hashes and not resource.version_id:
            found = (_by_name(catalog, resource), "file name")
        asset, how = found
        return asset, catalog.local_copy(asset.sha256) if asset else None, how


def _civitai_version(client: CivitaiClient, resource: NamedResource) -> tuple[dict[str, Any], str | None]:
    """The Civitai version the resource is (by version id, else by each hash) and the hash that found it."""
    if resource.version_id:
        return client.model_version(resource.version_id), None
    tried: list[str] = []
    for value in resource.hashes:
        # A 12-hex TI hash (or a LoRA's, for a .pt) is the start of the file's SHA-256: its first 10 are AutoV2.
        for candidate in (value, value[:10]) if len(value) == 12 else (value,):
            if candidate in tried:
                continue
            tried.append(candidate)
            try:
                return client.by_hash(candidate), candidate
            except NotFoundError:
                continue
    if not tried:
        raise NotFoundError("the image names only the file: no catalogued file has that name, and Civitai is "
                            "not asked by file name")
    raise NotFoundError(f"neither the catalog nor Civitai knows {' or '.join(tried)}")


def _matching_file(version: dict[str, Any], found_by: str | None) -> dict[str, Any]:
    """The file of ``version`` whose hashes include the one that found it, else the one ``get`` would pick."""
    if found_by:
        for file in version.get("files") or []:
            hashes = file.get("hashes") if isinstance(file, dict) else None
            if isinstance(hashes, dict) and found_by.upper() in {str(v).upper() for v in hashes.values()}:
                return file
    return pick_file(version)


def _civitai_ref(version: dict[str, Any], file: dict[str, Any]) -> str:
    """A reference ``get`` takes for exactly this file of this version."""
    model_id, version_id, file_id = version.get("modelId"), int(version["id"]), file.get("id")
    if _version_id(model_id):
        return f"urn:air:civitai:{int(model_id)}@{version_id}" + (f"+{int(file_id)}" if _version_id(file_id) else "")
    return f"https://civitai.com/api/download/models/{version_id}" + (
        f"?fileId={int(file_id)}" if _version_id(file_id) else "")


def _resolve(home: Home, client: CivitaiClient, image: str, resource: NamedResource, dry_run: bool,
             options: GetOptions | None, progress: Progress) -> ResourceResult:
    result = ResourceResult(image, resource, NOT_FOUND)
    asset, path, how = _in_library(home, resource)
    if path is not None:
        result.status, result.path, result.reason = PRESENT, path, f"catalogued, found by {how}"
        return result
    if asset is not None and asset.sha256 not in resource.hashes:
        resource.hashes.append(asset.sha256)  # catalogued, but no copy on disk: Civitai knows the full hash best
    try:
        version, found_by = _civitai_version(client, resource)
        file = _matching_file(version, found_by)
    except (Interrupted, KeyboardInterrupt):
        raise
    except NotFoundError as error:
        named = _by_name_fallback(home, resource)
        if named is not None:
            result.status, result.path = PRESENT, named
            result.reason = "catalogued under its file name; its hash in the image differs"
        else:
            result.reason = str(error)
        return result
    except SdhubError as error:
        result.status, result.reason = FAILED, str(error)
        return result
    choice = CivitaiChoice(model=version.get("model") or {}, version=version, file=file, download_url="")
    result.civitai = {"model_id": version.get("modelId"), "version_id": version.get("id"),
                      "model_name": choice.to_dict()["model_name"], "version_name": version.get("name"),
                      "file": file.get("name"), "sha256": choice.sha256, "ref": _civitai_ref(version, file)}
    present = find_present(home, choice.sha256)
    if present is not None:
        result.status, result.path, result.reason = PRESENT, present, "catalogued under Civitai's SHA-256 of the file"
        return result
    if dry_run:
        result.status, result.reason = WOULD_FETCH, f"from Civitai: {result.civitai['ref']}"
        return result
    progress.message(f"fetching {resource.label()} from Civitai ({result.civitai['ref']})")
    try:
        fetched = get(home, result.civitai["ref"], options=options, progress=progress)
    except (Interrupted, KeyboardInterrupt):
        raise
    except SdhubError as error:
        result.status, result.reason = FAILED, str(error)
        return result
    result.get, result.path = fetched, fetched.path
    result.status = PRESENT if fetched.already_present else FETCHED
    return result


def _by_name_fallback(home: Home, resource: NamedResource) -> Path | None:
    """A copy of a catalogued file with the resource's name, when its hash is known nowhere (A1111 takes a
    LoRA's hash from its metadata, which goes stale when the file is edited)."""
    from sdhub.catalog import Catalog

    if not resource.hashes or resource.stem is None or not home.database_path.exists():
        return None
    with Catalog(home) as catalog:
        asset = _by_name(catalog, resource)
        return catalog.local_copy(asset.sha256) if asset else None


def _key(result: ResourceResult) -> str | None:
    if result.path is not None:
        return f"path:{result.path}"
    if result.civitai and result.civitai.get("version_id"):
        return f"version:{result.civitai['version_id']}"
    return None


def get_from_images(home: Home, images: list[str | Path], *, dry_run: bool = False,
                    options: GetOptions | None = None, progress: Progress = NULL_PROGRESS) -> FromImageReport:
    """Find every model the images name in the library, and fetch what is missing (``dry_run``: only
    say what would be fetched). Images that cannot be read are listed in ``errors``; the others go on."""
    report = FromImageReport(dry_run=dry_run)
    client = CivitaiClient()
    try:
        for image in images:
            try:
                resources = image_resources(image)
            except BadInputError as error:
                report.errors.append((str(image), error))
                continue
            seen: dict[str, ResourceResult] = {}
            for resource in resources:
                result = _resolve(home, client, str(image), resource, dry_run, options, progress)
                key = _key(result)
                if key is not None and key in seen:  # two mentions of one model (hash here, version id there)
                    earlier = seen[key].resource
                    earlier.named_by += [n for n in resource.named_by if n not in earlier.named_by]
                    continue
                if key is not None:
                    seen[key] = result
                report.resources.append(result)
    finally:
        client.close()
    return report


__all__ = ["NamedResource", "ResourceResult", "FromImageReport", "image_resources", "get_from_images",
           "PRESENT", "FETCHED", "WOULD_FETCH", "NOT_FOUND", "FAILED"]
