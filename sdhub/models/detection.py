"""What every detector shares: the Detection verdict, shape access and the width tables of the families."""

from __future__ import annotations

import functools
import re
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, TypeVar

from sdhub.models.kinds import family_of

#: Where sdhub records, in files it writes, that a model predicts v (SD2 768-v has no flag of its own).
PREDICTION_METADATA_KEY = "sdhub.prediction"
UNET_PREFIX = "model.diffusion_model."
INPUT_CONV = UNET_PREFIX + "input_blocks.0.0.weight"
ADM_INPUT = UNET_PREFIX + "label_emb.0.0.weight"

# Real text-encoder widths: CLIP ViT-L (SD1, SDXL's first), OpenCLIP ViT-H (SD2), ViT-bigG (SDXL's second).
TEXT_WIDTH_BASE = {768: "sd1", 1024: "sd2"}
#: The base model a UNet's cross-attention width belongs to (the text embedding it attends to).
CROSS_ATTENTION_BASE = {768: "sd1", 1024: "sd2", 2048: "sdxl"}
#: UNet input channels beyond a plain model's 4 latent ones: the variant they make and what they hold.
INPUT_CHANNEL_VARIANTS = {9: ("inpainting", "latent + mask + masked image"),
                          8: ("instruct-pix2pix", "latent + image latent")}
# SDXL's ADM input: pooled bigG (1280) + 6 (base) or 5 (refiner) Fourier features of 256.
ADM_WIDTH_ARCH = {2816: "sdxl", 2560: "sdxl-refiner"}

KOHYA_BASE_VERSIONS = (
    ("sdxl", "sdxl"), ("sd_v2", "sd2"), ("sd_v1", "sd1"), ("v2", "sd2"), ("v1", "sd1"), ("flux", "flux1"),
    ("sd3", "sd3"), ("sd_1", "sd1"), ("sd1", "sd1"), ("sd_2", "sd2"), ("sd2", "sd2"),
)
MODELSPEC_BASES = (
    ("stable-diffusion-xl-v1-refiner", "sdxl-refiner"), ("stable-diffusion-xl", "sdxl"),
    ("stable-diffusion-v2", "sd2"), ("stable-diffusion-v1", "sd1"), ("flux-1", "flux1"),
    ("stable-diffusion-3", "sd3"),
)
#: Real FLUX.1 size: hidden width, and blocks (double-stream, single-stream).
FLUX_WIDTH = 3072
FLUX_BLOCKS = (19, 38)
#: Hidden widths of the MM-DiT transformers' attention (what a LoRA's down factor or a ControlNet's
#: block takes in): the architecture, or the family where the width does not tell one.
TRANSFORMER_WIDTH_ARCHITECTURE = {FLUX_WIDTH: "flux1", 1536: "sd3", 2432: "sd3.5-large"}
TRANSFORMER_WIDTH_BASE = {width: family_of(name) for width, name in TRANSFORMER_WIDTH_ARCHITECTURE.items()}
#: The families whose VAEs have this many latent channels.
LATENT_FAMILIES = {4: ("sd1", "sd2", "sdxl"), 16: ("sd3", "flux1")}


_Detector = TypeVar("_Detector", bound=Callable[..., Any])


@dataclass
class Detection:
    """The verdict on one file; ``evidence`` says, in words, what it rests on."""

    kind: str
    architecture: str | None = None
    variant: str | None = None  # "inpainting" | "instruct-pix2pix"
    base_model: str | None = None  # the family a checkpoint, LoRA or embedding belongs to: sd1 | sd2 | sdxl
    lora_flavour: str | None = None
    embedding_vectors: int | None = None
    evidence: list[str] = field(default_factory=list)
    #: Facts a kind adds beyond the fields above (e.g. a text encoder's ``families``, an upscaler's ``scale``).
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def inpainting(self) -> bool:
        return self.variant == "inpainting"

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "inpainting": self.inpainting}


def count_indices(names: Any, pattern: str) -> int:
    """How many distinct values the pattern's first group takes over ``names`` (blocks, layers)."""
    regex = re.compile(pattern)
    return len({m.group(1) for n in names if (m := regex.match(n))})


def family(architecture: str | None) -> str | None:
    """The family ('sd1', 'sdxl', 'flux1'...) of an architecture name, or None."""
    return family_of(architecture)


def shape_of(info: Any) -> tuple[int, ...]:
    shape = info[1] if isinstance(info, tuple) else info.shape
    return tuple(int(size) for size in shape)


def tolerates_malformed_shapes(kind: str) -> Callable[[_Detector], _Detector]:
    """For a detector that reads shapes once names have matched: a shape a real file of ``kind`` never has
    (too few axes, zero widths) gives a ``kind`` verdict that says so, never an exception."""

    def wrap(detector: _Detector) -> _Detector:
        @functools.wraps(detector)
        def run(*args: Any, **kwargs: Any) -> Any:
            try:
                return detector(*args, **kwargs)
            except (IndexError, ValueError, TypeError, ZeroDivisionError) as error:
                return Detection(kind, evidence=[f"{kind} tensor names, but shapes no real {kind} has ({error})"])

        return run  # type: ignore[return-value]

    return wrap


def dimension(info: Any, index: int) -> int | None:
    """One size of a tensor's shape, or None when the shape has no such axis (a malformed file must not crash)."""
    shape = shape_of(info)
    return shape[index] if -len(shape) <= index < len(shape) else None
