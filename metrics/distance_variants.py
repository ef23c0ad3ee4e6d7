"""FAD-inf and KAD for every Fréchet metric, on the same protocol and therefore the same cached embeddings.

For each registered metric of family "frechet" `NAME@PRESET` with NAME = "<head>-<backbone>" (e.g.
fad-vggish@audioldm, fd-panns@audioldm) this registers
- `<head>-inf-<backbone>@PRESET` (fad-inf-vggish@audioldm): FD extrapolated to infinite n (metrics.fad_inf);
- `kad-<backbone>@PRESET` (kad-vggish@audioldm): the unbiased kernel distance (metrics.kad).
Registration goes through metrics.registry's deriver hook, so Fréchet metrics registered later (other
built-in modules, plugins) get their variants too.
"""
from __future__ import annotations

import dataclasses
from functools import partial

import numpy as np

from metrics.bootstrap import bootstrap_interval, content_order
from metrics.frechet import frechet_metric
from metrics.fad_inf import CI_COVERS, CI_METHOD, fad_inf
from metrics.frechet import StackedClips
from metrics.kad import SCALE, KADStats
from metrics.registry import METRICS, MetricDef, add_metric_deriver, register_metric

FAD_INF_VERSION = 1
KAD_VERSION = 1
KAD_RULES = {"kernel": "gaussian exp(-|a-b|^2 / (2 sigma^2 + 1e-8))",
             "bandwidth_rule": "median Euclidean distance over all pairs of reference embeddings (lower median)",
             "estimator": "unbiased MMD^2 over embedding rows, x100 (kadtk); may be slightly negative when the "
                          "sets are close: reported as is",
             "scale": SCALE}
KAD_COVERS = ("the population MMD^2 x100 between the generated and reference distributions at the full reference "
              "set's bandwidth (KAD is unbiased; the bandwidth itself is not resampled)")
KAD_MIN_CLIPS_FOR_CI = 5


def fad_inf_metric(generated, reference, options, output: str = "embedding") -> dict:
    clips = generated.nonempty(output)
    # Subsets are drawn over rows in content order, so file names and order do not move the value or its CI.
    gen = np.concatenate([np.asarray(clips[i], np.float64) for i in content_order(clips)])
    ref = StackedClips(reference.nonempty(output)).stats()
    result = fad_inf(gen, ref, options.bootstrap_seed, level=options.ci_level)
    fit = result.pop("fit")
    details = {**result, "slope": fit["slope"], "r2": fit["r2"], "intercept_stderr": fit["intercept_stderr"],
               "subsampled": "generated embedding rows (clips in content order), with replacement; reference: all "
                             "embeddings"}
    ci = None
    if options.bootstrap > 0:
        ci = {"low": fit["low"], "high": fit["high"], "level": fit["level"], "method": CI_METHOD,
              "n_resamples": 0, "seed": options.bootstrap_seed, "covers": CI_COVERS}
    return {"value": fit["intercept"], "ci": ci, "details": details}


def kad_metric(generated, reference, options, output: str = "embedding") -> dict:
    gen, ref = generated.nonempty(output), reference.nonempty(output)
    with_ci = options.bootstrap > 0 and min(len(gen), len(ref)) >= KAD_MIN_CLIPS_FOR_CI
    stats = KADStats.from_clips(gen, ref, per_clip=with_ci)
    value = stats.value()
    ci = None
    details = {**KAD_RULES, "bandwidth": stats.bandwidth, "n_generated_embeddings": int(stats.len_y.sum()),
               "n_reference_embeddings": int(stats.len_x.sum())}
    if with_ci:
        # The bandwidth stays the full reference set's in every resample (a property of the metric).
        ci = bootstrap_interval(lambda counts: stats.value(counts[0], counts[1]),
                                [content_order(gen), content_order(ref)], options.bootstrap,
                                options.bootstrap_seed, KAD_COVERS, options.ci_level, estimate=value).to_dict()
    elif options.bootstrap > 0:
        details["ci_skipped"] = (f"no interval: a set has fewer than {KAD_MIN_CLIPS_FOR_CI} clips (a resample "
                                 "could hold a single distinct clip, leaving no pair to average)")
    return {"value": value, "ci": ci, "details": details}


def is_frechet(metric: MetricDef) -> bool:
    return metric.family == "frechet" or metric.compute is frechet_metric


def variant_names(name: str) -> tuple[str, str]:
    """("fad-inf-vggish", "kad-vggish") for "fad-vggish"; ("fd-inf", "kad-fd") for a bare "fd"."""
    head, sep, backbone = name.partition("-")
    return (f"{head}-inf-{backbone}", f"kad-{backbone}") if sep else (f"{name}-inf", f"kad-{name}")


def variants(base: MetricDef) -> list[MetricDef]:
    inf_name, kad_name = variant_names(base.name)
    inf = dataclasses.replace(
        base, name=inf_name, version=FAD_INF_VERSION, family="frechet-inf", min_items=4,
        compute=partial(fad_inf_metric, output=base.output),
        summary=f"{base.id} extrapolated to infinite n (fadtk FAD-inf: intercept of FD vs 1/n; R^2 recorded)",
        lineage=f"fadtk score_inf over {base.id}; {base.lineage}")
    kad = dataclasses.replace(
        base, name=kad_name, version=KAD_VERSION, family="kad", min_items=2,
        compute=partial(kad_metric, output=base.output),
        summary=f"KAD on {base.id}'s embeddings (unbiased Gaussian-kernel MMD x100, bandwidth from the reference)",
        lineage=f"kadtk (Chung et al. 2025) on {base.id}'s protocol; {base.lineage}")
    return [inf, kad]


def _derive(metric: MetricDef) -> None:
    if not is_frechet(metric):
        return
    for variant in variants(metric):
        existing = METRICS.get(variant.id)
        if existing is None:
            register_metric(variant)
        elif (existing.protocol, existing.output) != (variant.protocol, variant.output):
            # Two Fréchet metrics on different embeddings would claim the same name (fad-x@p and fd-x@p).
            raise ValueError(f"metric {variant.id} derived from {metric.id} is already registered for another "
                             f"protocol ({existing.protocol.id}); rename one of the Fréchet metrics")


add_metric_deriver(_derive)
