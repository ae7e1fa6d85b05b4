"""Diffusers pipeline configs of the real SD architectures, shipped so loading needs no network.

One JSON file per architecture (``sd1``, ``sd2``, ``sd2-v``, ``sdxl``, ``sdxl-refiner``) with the
pipeline's ``model_index`` and one config per component (``unet``, ``vae``, ``text_encoder``,
``text_encoder_2``, ``scheduler``), written from the published model configs.

``tiny.json`` holds the same per architecture for sdhub's tiny models (the test factory's and the
demo's), written by ``python -m sdhub.testing.pipeline_folder``.
"""
