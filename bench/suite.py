"""Benchmark suites: a TOML file, validated strictly, expanded into a grid of cells.

A cell is one (generator, checkpoint, seed, steps, guidance, sample rate) combination; every cell is
generated, scored and recorded on its own. Unknown keys are errors naming the file and the key.
"""
from __future__ import annotations

import glob
import re
import tomllib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from bench.core.cache import stable_hash
from bench.core.config import check_keys, parse_table
from bench.core.config import where as _where
from bench.core.errors import ConfigError
from bench.executors import ExecutorSpec, parse_executor
from metrics.backbones.base import WeightsChoice
from metrics.inputs import ScoreOptions

_TOP_KEYS = {"name", "description", "results_dir", "reference", "prompts", "generation", "generators",
             "metrics", "weights", "scoring", "tracking", "gates", "evaluators", "executor", "training"}
_GENERATION_KEYS = {"seeds", "duration_s", "sample_rates", "samples_per_prompt", "resampler", "steps",
                    "guidance", "batch_size"}
_GENERATOR_KEYS = _GENERATION_KEYS | {"name", "factory", "checkpoints", "label", "options"}
_GATE_KEYS = {"check", "generator", "label"}
_GATE_RE = re.compile(r"^\s*(?P<metric>[\w.\-]+@[\w.\-]+)\s*(?P<op><=|>=|<|>)\s*(?P<value>[-+0-9.eE]+)\s*$")

QUICKSTART = "quickstart"


@dataclass(frozen=True)
class PromptsSpec:
    """[prompts]: the reference set's captions by default, or a manifest of id + caption."""

    manifest: str | None = None
    limit: int | None = None  # the first N prompts


@dataclass(frozen=True)
class WeightsSpec:
    """[weights]: backbone weights for every metric of the suite."""

    mode: str = WeightsChoice.mode  # "pretrained" | "untrained"
    seed: int = WeightsChoice.seed  # of untrained weights
    checkpoints: dict = field(default_factory=dict)  # backbone -> local checkpoint file


@dataclass(frozen=True)
class ScoringSpec:
    """[scoring]: the defaults are the scoring code's own (ScoreOptions)."""

    bootstrap: int = ScoreOptions.bootstrap
    bootstrap_seed: int = ScoreOptions.bootstrap_seed
    ci_level: float = ScoreOptions.ci_level
    batch_size: int = ScoreOptions.batch_size
    workers: int = ScoreOptions.workers


@dataclass(frozen=True)
class TrackingSpec:
    """[tracking]: where records are logged (default: a sqlite store in the results directory)."""

    enabled: bool = True
    uri: str | None = None
    experiment: str | None = None  # default: the suite's name
    audio_clips: int = 4  # generated clips per cell logged as MLflow audio artifacts (bench.tracking)

    def __post_init__(self) -> None:
        if self.audio_clips < 0:
            raise ConfigError(f"[tracking] audio_clips must be >= 0 (generated clips logged per cell), "
                              f"got {self.audio_clips}")


@dataclass(frozen=True)
class Gate:
    metric: str
    op: str
    threshold: float
    generator: str | None = None  # a generator name (or, for older suites, a label)
    label: str | None = None

    @property
    def text(self) -> str:
        where = "".join(f" [{k}={v}]" for k, v in (("generator", self.generator), ("label", self.label)) if v)
        return f"{self.metric} {self.op} {self.threshold:g}{where}"

    def applies_to(self, cell: dict) -> bool:
        """Whether the gate checks this cell (a record's `cell`)."""
        if self.generator and self.generator not in (cell["generator"], cell["label"]):
            return False
        return not self.label or self.label == cell["label"]

    def passes(self, value: float) -> bool:
        return {"<=": value <= self.threshold, ">=": value >= self.threshold,
                "<": value < self.threshold, ">": value > self.threshold}[self.op]


@dataclass(frozen=True)
class Cell:
    generator: str  # a registered name, or "module:function" for a suite's `factory`
    label: str  # display name (defaults to the generator name)
    checkpoint: str | None
    seed: int | None  # None: a generator that returns existing audio (no randomness)
    steps: int | None
    guidance: float | None
    sample_rate: int | None  # None: each clip at its own rate (existing-audio generators)
    duration_s: float | None  # None: each clip's own duration (existing-audio generators)
    samples_per_prompt: int
    resampler: str
    batch_size: int
    # Identity of a suite-trained checkpoint ("training:RUN/step-000100.pt") when `checkpoint` is its file
    # in the cache (bench.training.suite_runs): ids and hashes use the name, not the machine's path.
    checkpoint_name: str | None = None
    options: dict = field(default_factory=dict)  # generator-specific settings, passed with every request

    def params(self) -> dict:
        return {"generator": self.generator, "label": self.label,
                "checkpoint": self.checkpoint_name or self.checkpoint,
                "seed": self.seed, "steps": self.steps, "guidance": self.guidance,
                "sample_rate": self.sample_rate, "duration_s": self.duration_s,
                "samples_per_prompt": self.samples_per_prompt, "resampler": self.resampler,
                **({"options": self.options} if self.options else {})}

    @property
    def id(self) -> str:
        parts = [self.label] + [f"seed{self.seed}"] * (self.seed is not None) + [
            f"sr{self.sample_rate}" if self.sample_rate else "native"]
        if self.checkpoint:
            parts.insert(1, re.sub(r"[^A-Za-z0-9.-]+", "-", Path(self.checkpoint_name or self.checkpoint).stem))
        if self.steps is not None:
            parts.append(f"steps{self.steps}")
        if self.guidance is not None:
            parts.append(f"cfg{self.guidance:g}")
        slug = re.sub(r"[^A-Za-z0-9._-]+", "-", "_".join(parts))
        return f"{slug}_{stable_hash(self.params())[:8]}"


@dataclass
class Suite:
    name: str
    path: Path | None  # None for the embedded quickstart
    base_dir: Path
    description: str
    results_dir: Path
    reference: object  # spec for bench.core.clip_sources.open_clip_set
    prompts: PromptsSpec
    cells: list[Cell]
    metrics: list[str]
    weights: WeightsSpec
    scoring: ScoringSpec
    tracking: TrackingSpec
    gates: list[Gate] = field(default_factory=list)
    raw: dict = field(default_factory=dict)
    # Backbones trained before scoring (bench.training.evaluator), e.g. {"mel-inception": {"data": ...}}.
    evaluators: dict = field(default_factory=dict)
    executor: ExecutorSpec = field(default_factory=ExecutorSpec)
    # Generators trained before generation (bench.training.suite_runs), {run: {generator, data, steps, ...}}.
    training: dict = field(default_factory=dict)

    @property
    def hash(self) -> str:
        return stable_hash(self.raw)


def _as_list(value, source: str, field_name: str, kind) -> list:
    values = value if isinstance(value, list) else [value]
    for v in values:
        if v is not None and (not isinstance(v, kind) or isinstance(v, bool)):
            raise ConfigError(f"{source}: {field_name} must hold {getattr(kind, '__name__', kind)} values, "
                              f"got {v!r}")
    return values


def parse_gate(entry, source: str) -> Gate:
    if isinstance(entry, str):
        entry = {"check": entry}
    check_keys(entry, _GATE_KEYS, source, "gates")
    if "check" not in entry:
        raise ConfigError(f"{source}: a gate needs `check`, e.g. \"fad-vggish@audioldm <= 3.0\"")
    m = _GATE_RE.match(str(entry["check"]))
    if not m:
        raise ConfigError(f"{source}: gate {entry['check']!r} is not of the form 'METRIC@PRESET OP NUMBER' "
                          "with OP one of <=, >=, <, >")
    return Gate(m["metric"], m["op"], float(m["value"]), entry.get("generator"), entry.get("label"))


def _expand_checkpoints(patterns, base_dir: Path, source: str, name: str, training: dict) -> list[str | None]:
    if patterns is None:
        return [None]
    out: list[str | None] = []
    for pattern in _as_list(patterns, source, f"generators.{name}.checkpoints", str):
        if pattern.startswith("training:"):  # checkpoints of a [training.RUN] the suite trains itself
            from bench.training.suite_runs import expand_training_checkpoints

            out.extend(expand_training_checkpoints(pattern, training, source, name))
            continue
        if pattern.startswith("hf://"):  # a hub repo id (e.g. hf://cvssp/audioldm2): not a path, no glob
            out.append(pattern)
            continue
        full = pattern if Path(pattern).is_absolute() else str(base_dir / pattern)
        matches = sorted(glob.glob(full)) if glob.has_magic(full) else [full]
        if not matches:
            raise ConfigError(f"{source}: generator {name!r}: checkpoint pattern {pattern!r} matches no file")
        out.extend(matches)
    return out


def _scalar(opt: dict, key: str, kind, default, where: str):
    value = opt.get(key, default)
    if not isinstance(value, kind) or isinstance(value, bool):
        raise ConfigError(f"{where}: {key} must be {getattr(kind, '__name__', 'a number')}, got {value!r}")
    return value


def _check_grid(cells: list[Cell], source: str) -> None:
    """Every value of every cell, checked before any work: all problems at once."""
    from bench.core.resample import NO_RESAMPLING, RESAMPLERS
    from generators.base import generation_problems

    problems: list[str] = []
    for c in cells:
        found = generation_problems(c.duration_s, c.sample_rate, c.steps, c.samples_per_prompt, c.guidance, c.seed)
        if c.batch_size < 1:
            found.append(f"batch_size must be >= 1, got {c.batch_size}")
        if c.resampler not in (*RESAMPLERS, NO_RESAMPLING):
            found.append(f"unknown resampler {c.resampler!r} (known: {', '.join((*RESAMPLERS, NO_RESAMPLING))})")
        problems += [p for p in (f"generator {c.label!r}: {f}" for f in found) if p not in problems]
    if problems:
        raise ConfigError(f"{source}: {len(problems)} invalid generation value(s): " + "; ".join(problems))


def parse_suite(raw: dict, source: str, base_dir: Path, path: Path | None = None) -> Suite:
    check_keys(raw, _TOP_KEYS, source, "")
    for required in ("reference", "generators", "metrics"):
        if required not in raw:
            raise ConfigError(f"{source}: missing required key {required!r}")
    generation = raw.get("generation", {})
    check_keys(generation, _GENERATION_KEYS, source, "generation")
    prompts = parse_table(PromptsSpec, raw.get("prompts"), source, "prompts")
    weights = parse_table(WeightsSpec, raw.get("weights"), source, "weights")
    from metrics.backbones.base import check_backbone_names

    check_backbone_names(weights.checkpoints, f"{source}: [weights] checkpoints")
    scoring = parse_table(ScoringSpec, raw.get("scoring"), source, "scoring")
    tracking = parse_table(TrackingSpec, raw.get("tracking"), source, "tracking")
    from bench.training.suite_runs import check_evaluators_table

    evaluators = check_evaluators_table(raw.get("evaluators", {}), source)
    executor = parse_executor(raw.get("executor"), source)
    from bench.training.suite_runs import check_training_table

    training = check_training_table(raw.get("training", {}), source)

    metrics = _as_list(raw["metrics"], source, "metrics", str)
    if not metrics:
        raise ConfigError(f"{source}: `metrics` is empty")
    from metrics.registry import get_metric

    for m in metrics:
        get_metric(m)  # unknown names fail here, with a suggestion

    entries = raw["generators"]
    if not isinstance(entries, list) or not entries:
        raise ConfigError(f"{source}: `generators` must be a non-empty array of tables ([[generators]])")
    from generators.base import generator_traits

    cells: list[Cell] = []
    for i, entry in enumerate(entries):
        section = f"generators][{i}"
        check_keys(entry, _GENERATOR_KEYS, source, section)
        if ("name" in entry) == ("factory" in entry):
            raise ConfigError(f"{_where(source, section)}: give `name` (a registered generator) or `factory` "
                              "(\"module:function\" returning a generator), not both")
        name = entry.get("name") or entry["factory"]
        if "factory" in entry and ":" not in name:
            raise ConfigError(f"{_where(source, section)}: factory {name!r} must be \"module.path:function\"")
        try:
            traits = generator_traits(name)
        except ConfigError as exc:
            raise ConfigError(f"{source}: {exc}") from exc
        options = entry.get("options", {})
        if not isinstance(options, dict):
            raise ConfigError(f"{_where(source, section)}: `options` must be a table, got {options!r}")
        where = f"{source} generator {name!r}"
        # Existing audio (the reference set, a folder) is taken as it is: the suite's [generation] settings
        # are for generators that generate; only the generator's own table applies (a `sample_rates` there
        # resamples, recorded).
        opt = entry if traits.existing_audio else {**generation, **entry}
        defaults = {"seeds": [None], "sample_rates": [None], "duration_s": None} if traits.existing_audio else \
            {"seeds": [0], "sample_rates": [16000], "duration_s": 4.0}
        duration = opt.get("duration_s", defaults["duration_s"])
        for ckpt in _expand_checkpoints(entry.get("checkpoints"), base_dir, source, name, training):
            for seed in _as_list(opt.get("seeds", defaults["seeds"]), where, "seeds", int):
                for steps in _as_list(opt.get("steps", [None]), where, "steps", int):
                    for guidance in _as_list(opt.get("guidance", [None]), where, "guidance", (int, float)):
                        for rate in _as_list(opt.get("sample_rates", defaults["sample_rates"]), where,
                                             "sample_rates", int):
                            cells.append(Cell(
                                generator=name, label=str(entry.get("label", name)), checkpoint=ckpt,
                                seed=seed, steps=steps,
                                guidance=None if guidance is None else float(guidance),
                                sample_rate=rate,
                                duration_s=None if duration is None else
                                float(_scalar(opt, "duration_s", (int, float), duration, where)),
                                samples_per_prompt=_scalar(opt, "samples_per_prompt", int, 1, where),
                                resampler=_scalar({**generation, **entry}, "resampler", str, "soxr-vhq", where),
                                batch_size=_scalar(opt, "batch_size", int, 8, where), options=dict(options)))
    _check_grid(cells, source)
    ids = [c.id for c in cells]
    dupes = sorted({i for i in ids if ids.count(i) > 1})
    if dupes:
        raise ConfigError(f"{source}: the grid has duplicate cells {dupes}; give repeated generators a `label`")

    gates = [parse_gate(g, source) for g in raw.get("gates", [])]
    for gate in gates:
        if gate.metric not in metrics:
            raise ConfigError(f"{source}: gate {gate.text!r} refers to metric {gate.metric!r}, "
                              f"which the suite does not compute ({', '.join(metrics)})")
        if gate.generator and gate.generator not in {c.label for c in cells} | {c.generator for c in cells}:
            raise ConfigError(f"{source}: gate {gate.text!r} names generator {gate.generator!r}, "
                              "which is not in the suite")
        if gate.label and gate.label not in {c.label for c in cells}:
            raise ConfigError(f"{source}: gate {gate.text!r} names label {gate.label!r}, which no generator "
                              f"has (labels: {', '.join(sorted({c.label for c in cells}))})")

    name = str(raw.get("name", path.stem if path else "suite"))
    results_dir = Path(raw.get("results_dir", Path("bench-results") / name))
    return Suite(name=name, path=path, base_dir=base_dir, description=str(raw.get("description", "")),
                 results_dir=results_dir, reference=raw["reference"], prompts=prompts, cells=cells,
                 metrics=metrics, weights=weights, scoring=scoring, tracking=tracking, gates=gates, raw=raw,
                 evaluators=evaluators, executor=executor, training=training)


def suite_text(suite: Suite) -> str:
    """The TOML a suite was loaded from (the built-in quickstart's own file when it has no path)."""
    if suite.path is None:
        return resources.files("bench").joinpath("suites", f"{QUICKSTART}.toml").read_text()
    return Path(suite.path).read_text()


def load_suite(path: str | Path | None) -> Suite:
    """Load a suite file, or the embedded quickstart when `path` is None."""
    if path is None:
        text = resources.files("bench").joinpath("suites", f"{QUICKSTART}.toml").read_text()
        return parse_suite(_parse_toml(text, "quickstart (built in)"), "quickstart (built in)", Path.cwd())
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"suite file {path} does not exist")
    return parse_suite(_parse_toml(path.read_text(), str(path)), str(path), path.parent.resolve(), path)


def _parse_toml(text: str, source: str) -> dict:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{source}: invalid TOML: {exc}") from exc
