"""Compare two recorded results (checkpoints, generators) metric by metric, with a paired bootstrap.

    bench compare RECORD_A RECORD_B [--level 0.95] [--bootstrap N] [--format json]

RECORD_A and RECORD_B are RunRecords (`bench run`, RESULTS/records/*.json) or `bench score` records.
For every metric both records report on the same protocol, backbone weights and reference set, the
sets the records name are reopened and embedded again (the embedding cache answers), and the
difference metric(A) - metric(B) is bootstrapped:
- paired, when A and B were generated from the same prompts (clip "x#k" is sample k of prompt "x"):
  each resample draws prompts with replacement and applies the same draw to A's and B's clips, and to
  the reference clips when the reference ids are those prompts; otherwise the reference is drawn once
  per resample and shared by A and B;
- independent, when the prompt sets differ: A's and B's prompts are drawn separately (the reference
  draw is still shared).
The interval is the basic (bias-corrected) bootstrap interval, as metrics.bootstrap: it covers the
difference of the POPULATION values (the FD bias of each side is corrected, not assumed to cancel); the
verdict says which
record is better when the interval excludes 0 (using the metric's direction), else "no significant
difference at <level>".
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import math
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qsl

import numpy as np

from bench.cli_args import add_weights_arguments
from bench.core.clipsets import ClipSet
from bench.core.clip_sources import open_clip_set
from bench.core.errors import BenchError, ConfigError
from bench.core.records import RunRecord, read_record
from bench.scoring import embed_captions, embed_set
from metrics.backbones.base import WeightsChoice, load_backbone
from metrics.bootstrap import basic_interval
from metrics.frechet import StackedClips
from metrics.inputs import ScoreOptions, SetEmbeddings, without_sample_suffix
from metrics.kad import KADStats
from metrics.registry import MetricDef, get_metric

SCHEMA = "bench.compare/1"
_SYNTHETIC_PARAMS = {"n_clips": int, "sample_rate": int, "duration_s": float, "seed": int}
_REPRODUCED_RTOL = 1e-6
CI_METHOD = ("basic (bias-corrected) bootstrap of A - B: [2 d - q(1 - a/2), 2 d - q(a/2)] over the resampled "
             "differences, as metrics.bootstrap; what is resampled: see `resampling`")
CI_COVERS = "the difference between A's and B's population values of the metric"


@dataclass(frozen=True)
class CompareOptions:
    level: float = 0.95
    bootstrap: int = 500
    seed: int = 0
    metrics: tuple[str, ...] = ()  # metric ids to compare; default: every shared one
    local_files: tuple[tuple[str, str], ...] = ()  # --checkpoint NAME=PATH for pretrained backbones
    cache_root: Path | None = None
    allow_download: bool | None = None
    workers: int = 2
    progress: bool = False

    def __post_init__(self) -> None:
        if not 0 < self.level < 1:
            raise ConfigError(f"--level must lie in (0, 1), got {self.level}")
        if self.bootstrap < 2:
            raise ConfigError(f"--bootstrap must be >= 2, got {self.bootstrap}")


# ------------------------------------------------------------------------------------------- records

def record_label(record: RunRecord) -> str:
    return f"{record.label} (cell {record.cell_id})"


def _card(result: dict) -> dict:
    b = result["backbone"]
    if result["untrained"]:
        return {"backbone": b.get("backbone"), "weights": "untrained", "seed": b.get("seed"), "init": b.get("init")}
    return {"backbone": b.get("backbone"), "weights": "pretrained", "sha256": b.get("sha256")}


def comparability_problems(a: dict, b: dict) -> list[str]:
    """Why two results of the same metric id cannot be compared (empty: they can)."""
    mid, problems = a["metric"], []
    if a["untrained"] != b["untrained"]:
        which = "A" if a["untrained"] else "B"
        problems.append(f"{mid}: {which} used an untrained (random-weight) backbone and the other pretrained "
                        "weights; their values measure different things")
    elif _card(a) != _card(b):
        problems.append(f"{mid}: different backbone weights (A {_card(a)}, B {_card(b)})")
    if a["metric_version"] != b["metric_version"]:
        problems.append(f"{mid}: metric version {a['metric_version']} (A) vs {b['metric_version']} (B)")
    pa, pb = a["protocol"], b["protocol"]
    if (pa["id"], pa["version"]) != (pb["id"], pb["version"]):
        problems.append(f"{mid}: protocol {pa['id']} v{pa['version']} (A) vs {pb['id']} v{pb['version']} (B)")
    ra, rb = a.get("reference"), b.get("reference")
    if (ra or {}).get("fingerprint") != (rb or {}).get("fingerprint"):
        problems.append(f"{mid}: different reference sets (A: {(ra or {}).get('source')} fingerprint "
                        f"{str((ra or {}).get('fingerprint'))[:12]}, B: {(rb or {}).get('source')} fingerprint "
                        f"{str((rb or {}).get('fingerprint'))[:12]}); distances to different references "
                        "are not comparable")
    return problems


def reopen_set(summary: dict, record_path: Path, role: str) -> ClipSet:
    """The clip set a record's result was computed on, checked against its recorded fingerprint."""
    kind, source = summary.get("kind"), summary.get("source")
    where = f"{record_path}: {role} set"
    if kind == "synthetic":
        name, _, query = source.removeprefix("builtin:").partition("?")
        params = {}
        for key, value in parse_qsl(query):
            if key not in _SYNTHETIC_PARAMS:
                raise BenchError(f"{where} {source!r}: unknown parameter {key!r}")
            params[key] = _SYNTHETIC_PARAMS[key](value)
        clipset = open_clip_set({"builtin": name, **params}, Path.cwd(), where=where)
    elif kind in ("manifest", "directory"):
        path = Path(source).expanduser()
        # Paths in records are as the run saw them (often relative to where it ran): try that, then
        # relative to the record's folder and its parents.
        candidates = [path] + ([] if path.is_absolute() else
                               [parent / path for parent in Path(record_path).resolve().parents])
        found = next((c for c in candidates if c.exists()), None)
        if found is None:
            raise BenchError(f"{where} {source!r} no longer exists (also looked relative to the record's "
                             "folders); run `bench compare` from where the record was made or restore the files")
        clipset = open_clip_set(found, Path.cwd(), where=where)
    else:
        raise BenchError(f"{where} is of kind {kind!r}; only manifests, folders and builtin sets can be reopened")
    if clipset.fingerprint() != summary.get("fingerprint"):
        raise BenchError(f"{where} {source!r} has changed since the record was written (fingerprint "
                         f"{clipset.fingerprint()[:12]}, recorded {str(summary.get('fingerprint'))[:12]}); the "
                         "comparison needs the exact clips that were scored")
    return clipset


# ------------------------------------------------------------------------------------------- resampling

def prompt_of(clip_id: str) -> str:
    return without_sample_suffix(clip_id)


class PromptDraws:
    """Bootstrap draws over prompts: one multinomial per resample, applied to every set tied to it."""

    def __init__(self, ids_a: list[str], ids_b: list[str], ids_ref: list[str] | None):
        prompts_a, prompts_b = sorted({prompt_of(i) for i in ids_a}), sorted({prompt_of(i) for i in ids_b})
        self.paired = prompts_a == prompts_b
        self.groups = [prompts_a] if self.paired else [prompts_a, prompts_b]
        index = [{p: k for k, p in enumerate(g)} for g in self.groups]
        self.map_a = np.array([index[0][prompt_of(i)] for i in ids_a], np.int64)
        self.map_b = np.array([index[-1][prompt_of(i)] for i in ids_b], np.int64)
        self.ref_tied = self.paired and ids_ref is not None and sorted(ids_ref) == prompts_a
        self.map_ref = np.array([index[0][i] for i in ids_ref], np.int64) if self.ref_tied else None
        self.n_ref = None if ids_ref is None else len(ids_ref)
        self.shared_prompts = len(set(prompts_a) & set(prompts_b))

    def draw(self, rng: np.random.Generator):
        uniform = lambda n: rng.multinomial(n, np.full(n, 1.0 / n))  # noqa: E731 (as metrics.bootstrap)
        counts = [uniform(len(g)) for g in self.groups]
        ref = None
        if self.n_ref is not None:
            ref = counts[0][self.map_ref] if self.ref_tied else uniform(self.n_ref)
        return counts[0][self.map_a], counts[-1][self.map_b], ref

    def describe(self) -> dict:
        if self.paired:
            mode = f"paired over {len(self.groups[0])} shared prompts"
        else:
            mode = (f"independent: the prompt sets differ ({len(self.groups[0])} in A, {len(self.groups[1])} in B, "
                    f"{self.shared_prompts} shared), so A's and B's prompts are drawn separately")
        ref = (None if self.n_ref is None else "reference clips drawn with their prompts" if self.ref_tied
               else "reference clips drawn once per resample, the same draw for A and B")
        return {"mode": "paired" if self.paired else "independent", "prompts_a": len(self.groups[0]),
                "prompts_b": len(self.groups[-1]), "shared_prompts": self.shared_prompts, "reference": ref,
                "text": mode + (f"; {ref}" if ref else "")}


def repeat_clips(emb: SetEmbeddings, counts: np.ndarray) -> SetEmbeddings:
    """The set with clip i taken counts[i] times; copy j of "x#k" becomes "x~j#k" so pairs stay pairs."""
    idx = np.repeat(np.arange(len(emb.clip_ids)), counts)
    seen: dict[int, int] = {}
    ids = []
    for i in idx:
        j = seen[i] = seen.get(i, -1) + 1
        base, sep, sample = emb.clip_ids[i].partition("#")
        ids.append(f"{base}~{j}{sep}{sample}")
    return SetEmbeddings(emb.set_info, ids, [emb.captions[i] for i in idx],
                         {name: [v[i] for i in idx] for name, v in emb.outputs.items()},
                         [emb.durations_s[i] for i in idx], [emb.silent[i] for i in idx],
                         None if emb.text is None else emb.text[idx])


def resampled_statistic(metric: MetricDef, gen: SetEmbeddings, ref: SetEmbeddings | None, options: ScoreOptions):
    """(gen_counts, ref_counts) -> metric value on the sets with clips taken that many times.

    Fréchet and KAD metrics reweight precomputed sums; any other metric is recomputed on repeated clips.
    """
    out = metric.output
    if metric.family == "frechet":
        g, r = StackedClips(gen.per_clip(out)), StackedClips(ref.per_clip(out))
        return lambda cg, cr: g.frechet(r, cg, cr)
    if metric.family == "kad":
        return KADStats.from_clips(gen.per_clip(out), ref.per_clip(out)).value
    quiet = dataclasses.replace(options, bootstrap=0)
    return lambda cg, cr: metric.compute(repeat_clips(gen, cg), None if ref is None else repeat_clips(ref, cr),
                                         quiet)["value"]


def percent(level: float) -> str:
    return f"{100 * level:g}%"


def verdict(low: float, high: float, direction: str, level: float) -> str:
    if low > 0 or high < 0:
        a_lower = high < 0
        return "A better" if a_lower == (direction == "lower") else "B better"
    return f"no significant difference at {percent(level)}"


# ------------------------------------------------------------------------------------------- comparison

class _Sets:
    """Clip sets reopened once per (kind, source, fingerprint)."""

    def __init__(self):
        self._open: dict[tuple, ClipSet] = {}

    def get(self, summary: dict, record_path: Path, role: str) -> ClipSet:
        key = (summary.get("kind"), summary.get("source"), summary.get("fingerprint"))
        if key not in self._open:
            self._open[key] = reopen_set(summary, record_path, role)
        return self._open[key]


def _weights(result: dict, options: CompareOptions) -> WeightsChoice:
    if result["untrained"]:
        return WeightsChoice(mode="untrained", seed=int(result["backbone"]["seed"]), cache_root=options.cache_root)
    return WeightsChoice(mode="pretrained", local_files=options.local_files, cache_root=options.cache_root,
                         allow_download=options.allow_download)


def _check_backbone(backbone, result: dict, record_path: Path) -> None:
    got = _card({"untrained": backbone.untrained, "backbone": backbone.provenance})
    if got != _card(result):
        raise BenchError(f"{record_path}: {result['metric']} was computed with {_card(result)}, but the "
                         f"{backbone.id} weights available now are {got}; pass the original checkpoint with "
                         f"--checkpoint {backbone.id}=PATH")


def _embed(metric, clipset, backbone, result, options, weights, text=False):
    opts = ScoreOptions(weights=weights, cache_root=options.cache_root, batch_size=int(result["batch_size"]),
                        workers=options.workers, bootstrap=0, bootstrap_seed=int(result["bootstrap"]["seed"]),
                        ci_level=options.level, progress=options.progress)
    emb = embed_set(clipset, metric.protocol, backbone, opts)
    if text:
        emb.text = embed_captions(emb, metric.protocol, backbone, opts)
    return emb, opts


def _reproduced(recorded: float, recomputed: float) -> bool:
    return math.isclose(recorded, recomputed, rel_tol=_REPRODUCED_RTOL, abs_tol=1e-9)


def compare_metric(metric: MetricDef, ra: dict, rb: dict, path_a: Path, path_b: Path, sets: _Sets,
                   options: CompareOptions) -> dict:
    weights = _weights(ra, options)
    backbone = load_backbone(metric.protocol.backbone, weights)
    _check_backbone(backbone, ra, path_a)
    _check_backbone(backbone, rb, path_b)
    text = metric.kind == "text-audio"
    gen_a, opts = _embed(metric, sets.get(ra["generated"], path_a, "generated"), backbone, ra, options, weights, text)
    gen_b, _ = _embed(metric, sets.get(rb["generated"], path_b, "generated"), backbone, rb, options, weights, text)
    ref = None
    if metric.needs_reference:
        ref, _ = _embed(metric, sets.get(ra["reference"], path_a, "reference"), backbone, ra, options, weights)
    draws = PromptDraws(gen_a.clip_ids, gen_b.clip_ids, ref.clip_ids if ref is not None else None)
    if metric.kind == "paired" and not draws.ref_tied:
        raise BenchError(f"{metric.id} pairs clips by id, so its bootstrap must draw reference clips with their "
                         "prompts: A and B need the same prompts, and the reference ids must be those prompts")
    # The same internal randomness (e.g. FAD-inf's subsets) for A and B: A's recorded seed.
    stat_a = resampled_statistic(metric, gen_a, ref, opts)
    stat_b = resampled_statistic(metric, gen_b, ref, opts)
    ones = [None if e is None else np.ones(len(e.clip_ids), np.int64) for e in (gen_a, gen_b, ref)]
    value_a, value_b = stat_a(ones[0], ones[2]), stat_b(ones[1], ones[2])
    estimate = value_a - value_b

    rng = np.random.default_rng(options.seed)  # the same draws for every metric
    diffs, failed = [], 0
    for _ in range(options.bootstrap):
        ca, cb, cr = draws.draw(rng)
        try:
            diffs.append(stat_a(ca, cr) - stat_b(cb, cr))
        except (ValueError, ArithmeticError):  # e.g. a resample with too few embeddings for a covariance
            failed += 1
    if len(diffs) < 2:
        raise BenchError(f"{metric.id}: {failed} of {options.bootstrap} resamples could not be scored; the sets "
                         "are too small to bootstrap")
    low, high, bias, _ = basic_interval(estimate, np.asarray(diffs), options.level)

    warnings = []
    for side, result, value in (("A", ra, value_a), ("B", rb, value_b)):
        if not _reproduced(result["value"], value):
            warnings.append(f"{side}: recomputed {value:.6g} differs from the recorded {result['value']:.6g} "
                            "(different cache, batch size or seed); the comparison uses the recomputed value")
    if failed:
        warnings.append(f"{failed} of {options.bootstrap} resamples could not be scored and were left out")
    return {"key": ra["key"], "metric": metric.id, "direction": metric.direction, "kind": metric.kind,
            "a": {"recorded": ra["value"], "recomputed": value_a, "n_clips": len(gen_a.clip_ids)},
            "b": {"recorded": rb["value"], "recomputed": value_b, "n_clips": len(gen_b.clip_ids)},
            "difference": estimate,
            "ci": {"low": low, "high": high, "level": options.level, "n_resamples": len(diffs),
                   "seed": options.seed, "bias": bias, "bias_corrected": estimate - bias,
                   "method": CI_METHOD, "covers": CI_COVERS},
            "verdict": verdict(low, high, metric.direction, options.level),
            "resampling": draws.describe(), "warnings": warnings}


def compare_records(path_a: Path, path_b: Path, options: CompareOptions) -> dict:
    path_a, path_b = Path(path_a), Path(path_b)
    rec_a, rec_b = read_record(path_a), read_record(path_b)
    by_a = {r["metric"]: r for r in rec_a.metrics}
    by_b = {r["metric"]: r for r in rec_b.metrics}
    for m in options.metrics:
        missing = [side for side, by in (("A", by_a), ("B", by_b)) if m not in by]
        if missing:
            raise ConfigError(f"--metric {m}: not in record {' and '.join(missing)} "
                              f"(A has {', '.join(sorted(by_a))}; B has {', '.join(sorted(by_b))})")
    shared = [m for m in by_a if m in by_b and (not options.metrics or m in options.metrics)]
    if not shared:
        raise BenchError(f"{path_a} and {path_b} share no metric (A: {', '.join(sorted(by_a))}; "
                         f"B: {', '.join(sorted(by_b))})")
    problems = [p for m in shared for p in comparability_problems(by_a[m], by_b[m])]
    if problems:
        raise BenchError("the records cannot be compared:\n  " + "\n  ".join(problems))
    sets = _Sets()
    results = [compare_metric(get_metric(m), by_a[m], by_b[m], path_a, path_b, sets, options) for m in shared]
    return {"schema": SCHEMA,
            "a": {"path": str(path_a), "label": record_label(rec_a)},
            "b": {"path": str(path_b), "label": record_label(rec_b)},
            "level": options.level, "resamples": options.bootstrap, "seed": options.seed,
            "difference": "A - B", "metrics": results,
            "only_in_a": sorted(set(by_a) - set(by_b)), "only_in_b": sorted(set(by_b) - set(by_a))}


# ------------------------------------------------------------------------------------------- output

def _num(x: float) -> str:
    return f"{x:.4g}" if abs(x) >= 1e4 or (x != 0 and abs(x) < 1e-3) else f"{x:.4f}"


def render_text(report: dict) -> str:
    lines = [f"A: {report['a']['path']}  {report['a']['label']}",
             f"B: {report['b']['path']}  {report['b']['label']}",
             f"difference A - B; {report['resamples']} bootstrap resamples (seed {report['seed']}); "
             f"verdicts at the {percent(report['level'])} level", ""]
    ci_head = f"{percent(report['level'])} CI of A-B"
    rows = [("metric", "better", "A", "B", "A-B", ci_head, "verdict")]
    for m in report["metrics"]:
        ci = m["ci"]
        rows.append((m["key"], m["direction"], _num(m["a"]["recomputed"]), _num(m["b"]["recomputed"]),
                     _num(m["difference"]), f"[{_num(ci['low'])}, {_num(ci['high'])}]", m["verdict"]))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        lines.append("  ".join(cell.ljust(w) for cell, w in zip(r, widths)).rstrip())
    lines.append("")
    for m in report["metrics"]:
        lines.append(f"{m['key']}: {m['resampling']['text']}")
        lines.extend(f"  warning: {w}" for w in m["warnings"])
    for side in ("a", "b"):
        if report[f"only_in_{side}"]:
            lines.append(f"only in {side.upper()} (not compared): {', '.join(report[f'only_in_{side}'])}")
    return "\n".join(lines)


def add_parser(sub) -> None:
    cp = sub.add_parser("compare", help="compare two records metric by metric (paired bootstrap over prompts)",
                        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    cp.add_argument("record_a", help="RunRecord or `bench score` record JSON (A)")
    cp.add_argument("record_b", help="RunRecord or `bench score` record JSON (B)")
    cp.add_argument("--level", type=float, default=0.95, help="confidence level (default: %(default)s)")
    cp.add_argument("--bootstrap", type=int, default=500, help="bootstrap resamples (default: %(default)s)")
    cp.add_argument("--bootstrap-seed", type=int, default=0, help="bootstrap seed (default: %(default)s)")
    cp.add_argument("--metric", action="append", help="compare only this metric id (repeatable)")
    add_weights_arguments(cp, untrained=False)  # weights come from the records; a local file must match
    cp.add_argument("--workers", type=int, default=2, help="decoding threads")
    cp.add_argument("--format", choices=("text", "json"), default="text")
    cp.add_argument("--quiet", action="store_true", help="no progress output")
    cp.set_defaults(func=cmd_compare)


def cmd_compare(args) -> int:
    from bench.cli_args import cache_root, parse_checkpoints

    options = CompareOptions(level=args.level, bootstrap=args.bootstrap, seed=args.bootstrap_seed,
                             metrics=tuple(args.metric or ()), local_files=parse_checkpoints(args.checkpoint),
                             cache_root=cache_root(args), allow_download=False if args.offline else None,
                             workers=args.workers, progress=not args.quiet and args.format != "json")
    report = compare_records(Path(args.record_a), Path(args.record_b), options)
    print(json.dumps(report, indent=2) if args.format == "json" else render_text(report))
    return 0
