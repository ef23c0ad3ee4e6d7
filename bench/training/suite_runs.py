"""What a suite trains before it scores: [evaluators] (the mel-inception evaluator) and [training.RUN] (generators).

[evaluators.mel-inception] trains once per (data, settings) into CACHE/evaluators/ and is reused; its
checkpoint is loaded as `trained` weights. [training.RUN] with `training:RUN/...` checkpoints:

    [training.archisound-tiny]
    generator = "archisound"
    data = { builtin = "synthetic", n_clips = 70, seed = 1 }
    steps = 200
    every = 100

    [[generators]]
    name = "archisound"
    checkpoints = "training:archisound-tiny/step-*.pt"

The run is trained once into CACHE/generators/RUN-HASH (HASH: the training data's content and every
setting), then reused; `training:RUN/step-*.pt` expands at parse time to the checkpoints the settings
will produce (every `every` steps and the last), so cell ids do not depend on where the cache lives.
"""
from __future__ import annotations

import dataclasses
import fnmatch
from pathlib import Path

from bench.core.cache import default_cache_root, stable_hash
from bench.core.clip_sources import open_training_set
from bench.core.config import check_keys
from bench.core.errors import ConfigError
from bench.training import evaluator as ev

PREFIX = "training:"
TABLE_KEYS = {"generator", "data", "steps", "every", "batch_size", "seed", "size", "lr", "config", "threads"}
_SETTING_KEYS = ("steps", "every", "batch_size", "seed", "lr", "threads")


def _settings(table: dict):
    from bench.training.generator import TrainSettings

    return TrainSettings(**{k: table[k] for k in _SETTING_KEYS if k in table})


def check_training_table(training, source: str) -> dict:
    """Validate [training.RUN] tables: {RUN: {generator, data, steps, every, ...}}."""
    if not isinstance(training, dict):
        raise ConfigError(f"{source}: [training] must be a table of runs, e.g. [training.archisound-tiny]")
    from generators.trainable import TRAINABLES

    for run, table in training.items():
        where = f"{source}: [training.{run}]"
        check_keys(table, TABLE_KEYS, source, f"training.{run}")
        for key in ("generator", "data", "steps"):
            if key not in table:
                raise ConfigError(f"{where}: missing `{key}`")
        try:
            TRAINABLES.lookup(table["generator"])
            _settings(table)
        except ConfigError as exc:
            raise ConfigError(f"{where}: {exc}") from exc
        if not isinstance(table.get("config", {}), dict):
            raise ConfigError(f"{where}: `config` must be a table of config overrides")
    return training


def planned_steps(table: dict) -> list[int]:
    settings = _settings(table)
    steps = list(range(settings.every, settings.steps + 1, settings.every))
    return steps if steps and steps[-1] == settings.steps else steps + [settings.steps]


def expand_training_checkpoints(pattern: str, training: dict, source: str, generator: str) -> list[str]:
    """`training:RUN/GLOB` -> the matching checkpoint names RUN will produce, e.g. training:RUN/step-000100.pt."""
    run, _, glob_part = pattern.removeprefix(PREFIX).partition("/")
    if run not in training:
        raise ConfigError(f"{source}: generator {generator!r}: checkpoint {pattern!r} names training run {run!r}, "
                          f"but the suite has no [training.{run}] (runs: {', '.join(training) or 'none'})")
    if training[run]["generator"] != generator:
        raise ConfigError(f"{source}: checkpoint {pattern!r} is from a {training[run]['generator']!r} run, "
                          f"but the generator entry is {generator!r}")
    names = [f"step-{k:06d}.pt" for k in planned_steps(training[run])]
    matches = [f"{PREFIX}{run}/{n}" for n in names if fnmatch.fnmatch(n, glob_part or "step-*.pt")]
    if not matches:
        raise ConfigError(f"{source}: checkpoint pattern {pattern!r} matches none of {', '.join(names)}")
    return matches


def run_dir(cache_root: Path, run: str, key: str) -> Path:
    return Path(cache_root) / "generators" / f"{run}-{key[:16]}"


def ensure_generator_training(training: dict, base_dir: Path, cache_root: Path | None, progress: bool = True,
                              log=print) -> dict[str, str]:
    """Train each run unless the cache has it; {"training:RUN/step-NNNNNN.pt": checkpoint file}."""
    from bench.core.clip_sources import open_training_set
    from bench.training.generator import (
        TrainingData,
        apply_overrides,
        run_key,
        train_generator,
    )
    from generators.trainable import get_trainable

    root = Path(cache_root) if cache_root is not None else default_cache_root()
    resolved = {}
    for run, table in sorted(training.items()):
        settings, size, overrides = _settings(table), table.get("size", "tiny"), table.get("config", {})
        name = table["generator"]
        config = apply_overrides(get_trainable(name).default_config(size), overrides, name)
        dataset = TrainingData(open_training_set(table["data"], base_dir), config, progress=progress)
        directory = run_dir(root, run, run_key(name, dataset.fingerprint, settings, size, overrides,
                                                  config))
        outcome = train_generator(name, dataset, directory, settings, size, overrides, progress=progress, log=log)
        for path in outcome.checkpoints:
            resolved[f"{PREFIX}{run}/{path.name}"] = str(path)
    return resolved


def resolve_trained_cells(suite, resolved: dict[str, str]):
    """The suite with `training:` checkpoints pointing at their files; the cell keeps the name as its
    identity (Cell.checkpoint_name), so ids and record hashes stay the same on every machine."""
    if not resolved:
        return suite
    cells = []
    for cell in suite.cells:
        if cell.checkpoint and cell.checkpoint.startswith(PREFIX):
            if cell.checkpoint not in resolved:
                raise ConfigError(f"training produced no checkpoint {cell.checkpoint!r} "
                                  f"(it has {', '.join(sorted(resolved))})")
            cell = dataclasses.replace(cell, checkpoint=resolved[cell.checkpoint], checkpoint_name=cell.checkpoint)
        cells.append(cell)
    return dataclasses.replace(suite, cells=cells)


# ------------------------------------------------------------------------------------- evaluators

def check_evaluators_table(evaluators, source: str) -> dict:
    """Validate a suite's [evaluators] table: {backbone: {data, config, steps, seed, batch_size}}."""
    if not isinstance(evaluators, dict):
        raise ConfigError(f"{source}: [evaluators] must be a table of backbone names, e.g. [evaluators.mel-inception]")
    for backbone, table in evaluators.items():
        if backbone not in ev.TRAINABLE:
            raise ConfigError(f"{source}: [evaluators.{backbone}]: only {', '.join(ev.TRAINABLE)} can be trained here")
        where = f"{source}: [evaluators.{backbone}]"
        check_keys(table, ev.SPEC_KEYS, source, f"evaluators.{backbone}")
        if "data" not in table:
            raise ConfigError(f"{where}: missing `data` (a labelled set: manifest, folder or builtin table)")
        try:
            ev.TrainSpec(**{k: v for k, v in table.items() if k != "data"})
        except (ConfigError, TypeError) as exc:
            raise ConfigError(f"{where}: {exc}") from exc
    return evaluators


def evaluator_dir(cache_root: Path, backbone: str, spec: ev.TrainSpec, fingerprint: str) -> Path:
    return Path(cache_root) / "evaluators" / f"{backbone}-{spec.config}-{stable_hash(ev.run_key(spec, fingerprint))[:16]}"


def ensure_evaluators(evaluators: dict, base_dir: Path, cache_root: Path | None, progress: bool = True,
                      log=print) -> tuple[tuple[str, str], ...]:
    """Train each suite evaluator unless the cache has it; (backbone, checkpoint path) pairs."""
    root = Path(cache_root) if cache_root is not None else default_cache_root()
    out = []
    for backbone, table in sorted(evaluators.items()):
        spec = ev.TrainSpec(**{k: v for k, v in table.items() if k != "data"})
        clipset = open_training_set(table["data"], base_dir)
        classes, labels = ev.class_labels(clipset)
        directory = evaluator_dir(root, backbone, spec, ev.training_fingerprint(clipset, classes, labels))
        result = ev.train(clipset, directory, spec, progress=progress, log=log)
        out.append((backbone, str(result.checkpoint)))
    return tuple(out)
