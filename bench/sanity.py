"""Perturbation sanity checks: does each metric react to what it claims to measure? (Diffsound V-C)

The reference set X is perturbed clip by clip (lazily, through ClipSet.synthesize) into X_f at each
level, and every metric scores X_f against X; ids are kept, so a paired metric pairs each perturbed
clip with its own clean clip. Every curve starts at the clean set (the perturbation's identity level).
Per (metric, perturbation) the report gives the curve with its bootstrap CIs, the Spearman rank
correlation of the values with the perturbation strength (positive: the value rises as the
perturbation gets stronger), and a verdict against the expected change:

- expected: the perturbation's default ("degrade", "invariant", "any"), overridden per metric by
  MetricDef.expected_sensitivity; "degrade" is "rise" for lower-is-better metrics and "fall" for
  higher-is-better ones. A pair the user declares with --require is judged as "degrade".
- significant: each of two levels' values lies outside the other's CI (without a bootstrap: the
  values differ).
- monotone within CI: no level is significantly on the wrong side of a weaker level.
- verdicts: sensitive (strongest level significantly worse than clean, monotone within CI),
  non-monotone, wrong-direction, insensitive; invariant / not-invariant; rises / falls / no-change.
No per-metric code here: everything comes from the metric registry and the perturbation registry.
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

import numpy as np

from bench.cli_args import add_weights_arguments
from bench.core.clipsets import ClipSet
from bench.core.errors import ConfigError
from bench.sanity_report import PROBLEMS
from bench.scoring import score
from metrics.inputs import ScoreOptions
from metrics.perturbations import (
    Perturbation,
    SetContext,
    apply,
    format_level,
    get_perturbation,
)
from metrics.registry import MetricDef, get_metric

SCHEMA = "bench.sanity-report/1"


def perturbed_set(reference: ClipSet, p: Perturbation, level: float, seed: int) -> ClipSet:
    """X_f: the reference clips, same ids and captions, each perturbed when loaded."""
    index = {c.id: i for i, c in enumerate(reference.clips)}
    context = SetContext(p.name, seed, len(reference), lambda j: reference.load(reference.clips[j]))

    def synthesize(clip):
        wave, rate = reference.load(clip.id)
        return apply(p, wave, rate, level, index[clip.id], context), rate

    tag = f"{p.name}={format_level(level)}"
    # path=None: ClipSet.load reads a clip's file when it has one, and must synthesize instead.
    clips = [dataclasses.replace(c, path=None, origin=f"{c.origin} [{tag}]") for c in reference.clips]
    return ClipSet(f"{reference.name}+{tag}", "perturbed",
                   f"{reference.source} | {tag} ({p.unit}), perturbation seed {seed}", clips, synthesize)


def expectation(metric: MetricDef, p: Perturbation, required: bool = False) -> str:
    """"rise", "fall", "invariant" or "any": what the metric should do as the perturbation grows."""
    expect = "degrade" if required else dict(metric.expected_sensitivity).get(p.name, p.expect)
    if expect == "degrade":
        return "rise" if metric.direction == "lower" else "fall"
    return expect


def analyse_curve(values, lows=None, highs=None, expected: str = "rise") -> dict:
    """Spearman correlation with strength, monotonicity within CI and a verdict for one curve.

    `values` are ordered weakest (clean) to strongest; `lows`/`highs` are CI bounds or None.
    """
    from scipy.stats import spearmanr

    v = np.asarray(values, np.float64)
    lo = v if lows is None else np.asarray(lows, np.float64)
    hi = v if highs is None else np.asarray(highs, np.float64)
    tol = 1e-9 * max(1.0, float(np.max(np.abs(v))))
    n = len(v)
    if np.ptp(v) > 0 and n > 1:
        result = spearmanr(np.arange(n), v)
        rho, p_value = float(result.statistic), float(result.pvalue)
    else:  # a flat curve has no rank correlation; report it as 0 rather than NaN
        rho, p_value = 0.0, 1.0

    def above(i, j):  # level j significantly above level i: each value outside the other's CI
        return v[j] > hi[i] + tol and v[i] < lo[j] - tol

    def below(i, j):
        return v[j] < lo[i] - tol and v[i] > hi[j] + tol

    up = any(above(0, j) for j in range(1, n))
    down = any(below(0, j) for j in range(1, n))
    rising = expected == "rise" or (expected in ("invariant", "any") and v[-1] >= v[0])
    forward, backward = (above, below) if rising else (below, above)
    monotone = not any(backward(i, j) for i in range(n) for j in range(i + 1, n))
    if expected in ("rise", "fall"):
        gains, losses = (up, down) if rising else (down, up)
        if forward(0, n - 1) and monotone:
            verdict = "sensitive"
        elif gains:
            verdict = "non-monotone"
        elif losses:
            verdict = "wrong-direction"
        else:
            verdict = "insensitive"
    elif expected == "invariant":
        verdict = "not-invariant" if up or down else "invariant"
    else:
        verdict = {(True, False): "rises", (False, True): "falls", (True, True): "non-monotone",
                   (False, False): "no-change"}[(up, down)]
    return {"spearman": {"rho": rho, "p_value": p_value}, "monotone_within_ci": bool(monotone),
            "significant_change": bool(up or down), "verdict": verdict}


def parse_requirements(items, metric_ids, perturbation_names) -> list[tuple[str, str]]:
    """--require METRIC:PERTURBATION pairs; both must be part of the run."""
    pairs = []
    for item in items or []:
        metric_id, sep, name = item.rpartition(":")
        if not sep or not metric_id or not name:
            raise ConfigError(f"--require {item!r}: expected METRIC:PERTURBATION, e.g. fad-vggish@audioldm:noise")
        get_metric(metric_id)
        get_perturbation(name)
        if metric_id not in metric_ids:
            raise ConfigError(f"--require {item!r}: metric {metric_id!r} is not scored; add --metric {metric_id}")
        if name not in perturbation_names:
            raise ConfigError(f"--require {item!r}: perturbation {name!r} is not run; add --perturbation {name} "
                              f"(or give no --perturbation to run them all)")
        pairs.append((metric_id, name))
    return pairs


def plan_levels(names, levels=None) -> dict[str, tuple[float, ...]]:
    """Each perturbation's levels (the given ones, else its defaults), identity included, weakest first."""
    plan = {}
    for name in names:
        p = get_perturbation(name)
        plan[name] = p.order(p.defaults if levels is None else levels)
    return plan


def run_sanity(reference: ClipSet, metric_ids: list[str], plan: dict[str, tuple[float, ...]],
               options: ScoreOptions, seed: int = 0, require=(), log=print) -> dict:
    """Score every metric on every perturbed level; return the report (see bench.sanity_report)."""
    if len(set(metric_ids)) != len(metric_ids):
        raise ConfigError(f"metric listed twice: {metric_ids}")
    metrics = {m: get_metric(m) for m in metric_ids}
    perturbations = {name: get_perturbation(name) for name in plan}
    plan = {name: perturbations[name].order(levels) for name, levels in plan.items()}  # clean first
    required = set(require)
    started = time.perf_counter()
    clean = score(metric_ids, reference, reference, options)  # every curve's identity point
    scored: dict[tuple[str, float], list[dict]] = {}
    for name, levels in plan.items():
        p = perturbations[name]
        for level in levels:
            if level == p.identity:
                scored[(name, level)] = clean
                continue
            scored[(name, level)] = score(metric_ids, perturbed_set(reference, p, level, seed), reference, options)
            log(f"{name} {format_level(level)} {p.unit}: " + ", ".join(
                f"{r['key']} {r['value']:.4g}" for r in scored[(name, level)]))

    results = []
    for k, (metric_id, metric) in enumerate(metrics.items()):
        for name, levels in plan.items():
            points = [scored[(name, level)][k] for level in levels]
            # Points of one curve come from sets of one size: compare them with the estimator's own spread
            # (draw_low/high), not with intervals for the population value.
            cis = [None if r["ci"] is None else {"low": r["ci"].get("draw_low", r["ci"]["low"]),
                                                 "high": r["ci"].get("draw_high", r["ci"]["high"])}
                   for r in points]
            has_ci = all(ci is not None for ci in cis)
            expected = expectation(metric, perturbations[name], (metric_id, name) in required)
            analysis = analyse_curve([r["value"] for r in points],
                                     [ci["low"] for ci in cis] if has_ci else None,
                                     [ci["high"] for ci in cis] if has_ci else None, expected)
            is_required = (metric_id, name) in required
            results.append({
                "metric": metric_id, "key": clean[k]["key"], "direction": metric.direction,
                "untrained": clean[k]["untrained"], "perturbation": name, "unit": perturbations[name].unit,
                "expected": expected, "levels": [format_level(v) for v in levels],
                "values": [r["value"] for r in points],
                "ci": [[ci["low"], ci["high"]] for ci in cis] if has_ci else None,
                **analysis,
                "required": is_required,
                "passed": analysis["verdict"] == "sensitive" if is_required else None,
            })
    failed = [f"{r['metric']}:{r['perturbation']}" for r in results if r["required"] and not r["passed"]]
    return {
        "schema": SCHEMA,
        "reference": reference.describe(),
        "perturbation_seed": seed,
        "perturbations": {name: {**perturbations[name].describe(), "levels": [format_level(v) for v in levels]}
                          for name, levels in plan.items()},
        "metrics": {m: {"key": r["key"], "direction": metrics[m].direction, "untrained": r["untrained"],
                        "backbone": r["backbone"], "protocol": r["protocol"]["id"]}
                    for m, r in zip(metric_ids, clean)},
        "untrained": any(r["untrained"] for r in clean),
        "bootstrap": {"resamples": options.bootstrap, "seed": options.bootstrap_seed, "level": options.ci_level},
        "results": results,
        "problems": [f"{r['metric']}:{r['perturbation']} {r['verdict']}" for r in results
                     if r["verdict"] in PROBLEMS],
        "failed_requirements": failed,
        "exit_code": 1 if failed else 0,
        "timing": {"seconds": round(time.perf_counter() - started, 3)},
    }


# ---------------------------------------------------------------------------------------- command line

DESCRIPTION = """Perturb a reference set at increasing levels and score metric(perturbed set vs clean set):
does each metric react to what it claims to measure? Reports each curve with bootstrap CIs, its
Spearman correlation with the perturbation strength, monotonicity within the CIs and a verdict
(sensitive, non-monotone, wrong-direction, insensitive; invariant, not-invariant; rises, falls,
no-change); writes OUT/sanity.json, OUT/sanity.md, OUT/plots/METRIC.png and an MLflow run."""


def _epilog() -> str:
    from metrics.perturbations import PERTURBATIONS

    # The built-ins only: loading plugins here would let a broken plugin break every `bench` command.
    rows = [f"  {p.name:<11} {p.unit}; default levels {' '.join(str(format_level(v)) for v in p.defaults)}; "
            f"expected: {p.expect}" for p in sorted(PERTURBATIONS.values(), key=lambda p: p.name)]
    return ("perturbations:\n" + "\n".join(rows) + "\n\"degrade\" means rise for lower-is-better metrics, "
            "fall for higher-is-better ones.\nexit codes: 0 ok, 1 a --require pair is not sensitive, 2 bad input, "
            "3 report saved but not tracked")


def add_parser(sub) -> None:
    sp = sub.add_parser("sanity", help="perturb a reference set and check each metric reacts as it should",
                        description=DESCRIPTION, epilog=_epilog(),
                        formatter_class=argparse.RawDescriptionHelpFormatter)
    sp.add_argument("--metric", action="append", required=True, help="metric id NAME@PROTOCOL (repeatable)")
    sp.add_argument("--reference", required=True, help="directory, manifest, or builtin:synthetic")
    sp.add_argument("--perturbation", action="append", help="perturbation name (repeatable; default: all)")
    sp.add_argument("--levels", type=float, nargs="+", metavar="LEVEL",
                    help="levels for every chosen perturbation, in its unit ('inf' allowed); default: each "
                         "perturbation's own. The clean set (identity level) is always included")
    sp.add_argument("--require", action="append", metavar="METRIC:PERTURBATION",
                    help="declare that METRIC must be sensitive to PERTURBATION; exit 1 if not (repeatable)")
    add_weights_arguments(sp)
    sp.add_argument("--perturbation-seed", type=int, default=0, help="seed of the perturbations' randomness")
    sp.add_argument("--bootstrap", type=int, default=100, help="bootstrap resamples for CIs (0: none)")
    sp.add_argument("--bootstrap-seed", type=int, default=0)
    sp.add_argument("--batch-size", type=int, default=32, help="backbone batch size")
    sp.add_argument("--workers", type=int, default=2, help="decoding threads")
    sp.add_argument("--out", default="bench-results/sanity", help="report directory (default: %(default)s)")
    sp.add_argument("--tracking-uri", help="MLflow tracking URI (default: sqlite in the report directory)")
    sp.add_argument("--experiment", default="sanity", help="MLflow experiment (default: %(default)s)")
    sp.add_argument("--no-tracking", action="store_true", help="do not log to MLflow")
    sp.add_argument("--quiet", action="store_true", help="no progress output")
    sp.set_defaults(func=cmd_sanity)


def cmd_sanity(args) -> int:
    from bench.cli_args import cache_root, weights_choice
    from bench.core.clip_sources import open_clip_set
    from bench.sanity_report import log_report, render_markdown, write_report
    from bench.core.mlflow_store import results_store_uri
    from bench.tracking import TrackingError
    from metrics.perturbations import all_perturbations

    names = args.perturbation or sorted(all_perturbations())
    if len(set(names)) != len(names):
        raise ConfigError(f"--perturbation listed twice: {names}")
    plan = plan_levels(names, args.levels)
    for m in args.metric:
        get_metric(m)  # a bad name fails before any work
    require = parse_requirements(args.require, args.metric, names)
    choice = weights_choice(args)
    if args.bootstrap == 1 or args.bootstrap < 0:
        raise ConfigError(f"--bootstrap must be 0 (no CIs) or >= 2, got {args.bootstrap}")
    options = ScoreOptions(weights=choice, cache_root=cache_root(args), batch_size=args.batch_size,
                           workers=args.workers, bootstrap=args.bootstrap, bootstrap_seed=args.bootstrap_seed,
                           progress=False)
    reference = open_clip_set(args.reference, Path.cwd())
    log = (lambda *a: None) if args.quiet else (lambda *a: print(*a, file=sys.stderr))
    report = run_sanity(reference, args.metric, plan, options, args.perturbation_seed, require, log)
    out = Path(args.out)
    files = write_report(report, out)
    print(render_markdown(report))
    code = report["exit_code"]
    if not args.no_tracking:
        uri = args.tracking_uri or results_store_uri(out)
        try:
            run_id = log_report(report, uri, args.experiment, files, out / "mlartifacts")
            print(f"MLflow: run {run_id} in experiment {args.experiment!r} at {uri}")
        except TrackingError as exc:
            print(f"error: {exc} (report kept in {out})", file=sys.stderr)
            code = code or 3
    print(f"report: {files['json']}  {files['markdown']}  plots: {out / 'plots'}")
    for pair in report["failed_requirements"]:
        metric_id, _, name = pair.rpartition(":")
        r = next(r for r in report["results"] if r["metric"] == metric_id and r["perturbation"] == name)
        print(f"FAIL  {r['key']} must be sensitive to {name} but is {r['verdict']} "
              f"(values {_curve(r)}; Spearman rho {r['spearman']['rho']:+.2f})", file=sys.stderr)
    if report["failed_requirements"]:
        print(f"{len(report['failed_requirements'])} required sensitivity check(s) FAILED", file=sys.stderr)
    return code


def _curve(result: dict) -> str:
    return " -> ".join(f"{v:.3g}" for v in result["values"])
