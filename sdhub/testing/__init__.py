"""Tiny Stable Diffusion models in the real file layouts, for tests, the demo and benchmarks.

    from sdhub.testing import factory
    checkpoint = factory.sd1_checkpoint("tiny.ckpt", fmt="ckpt", ema=True, training_state=True)
    config = factory.diffusers_config_dir("tiny-config")  # for from_single_file(checkpoint, config=config)

``factory`` holds the public functions; the other modules are its parts (configs, key renaming, writers).
"""
