"""sdhub: keep a Stable Diffusion model library in order and prove it works."""

__version__ = "0.1.0"
