"""Pickle Lightning-style training extras without needing pytorch_lightning installed."""

from __future__ import annotations

import pickle
import types
from typing import Any, BinaryIO

LIGHTNING_CHECKPOINT_GLOBAL = ("pytorch_lightning.callbacks.model_checkpoint", "ModelCheckpoint")


class ModelCheckpoint:
    """Stands for Lightning's ModelCheckpoint class; files written with it name Lightning's global."""


ModelCheckpoint.__module__, ModelCheckpoint.__qualname__ = LIGHTNING_CHECKPOINT_GLOBAL


class _LightningPickler(pickle._Pickler):  # the pure-Python pickler lets us write a global it cannot import
    def save_global(self, obj: Any, name: str | None = None) -> None:
        if obj is ModelCheckpoint:
            module, qualname = LIGHTNING_CHECKPOINT_GLOBAL
            self.write(pickle.GLOBAL + module.encode() + b"\n" + qualname.encode() + b"\n")
            self.memoize(obj)
            return
        super().save_global(obj, name)


def _dump(obj: Any, file: BinaryIO, protocol: int | None = None) -> None:
    _LightningPickler(file, protocol).dump(obj)


# Passed to torch.save(pickle_module=...): torch subclasses .Pickler and calls .dump for the legacy format.
lightning_pickle = types.ModuleType("sdhub_lightning_pickle")
lightning_pickle.Pickler = _LightningPickler
lightning_pickle.dump = _dump


def training_extras(first_params: dict[str, tuple[int, ...]]) -> dict[str, Any]:
    """The top-level entries a PyTorch Lightning 1.x checkpoint carries beside ``state_dict``."""
    import torch

    generator = torch.Generator().manual_seed(1234)
    state = {
        index: {
            "step": torch.tensor(500.0),
            "exp_avg": torch.randn(shape, generator=generator) * 1e-3,
            "exp_avg_sq": torch.rand(shape, generator=generator) * 1e-6,
        }
        for index, shape in enumerate(first_params.values())
    }
    return {
        "epoch": 4,
        "global_step": 500,
        "pytorch-lightning_version": "1.4.2",
        "optimizer_states": [{
            "state": state,
            "param_groups": [{"lr": 1e-4, "betas": (0.9, 0.999), "eps": 1e-8, "weight_decay": 0.01,
                              "amsgrad": False, "params": list(state)}],
        }],
        "lr_schedulers": [{"base_lrs": [1e-4], "last_epoch": 500, "_step_count": 501, "verbose": False,
                           "_get_lr_called_within_step": False, "_last_lr": [1e-4], "lr_lambdas": [None]}],
        # Lightning 1.4 keyed callback states by the callback's class, so the class itself is pickled.
        "callbacks": {ModelCheckpoint: {"monitor": None, "best_model_score": None, "best_model_path": "",
                                        "current_score": None, "dirpath": "logs/checkpoints"}},
    }
