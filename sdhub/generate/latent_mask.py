"""The latent-space side of inpainting: A1111's mask blend at every step and its inpainting-UNet conditioning.

A1111's CFG denoiser keeps the unmasked area on the init latent: k-diffusion samplers blend the
denoised prediction (``denoised * nmask + init_latent * mask``), its DDIM and PLMS blend the noisy
latent before the model call (``mask_before_denoising``). After sampling the result is blended once more.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch


@dataclass
class LatentMask:
    """``nmask`` is 1 where the image is redrawn, ``mask`` 1 where the init latent is kept."""

    init_latent: torch.Tensor
    mask: torch.Tensor
    nmask: torch.Tensor

    @classmethod
    def from_image(cls, mask_image: Any, init_latent: torch.Tensor) -> "LatentMask":
        """The mask image shrunk (bicubic) to the latent size and rounded to 0 or 1, as A1111 does."""
        from PIL import Image

        height, width = init_latent.shape[-2:]
        small = mask_image.convert("RGB").resize((width, height), resample=Image.BICUBIC)
        values = np.around(np.asarray(small, dtype=np.float32)[..., 0] / 255)
        nmask = torch.from_numpy(values).to(init_latent.device, torch.float32).expand(init_latent.shape[1], -1, -1)
        return cls(init_latent, 1.0 - nmask, nmask)

    def blend(self, latent: torch.Tensor) -> torch.Tensor:
        return latent * self.nmask + self.init_latent * self.mask


class MaskBlendedDenoiser:
    """A CFG denoiser whose k-diffusion output (``denoise``) or DDIM/PLMS input (``eps``) is mask-blended."""

    def __init__(self, cfg: Any, latent_mask: LatentMask) -> None:
        self.cfg = cfg
        self.latent_mask = latent_mask

    def denoise(self, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        return self.latent_mask.blend(self.cfg.denoise(x, sigma))

    def eps(self, x: torch.Tensor, timestep: int) -> torch.Tensor:
        return self.cfg.eps(self.latent_mask.blend(x), timestep)


def inpainting_unet(model: Any) -> bool:
    """True for a 9-channel inpainting UNet (latent + mask + masked-image latent)."""
    return model.unet.config.in_channels == 9


@torch.inference_mode()
def inpainting_conditioning(model: Any, image: Any, mask_image: Any | None, weight: float) -> torch.Tensor:
    """A1111's ``inpainting_image_conditioning``: the rounded mask at the latent size and the latent of the
    image with its masked area blanked to grey, blended with the whole image by ``1 - weight``.

    ``image`` is the RGB PIL image sampling starts from; ``mask_image`` None means all of it is masked."""
    vae = model.vae
    array = np.moveaxis(np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0, 2, 0)
    source = torch.from_numpy(array).unsqueeze(0).to(model.device) * 2 - 1
    if mask_image is None:
        mask = torch.ones(1, 1, *source.shape[-2:], device=model.device)
    else:
        values = np.asarray(mask_image.convert("L"), dtype=np.float32) / 255.0
        mask = torch.round(torch.from_numpy(values)[None, None]).to(model.device)
    blanked = torch.lerp(source, source * (1.0 - mask), weight)
    latent = vae.encode(blanked.to(vae.dtype)).latent_dist.mode().float() * vae.config.scaling_factor
    mask = torch.nn.functional.interpolate(mask, size=latent.shape[-2:])
    return torch.cat([mask, latent], dim=1)
