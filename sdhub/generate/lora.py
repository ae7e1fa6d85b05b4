"""Kohya LoRA, LoCon, LoHa and LoKr networks merged into a diffusers pipeline's modules, A1111's way.

Each network module's weight change is ``ΔW = up @ down × alpha / rank × multiplier`` (LoHa: the
Hadamard product of two such products; LoKr: a Kronecker product), added to the target module's
weight. ``apply_loras`` returns a handle whose ``restore()`` (or ``with`` exit) copies the original
weights back bit for bit. Module names follow kohya: ``lora_unet_<path>``, ``lora_te_<path>``
(SDXL: ``lora_te1_``/``lora_te2_``), where ``<path>`` is the diffusers module path with ``.`` as ``_``
or, for the UNet, the original LDM/SGM path (``input_blocks_4_1_...``), which SDXL LoRAs use.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

import torch

from sdhub.errors import BadInputError
from sdhub.generate.tensor_files import read_tensors

_SUFFIXES = (
    "lora_down.weight", "lora_up.weight", "lora_mid.weight", "alpha", "dora_scale",
    "hada_w1_a", "hada_w1_b", "hada_w2_a", "hada_w2_b", "hada_t1", "hada_t2",
    "lokr_w1", "lokr_w1_a", "lokr_w1_b", "lokr_w2", "lokr_w2_a", "lokr_w2_b", "lokr_t2",
)
_RESNET_LDM = {"conv1": "in_layers_2", "conv2": "out_layers_3", "time_emb_proj": "emb_layers_1",
               "conv_shortcut": "skip_connection"}


@dataclass
class LoraNetwork:
    """A LoRA-family file: its name (as written in prompts), modules (lora_name -> tensors), metadata."""

    name: str
    modules: dict[str, dict[str, torch.Tensor]]
    metadata: dict[str, str] = field(default_factory=dict)
    path: Path | None = None


def load_lora(path: Path, name: str | None = None) -> LoraNetwork:
    """Read a kohya/LyCORIS network file; ``name`` defaults to the file stem."""
    tensors, metadata = read_tensors(Path(path))
    tensors = _kohya_names(tensors)
    modules: dict[str, dict[str, torch.Tensor]] = {}
    for key, tensor in tensors.items():
        suffix = next((s for s in _SUFFIXES if key.endswith("." + s)), None)
        if suffix is None:
            continue
        modules.setdefault(key[: -len(suffix) - 1], {})[suffix] = tensor
    if not modules:
        raise BadInputError(f"{path} holds no kohya/LyCORIS LoRA weights (lora_down/lora_up, hada_*, lokr_*)")
    return LoraNetwork(name or Path(path).stem, modules, metadata, Path(path))


_PEFT_KEY = re.compile(r"^(unet|text_encoder|text_encoder_2)\.(.+)\.(lora_A|lora_B|lora\.down|lora\.up)\.weight$")
_PEFT_FACTOR = {"lora_A": "lora_down.weight", "lora.down": "lora_down.weight",
                "lora_B": "lora_up.weight", "lora.up": "lora_up.weight"}


def _kohya_names(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Diffusers/PEFT LoRA keys (``unet.<path>.lora_A.weight``) renamed to kohya's; others unchanged.

    PEFT files carry no alpha, so their scale is 1 (alpha = rank), as in diffusers' default.
    """
    sdxl = any(key.startswith("text_encoder_2.") for key in tensors)
    prefixes = {"unet": "lora_unet", "text_encoder": "lora_te1" if sdxl else "lora_te", "text_encoder_2": "lora_te2"}
    renamed = {}
    for key, tensor in tensors.items():
        match = _PEFT_KEY.match(key)
        if match is None:
            renamed[key] = tensor
            continue
        component, path, factor = match.groups()
        renamed[f"{prefixes[component]}_{path.replace('.', '_')}.{_PEFT_FACTOR[factor]}"] = tensor
    return renamed


def module_delta(tensors: Mapping[str, torch.Tensor], weight_shape: torch.Size) -> torch.Tensor:
    """The weight change of one network module at multiplier 1 (alpha/rank scale included), in float32."""
    tensors = {key: value.to(torch.float32) for key, value in tensors.items()}
    alpha = tensors.get("alpha")
    if "dora_scale" in tensors:
        raise BadInputError("DoRA networks (dora_scale) are not supported yet; use the plain LoRA version")
    if "lora_up.weight" in tensors:
        up, down = tensors["lora_up.weight"], tensors["lora_down.weight"]
        rank = down.shape[0]
        if "lora_mid.weight" in tensors:
            raise BadInputError("LoCon networks with a CP-decomposed middle (lora_mid) are not supported")
        delta = up.reshape(up.shape[0], -1) @ down.reshape(rank, -1)
    elif "hada_w1_a" in tensors:
        if "hada_t1" in tensors:
            raise BadInputError("LoHa networks with Tucker factors (hada_t1) are not supported")
        rank = tensors["hada_w1_b"].shape[0]
        delta = (tensors["hada_w1_a"] @ tensors["hada_w1_b"]) * (tensors["hada_w2_a"] @ tensors["hada_w2_b"])
    elif "lokr_w1" in tensors or "lokr_w1_a" in tensors:
        if "lokr_t2" in tensors:
            raise BadInputError("LoKr networks with Tucker factors (lokr_t2) are not supported")
        rank = None
        w1 = tensors.get("lokr_w1")
        if w1 is None:
            w1, rank = tensors["lokr_w1_a"] @ tensors["lokr_w1_b"], tensors["lokr_w1_b"].shape[0]
        w2 = tensors.get("lokr_w2")
        if w2 is None:
            w2, rank = tensors["lokr_w2_a"] @ tensors["lokr_w2_b"], tensors["lokr_w2_b"].shape[0]
        delta = torch.kron(w1, w2.reshape(w2.shape[0], -1))
    else:
        raise BadInputError(f"unsupported network module with tensors {sorted(tensors)}")
    if delta.numel() != math.prod(weight_shape):
        raise BadInputError(f"network module of shape {tuple(delta.shape)} does not fit a weight of {tuple(weight_shape)}")
    delta = delta.reshape(weight_shape)
    if alpha is not None and rank is not None:
        delta = delta * (float(alpha) / rank)
    return delta


def kohya_module_names(components: Mapping[str, torch.nn.Module]) -> dict[str, torch.nn.Module]:
    """kohya lora_name -> module, for ``components`` keyed by prefix (``lora_unet``, ``lora_te``, ...)."""
    names: dict[str, torch.nn.Module] = {}
    for prefix, root in components.items():
        modules = dict(root.named_modules())
        is_text = not prefix.startswith("lora_unet")
        # transformers 5 dropped the ``text_model.`` level that kohya names still contain
        text_prefix = "text_model." if is_text and not any(n.startswith("text_model.") for n in modules) else ""
        patchable = {path: m for path, m in modules.items() if isinstance(m, (torch.nn.Linear, torch.nn.Conv2d))}
        for path, module in patchable.items():
            names[f"{prefix}_{(text_prefix + path).replace('.', '_')}"] = module
        if not is_text:
            for ldm_path, path in _ldm_unet_paths(root, patchable).items():
                names.setdefault(f"{prefix}_{ldm_path}", patchable[path])
    return names


def _ldm_unet_paths(unet: torch.nn.Module, modules: Mapping[str, torch.nn.Module]) -> dict[str, str]:
    """LDM/SGM module names (``input_blocks_1_1_proj_in``, ``_`` separated) -> diffusers module paths."""
    config = getattr(unet, "config", None)
    if config is None or not hasattr(unet, "down_blocks"):
        return {}
    per_block = config.layers_per_block if isinstance(config.layers_per_block, int) else config.layers_per_block[0]
    blocks: dict[str, str] = {"conv_in": "input_blocks.0.0", "conv_out": "out.2", "conv_norm_out": "out.0",
                              "time_embedding.linear_1": "time_embed.0", "time_embedding.linear_2": "time_embed.2"}
    for level, block in enumerate(unet.down_blocks):
        for k in range(per_block):
            index = 1 + level * (per_block + 1) + k
            blocks[f"down_blocks.{level}.resnets.{k}"] = f"input_blocks.{index}.0"
            blocks[f"down_blocks.{level}.attentions.{k}"] = f"input_blocks.{index}.1"
        if getattr(block, "downsamplers", None):
            blocks[f"down_blocks.{level}.downsamplers.0.conv"] = f"input_blocks.{(level + 1) * (per_block + 1)}.0.op"
    blocks.update({"mid_block.resnets.0": "middle_block.0", "mid_block.attentions.0": "middle_block.1",
                   "mid_block.resnets.1": "middle_block.2"})
    for level, block in enumerate(unet.up_blocks):
        has_attention = bool(getattr(block, "attentions", None))
        for k in range(per_block + 1):
            index = level * (per_block + 1) + k
            blocks[f"up_blocks.{level}.resnets.{k}"] = f"output_blocks.{index}.0"
            blocks[f"up_blocks.{level}.attentions.{k}"] = f"output_blocks.{index}.1"
        if getattr(block, "upsamplers", None):
            last = level * (per_block + 1) + per_block
            blocks[f"up_blocks.{level}.upsamplers.0.conv"] = f"output_blocks.{last}.{2 if has_attention else 1}.conv"
    result = {}
    for path in modules:
        for prefix, ldm_prefix in blocks.items():
            if path == prefix or path.startswith(prefix + "."):
                rest = path[len(prefix) + 1:]
                if ".resnets." in prefix or prefix.startswith("mid_block.resnets"):
                    rest = _RESNET_LDM.get(rest, rest)
                result[(ldm_prefix + ("." + rest if rest else "")).replace(".", "_")] = path
                break
    return result


@dataclass
class NetworkUse:
    """One network to apply and its multipliers (A1111: text encoder and UNet can differ)."""

    network: LoraNetwork
    te_multiplier: float = 1.0
    unet_multiplier: float = 1.0


@dataclass
class AppliedLoras:
    """Networks merged into modules; ``restore()`` puts the original weights back exactly."""

    backups: dict[torch.nn.Module, torch.Tensor] = field(default_factory=dict)
    matched: dict[str, int] = field(default_factory=dict)
    unmatched: dict[str, list[str]] = field(default_factory=dict)

    def restore(self) -> None:
        """Copy every saved original weight back into its module."""
        with torch.no_grad():
            for module, weight in self.backups.items():
                module.weight.copy_(weight)
        self.backups.clear()

    def __enter__(self) -> "AppliedLoras":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.restore()


def pipeline_components(pipeline: Any) -> dict[str, torch.nn.Module]:
    """kohya prefix -> module for a diffusers pipeline (SD1/SD2: lora_te; SDXL: lora_te1, lora_te2)."""
    components = {"lora_unet": pipeline.unet}
    second = getattr(pipeline, "text_encoder_2", None)
    first = getattr(pipeline, "text_encoder", None)
    if second is not None:
        if first is not None:
            components["lora_te1"] = first
        components["lora_te2"] = second
    elif first is not None:
        components["lora_te"] = first
    return components


@torch.no_grad()
def apply_loras(components: Mapping[str, torch.nn.Module] | Any, uses: Iterable[NetworkUse]) -> AppliedLoras:
    """Merge each network into ``components`` (a pipeline, or prefix -> module); returns the restore handle.

    A multiplier of 0 leaves that part untouched, so weight 0 is exactly the model without the LoRA.
    """
    if not isinstance(components, Mapping):
        components = pipeline_components(components)
    targets = kohya_module_names(components)
    applied = AppliedLoras()
    try:
        for use in uses:
            count, missing = 0, []
            for lora_name, tensors in use.network.modules.items():
                module = targets.get(lora_name)
                if module is None:
                    missing.append(lora_name)
                    continue
                multiplier = use.unet_multiplier if lora_name.startswith("lora_unet") else use.te_multiplier
                count += 1
                if multiplier == 0:
                    continue
                weight = module.weight
                delta = module_delta(tensors, weight.shape).to(device=weight.device, dtype=torch.float32)
                applied.backups.setdefault(module, weight.detach().clone())
                weight.copy_((weight.to(torch.float32) + delta * multiplier).to(weight.dtype))
            applied.matched[use.network.name] = count
            if missing:
                applied.unmatched[use.network.name] = missing
    except BaseException:
        applied.restore()
        raise
    return applied


LORA_SUFFIXES = (".safetensors", ".pt", ".ckpt")


def find_lora_file(folder: Path, name: str) -> Path | None:
    """The network file A1111 would pick for ``<lora:name>``: by file stem, else by ``ss_output_name``."""
    folder = Path(folder)
    if not folder.is_dir():
        return None
    candidates = sorted(p for p in folder.rglob("*") if p.suffix.lower() in LORA_SUFFIXES and p.is_file())
    for path in candidates:
        if path.stem == name:
            return path
    for path in candidates:
        if path.suffix.lower() == ".safetensors" and _safetensors_metadata(path).get("ss_output_name") == name:
            return path
    return None


def _safetensors_metadata(path: Path) -> dict[str, str]:
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt") as handle:
            return dict(handle.metadata() or {})
    except (SafetensorError, OSError, ValueError):
        return {}


def lora_shorthash(network: LoraNetwork) -> str | None:
    """A1111's 12-hex LoRA hash: ``sshs_model_hash`` from the metadata, else the addnet hash (.safetensors)
    or the file's SHA-256 (other formats)."""
    embedded = network.metadata.get("sshs_model_hash")
    if embedded:
        return embedded[:12]
    if network.path is None:
        return None
    from sdhub.ops.hashing import hash_file

    hashes = hash_file(network.path)
    digest = hashes.addnet_hash if network.path.suffix.lower() == ".safetensors" else hashes.sha256
    return digest[:12] if digest else None


@dataclass
class ResolvedLoras:
    """The networks a prompt's tags name: what to apply, the ``Lora hashes`` entries, and names not found."""

    uses: list[NetworkUse]
    hashes: dict[str, str]
    missing: list[str]


def resolve_loras(tags: Iterable[Any], folder: Path) -> ResolvedLoras:
    """Load the LoRAs named by ``<lora:...>``/``<lyco:...>`` tags (from ``extract_extra_networks``)."""
    uses, hashes, missing = [], {}, []
    for tag in tags:
        if tag.network not in ("lora", "lyco"):
            continue
        path = find_lora_file(folder, tag.name)
        if path is None:
            missing.append(tag.name)
            continue
        network = load_lora(path, name=tag.name)
        uses.append(NetworkUse(network, tag.te_multiplier, tag.unet_multiplier))
        shorthash = lora_shorthash(network)
        if shorthash:
            hashes[tag.name] = shorthash
    return ResolvedLoras(uses, hashes, missing)
