"""``sdhub generate``'s txt2img path: options laid over the last run's (``--last``) and the model's defaults,
the settings kept for the next ``--last``, and the batches drawn (``--batch-count``, ``--forever``)."""

from __future__ import annotations

from typing import Any, Callable

from sdhub.config import Home
from sdhub.errors import UsageError
from sdhub.progress import Progress

#: ``generate``'s options that ``--last`` does not repeat: how to run, not what to draw.
NOT_REPEATED = ("as_json", "from_png", "ignore_field", "last", "batch_count", "forever")
#: The ``GenerationParams`` field (or ``vae``) each option sets, where a model default may fill it.
DEFAULTED_OPTIONS = {"negative": "negative_prompt", "sampler": "sampler", "schedule": "schedule_type",
                     "cfg": "cfg_scale", "clip_skip": "clip_skip", "vae": "vae"}


def run_generation(home: Home, options: dict[str, Any], given: set[str], progress: Progress,
                   modes_of: Callable[[dict[str, Any]], dict[str, Any]]) -> Any:
    """Draw what ``options`` say (``given``: the options on the command line); returns a ``LongRunResult``."""
    from sdhub.generate.generate import resolve_file
    from sdhub.generate.last_run import load_last_run, save_last_run
    from sdhub.generate.long_runs import generate_batches
    from sdhub.generate.model_defaults import apply_model_defaults, model_defaults
    from sdhub.generate.pipeline import GenerationParams

    explicit = {DEFAULTED_OPTIONS[name] for name in given if name in DEFAULTED_OPTIONS}
    if options["last"]:
        last = load_last_run(home)
        options = {**options, **last, **{name: options[name] for name in given}}
        model_file = last.get("model")
        if "model" not in given and model_file and not _is_file(model_file) and last.get("model_sha256"):
            options["model"] = last["model_sha256"]  # moved since: found again by its hash
        explicit = set(DEFAULTED_OPTIONS.values())  # the last run's values were what it used
    if options["forever"] and "batch_count" in given:
        raise UsageError("--forever runs until stopped; leave out --batch-count")
    if options["prompt"] is None:
        raise UsageError("give a PROMPT (or --from-png FILE, or --last)")
    if options["model"] is None:
        raise UsageError("give the checkpoint with --model (a path, catalog name or hash)")
    params = GenerationParams(
        prompt=options["prompt"], negative_prompt=options["negative"], steps=options["steps"],
        sampler=options["sampler"], schedule_type=options["schedule"], eta=options["eta"], s_noise=options["s_noise"],
        cfg_scale=options["cfg"], seed=options["seed"], width=options["width"], height=options["height"],
        clip_skip=options["clip_skip"], batch_size=options["batch"], rng=options["rng"], subseed=options["subseed"],
        subseed_strength=options["subseed_strength"], eta_noise_seed_delta=options["ensd"])
    params.validate()
    modes = modes_of(options)
    model = resolve_file(home, options["model"], "checkpoint")
    params, vae_ref, notes = apply_model_defaults(home, params, model_defaults(home, model), explicit,
                                                  options["vae"])
    params = params.with_seeds()  # kept resolved: --last draws the same picture
    used = {**options, "model": str(model.path), "model_sha256": model.sha256, "vae": vae_ref,
            "negative": params.negative_prompt, "sampler": params.sampler, "schedule": params.schedule_type,
            "cfg": params.cfg_scale, "clip_skip": params.clip_skip, "seed": params.seed, "subseed": params.subseed,
            "rng": params.rng}
    save_last_run(home, {name: value for name, value in used.items() if name not in NOT_REPEATED})
    result = generate_batches(home, model, params, progress, batch_count=None if options["forever"]
                              else options["batch_count"], vae_ref=vae_ref, out_dir=options["out"],
                              device=options["device"], dtype=options["dtype"], vae_dtype=options["vae_dtype"],
                              **modes)
    result.batches[0].notes[:0] = notes
    return result


def _is_file(path: str) -> bool:
    from pathlib import Path

    return Path(path).exists()
