"""Outputs of `bench sanity`: the JSON report, its Markdown table, one PNG per metric, and an MLflow run.

The JSON report (bench.sanity.run_sanity) is the source of truth; the rest is rendered from it.
Untrained backbones stay labelled: the metric keys carry "[untrained]", the Markdown and the plots
say so in words, and the MLflow run is tagged bench.untrained=true.
"""
from __future__ import annotations

import json
import math
import re
from pathlib import Path

from bench.core.mlflow_store import experiment_id, open_client
from bench.core.cache import atomic_write_bytes, atomic_write_json
from bench.tracking import TrackingError, mlflow_key

# Verdicts that are listed as problems in reports.
PROBLEMS = ("insensitive", "non-monotone", "wrong-direction", "not-invariant")



def _json_safe(obj):
    """NaN/inf (a 2-point Spearman p-value, say) become null: the report must be strict JSON."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    return obj


def safe_name(key: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", key.replace("[untrained]", ".untrained"))


def write_report(report: dict, out_dir: Path) -> dict[str, Path]:
    """sanity.json, sanity.md and plots/<metric>.png (+ .pdf for papers) under out_dir; returns their paths."""
    out_dir = Path(out_dir)
    files = {"json": out_dir / "sanity.json", "markdown": out_dir / "sanity.md"}
    atomic_write_json(files["json"], _json_safe(report))
    atomic_write_bytes(files["markdown"], render_markdown(report).encode())
    for metric_id, info in report["metrics"].items():
        path = out_dir / "plots" / f"{safe_name(info['key'])}.png"
        plot_metric(report, metric_id, path)
        files[f"plot:{metric_id}"] = path
    return files


def _backbone_line(info: dict) -> str:
    b = info["backbone"]
    if info["untrained"]:
        return f"UNTRAINED {b.get('backbone', '?')} (seeded random weights, seed {b.get('seed')})"
    return f"{b.get('backbone', '?')} {b.get('file', '')} sha256 {str(b.get('sha256', ''))[:12]}"


def _num(value: float) -> str:
    return f"{value:.4g}"


def render_markdown(report: dict) -> str:
    ref = report["reference"]
    boot = report["bootstrap"]
    ci = (f"{boot['resamples']} bootstrap resamples, {boot['level']:.0%} CIs (seed {boot['seed']})"
          if boot["resamples"] else "no bootstrap: significance is judged on values alone")
    lines = [f"# Sanity checks: metric(perturbed {ref['name']} vs clean {ref['name']})", "",
             f"Reference `{ref['source']}`: {ref['n_clips']} clips, fingerprint `{ref['fingerprint'][:16]}`. "
             f"Perturbation seed {report['perturbation_seed']}; {ci}.", ""]
    for metric_id, info in report["metrics"].items():
        lines.append(f"- `{info['key']}` ({info['direction']} is better): {_backbone_line(info)}")
    if report["untrained"]:
        lines += ["", "**Untrained backbone**: these curves test the pipeline's sensitivity, not the "
                      "published metric; fetch the real weights for numbers you report."]
    lines += ["", f"| metric | perturbation | levels | expected | values ({boot['level']:.0%} CI at the strongest) "
                  "| Spearman ρ | monotone in CI | verdict |", "|---|---|---|---|---|---|---|---|"]
    for r in report["results"]:
        values = " → ".join(_num(v) for v in r["values"])
        if r["ci"]:
            values += f" [{_num(r['ci'][-1][0])}, {_num(r['ci'][-1][1])}]"
        verdict = f"**{r['verdict']}**" if r["verdict"] in PROBLEMS else r["verdict"]
        if r["required"]:
            verdict += " (required: " + ("PASS" if r["passed"] else "FAIL") + ")"
        levels = ", ".join("clean" if i == 0 else str(v) for i, v in enumerate(r["levels"]))
        lines.append(f"| {r['key']} | {r['perturbation']} | {levels} ({r['unit']}) | {r['expected']} | {values} "
                     f"| {r['spearman']['rho']:+.2f} | {'yes' if r['monotone_within_ci'] else 'no'} | {verdict} |")
    lines.append("")
    if report["problems"]:
        lines.append("Not as expected (reported, not hidden): " + "; ".join(report["problems"]) + ".")
    else:
        lines.append("Every metric reacted as expected.")
    if report["failed_requirements"]:
        lines.append(f"Required sensitivity FAILED: {', '.join(report['failed_requirements'])} (exit code 1).")
    return "\n".join(lines) + "\n"


def plot_metric(report: dict, metric_id: str, path: Path) -> None:
    """One panel per perturbation: the curve from the clean set to the strongest level, CIs as a band."""
    from matplotlib.figure import (
        Figure,  # no pyplot: renders with Agg, touches no global backend state
    )

    info = report["metrics"][metric_id]
    results = [r for r in report["results"] if r["metric"] == metric_id]
    cols = min(3, len(results))
    rows = -(-len(results) // cols)
    fig = Figure(figsize=(4.2 * cols, 3.2 * rows + 0.9), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    for ax, r in zip(axes, results):
        x = list(range(len(r["values"])))
        problem = r["verdict"] in PROBLEMS
        color = "tab:red" if problem else "tab:blue"
        if r["ci"]:
            ax.fill_between(x, [c[0] for c in r["ci"]], [c[1] for c in r["ci"]], color=color, alpha=0.2,
                            linewidth=0, label=f"{report['bootstrap']['level']:.0%} CI")
        ax.plot(x, r["values"], marker="o", color=color, label="value")
        ax.set_xticks(x, ["clean" if i == 0 else str(v) for i, v in enumerate(r["levels"])])
        ax.set_xlabel(f"{r['unit']} (stronger →)")
        ax.set_title(f"{r['perturbation']}: {r['verdict']} (expected {r['expected']}, ρ={r['spearman']['rho']:+.2f})",
                     fontsize=9, color="tab:red" if problem else "black")
        ax.grid(alpha=0.3)
    for ax in axes[len(results):]:
        ax.set_visible(False)
    axes[0].set_ylabel(info["key"])
    axes[0].legend(fontsize=8, loc="upper left")
    title = f"{info['key']}: perturbed {report['reference']['name']} vs clean ({report['reference']['n_clips']} clips)"
    if info["untrained"]:
        title += "\nUNTRAINED backbone (seeded random weights): pipeline check, not the published metric"
    fig.suptitle(title, fontsize=10)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, metadata={"Software": None})  # no version stamp: reruns give identical files
    fig.savefig(path.with_suffix(".pdf"), metadata={"Creator": None, "Producer": None, "CreationDate": None})


def log_report(report: dict, tracking_uri: str, experiment: str, files: dict[str, Path],
               artifact_dir: Path | None = None) -> str:
    """One MLflow run per sanity check: curves as metric histories (step = level index), verdicts as tags,
    the report and plots as artifacts. Returns the run id."""
    try:
        from mlflow.entities import Metric, Param, RunTag

        client = open_client(tracking_uri)
        # Artifacts beside a local store; a server keeps its own artifact location.
        exp_id = experiment_id(client, experiment, artifact_dir if tracking_uri.startswith("sqlite") else None)
        ref = report["reference"]
        run_id = client.create_run(exp_id, run_name=f"sanity {ref['name']}").info.run_id
        metrics, tags = [], {
            "bench.kind": "sanity", "bench.untrained": "true" if report["untrained"] else "false",
            "bench.metrics": json.dumps([m["key"] for m in report["metrics"].values()]),
            "bench.sanity.failed_requirements": json.dumps(report["failed_requirements"]),
            "bench.sanity.exit_code": str(report["exit_code"])}
        for info in report["metrics"].values():
            tags[f"bench.metric.{mlflow_key(info['key'])}.backbone"] = _backbone_line(info)
        for r in report["results"]:
            key = f"sanity.{mlflow_key(r['key'])}.{r['perturbation']}"
            metrics += [Metric(key, float(v), 0, step) for step, v in enumerate(r["values"])]
            metrics.append(Metric(f"{key}.spearman_rho", r["spearman"]["rho"], 0, 0))
            tags[f"bench.sanity.verdict.{mlflow_key(r['key'])}.{r['perturbation']}"] = r["verdict"]
        params = {"reference_set": ref["name"], "reference_fingerprint": ref["fingerprint"],
                  "reference_source": ref["source"][:500], "perturbation_seed": str(report["perturbation_seed"]),
                  "bootstrap": str(report["bootstrap"]["resamples"])}
        for name, p in report["perturbations"].items():
            params[f"levels.{name}"] = json.dumps(p["levels"])[:500]
        client.log_batch(run_id, metrics=metrics, params=[Param(k, v) for k, v in params.items()],
                         tags=[RunTag(k, v) for k, v in tags.items()])
        for name, path in files.items():
            client.log_artifact(run_id, str(path), "plots" if name.startswith("plot:") else None)
        client.set_terminated(run_id)
        return run_id
    except Exception as exc:  # MLflow raises many types (HTTP, SQL, REST); all mean "not logged"
        raise TrackingError(f"could not log the sanity report to MLflow at {tracking_uri}: "
                            f"{type(exc).__name__}: {exc}") from exc
