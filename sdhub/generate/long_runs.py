"""Long runs: A1111's batch count (``n_iter``) and "generate forever", image after image until stopped.

A1111 draws a run's seeds as one list over every image of every batch: image ``i`` gets ``seed + i``, or,
with a variation strength, the seed itself and ``subseed + i``. Batch ``n`` of size ``b`` therefore starts at
``seed + n*b`` (or ``subseed + n*b``). Each batch is written as soon as it is drawn (atomically); a stop keeps
every finished image and says how many there are.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from sdhub.config import Home
from sdhub.errors import Interrupted, UsageError
from sdhub.generate.generate import GenerationResult, ResolvedFile, generate
from sdhub.generate.pipeline import GenerationParams
from sdhub.progress import NULL_PROGRESS, Progress, interrupted


def batch_params(params: GenerationParams, index: int) -> GenerationParams:
    """The settings of batch ``index`` (0-based) of a run whose seeds are resolved, with A1111's seeds."""
    step = index * params.batch_size
    if params.subseed_strength:
        return replace(params, subseed=(params.subseed or 0) + step)
    return replace(params, seed=params.seed + step)


@dataclass
class LongRunResult:
    """Every batch of a long run, in order."""

    batches: list[GenerationResult]

    @property
    def images(self) -> list[Path]:
        return [path for batch in self.batches for path in batch.images]

    @property
    def seeds(self) -> list[int]:
        return [seed for batch in self.batches for seed in batch.seeds]

    @property
    def first(self) -> GenerationResult:
        return self.batches[0]

    @property
    def params(self) -> GenerationParams:
        """The first batch's settings (later batches differ only in their seeds)."""
        return self.first.params

    @property
    def model(self) -> ResolvedFile:
        return self.first.model

    @property
    def device(self) -> str:
        return self.first.device

    @property
    def dtype(self) -> str:
        return self.first.dtype

    @property
    def sampling_seconds(self) -> float:
        return sum(batch.sampling_seconds for batch in self.batches) / len(self.batches)

    @property
    def notes(self) -> list[str]:
        return list(dict.fromkeys(note for batch in self.batches for note in batch.notes))

    def to_dict(self) -> dict[str, Any]:
        first = self.batches[0].to_dict() if self.batches else {}
        return {**first, "images": [str(path) for path in self.images], "seeds": self.seeds,
                "batch_count": len(self.batches), "notes": self.notes}


def generate_batches(home: Home, model_ref: str | ResolvedFile, params: GenerationParams,
                     progress: Progress = NULL_PROGRESS, *, batch_count: int | None = 1,
                     **options: Any) -> LongRunResult:
    """``batch_count`` batches of ``params`` (None: until stopped) with A1111's seeds; ``options`` go to
    ``generate``. A stop raises ``Interrupted`` that counts the images kept (every finished one)."""
    if batch_count is not None and batch_count < 1:
        raise UsageError(f"the batch count is at least 1, not {batch_count}")
    params.validate()
    params = params.with_seeds()
    batches: list[GenerationResult] = []
    index = 0
    while batch_count is None or index < batch_count:
        try:
            batches.append(generate(home, model_ref, batch_params(params, index), progress, **options))
        except (KeyboardInterrupt, Interrupted) as stop:
            raise interrupted(stop, _kept(batches)) from None
        index += 1
    return LongRunResult(batches)


def _kept(batches: list[GenerationResult]) -> str:
    images = [path for batch in batches for path in batch.images]
    if not images:
        return "no finished image to keep"
    seeds = [seed for batch in batches for seed in batch.seeds]
    return (f"{len(images)} finished image{'s' if len(images) != 1 else ''} kept in {images[0].parent} "
            f"(seeds {seeds[0]}..{seeds[-1]}, last {images[-1].name})")
