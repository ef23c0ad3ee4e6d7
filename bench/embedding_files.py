"""Set metrics on precomputed embeddings: `bench score --metric fd|kad|fd-inf --generated G.npy --reference R.npy`.

For users who embed elsewhere (a GPU cluster, another toolkit) and for checking the kernels against anything.
Each row of an [n, d] array is one sample (one "clip"): the same kernels, bootstrap interval, noise floor and
record as scoring audio, with the backbone replaced by the files' sha256.
"""
from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path

import numpy as np

from bench.core.errors import ConfigError
from bench.scoring import cached_noise_floor, describe_result
from metrics.distance_variants import fad_inf_metric, kad_metric
from metrics.frechet import frechet_metric
from metrics.inputs import ScoreOptions, SetEmbeddings
from metrics.protocols import EmbeddingProtocol
from metrics.registry import MetricDef

SUFFIXES = (".npy", ".npz")
PRECOMPUTED = EmbeddingProtocol(
    id="embeddings@precomputed", version=1, backbone="none", sample_rate=0, resampler="none", channels="n/a",
    steps=("rows of the given [n, d] float array are the samples (one row = one clip); no audio processing",),
    prepare=lambda waveform, rate: (_ for _ in ()).throw(ConfigError("precomputed embeddings take no audio")))


def _metric(name: str, compute, family: str, min_items: int, summary: str) -> MetricDef:
    return MetricDef(name=name, preset="embeddings", version=1, direction="lower", protocol=PRECOMPUTED,
                     summary=summary, lineage="the project's kernels on the user's embeddings", compute=compute,
                     family=family, min_items=min_items)


METRICS = {
    "fd": _metric("fd", frechet_metric, "frechet", 2, "Fréchet distance between Gaussian fits of the rows"),
    "kad": _metric("kad", kad_metric, "kad", 2, "KAD: unbiased Gaussian-kernel MMD^2 x100, bandwidth from the reference"),
    "fd-inf": _metric("fd-inf", fad_inf_metric, "frechet-inf", 4, "FD extrapolated to infinite n (fadtk FAD-inf)"),
}


def is_embedding_file(path: str | None) -> bool:
    return path is not None and Path(path).suffix.lower() in SUFFIXES


def load_embeddings(path: str | Path) -> np.ndarray:
    """[n, d] float64 from a .npy file or a .npz holding one array (or one named "embeddings")."""
    path = Path(path)
    try:
        loaded = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{path}: not a readable .npy/.npz array ({exc})") from exc
    if isinstance(loaded, np.lib.npyio.NpzFile):
        with loaded:
            names = list(loaded.files)
            if len(names) != 1 and "embeddings" not in names:
                raise ConfigError(f"{path}: a .npz must hold one array or one named 'embeddings'; it holds {names}")
            array = loaded["embeddings" if "embeddings" in names else names[0]]
    else:
        array = loaded
    if array.ndim != 2 or not np.issubdtype(array.dtype, np.number):
        raise ConfigError(f"{path}: expected a numeric [n, d] array (one row per clip), got shape "
                          f"{list(array.shape)} of {array.dtype}")
    if len(array) < 2:
        raise ConfigError(f"{path}: {len(array)} row(s); a set metric needs at least 2")
    array = array.astype(np.float64)
    bad = np.flatnonzero(~np.isfinite(array).all(axis=1))
    if len(bad):
        raise ConfigError(f"{path}: row {bad[0]} (0-based) has NaN or Inf values ({len(bad)} such row(s), first: "
                          f"{bad[:10].tolist()}); drop or fix them")
    return array


def _describe(path: Path, array: np.ndarray) -> dict:
    digest = hashlib.sha256(repr(array.shape).encode() + np.ascontiguousarray(array).tobytes()).hexdigest()
    return {"name": path.name, "kind": "embeddings", "source": str(path), "n_rows": len(array),
            "dim": int(array.shape[1]), "sha256": digest, "fingerprint": digest}


def as_set(path: Path, array: np.ndarray) -> SetEmbeddings:
    n = len(array)
    return SetEmbeddings(_describe(path, array), [f"row{i}" for i in range(n)], [None] * n,
                         {"embedding": [array[i:i + 1] for i in range(n)]}, [0.0] * n, [False] * n)


@dataclasses.dataclass(frozen=True)
class _Source:
    """Stands in for a backbone in the result: what produced the embeddings (the files)."""

    provenance: dict
    device: str = "cpu"
    weights_label: str | None = None


def score_embeddings(metric_names: list[str], generated: str, reference: str | None,
                     options: ScoreOptions) -> tuple[list[dict], dict, dict]:
    """(results, generated description, reference description) for `bench score` on embedding files."""
    unknown = [m for m in metric_names if m not in METRICS]
    if unknown:
        raise ConfigError(f"on precomputed embeddings --metric takes {', '.join(METRICS)}; got {unknown}")
    if reference is None or not is_embedding_file(reference):
        raise ConfigError(f"--generated {generated} is an embedding file: give --reference as a .npy or .npz too")
    gen_path, ref_path = Path(generated), Path(reference)
    gen, ref = load_embeddings(gen_path), load_embeddings(ref_path)
    if gen.shape[1] != ref.shape[1]:
        raise ConfigError(f"embedding dimensions differ: {gen_path} has d={gen.shape[1]}, {ref_path} d={ref.shape[1]}")
    gen_set, ref_set = as_set(gen_path, gen), as_set(ref_path, ref)
    source = _Source({"weights": "none", "backbone": None, "source": "precomputed embeddings",
                      "generated_file": str(gen_path), "generated_sha256": gen_set.set_info["sha256"],
                      "reference_file": str(ref_path), "reference_sha256": ref_set.set_info["sha256"],
                      "file": None, "sha256": None})
    results = []
    for name in metric_names:
        metric = METRICS[name]
        for role, array in (("generated", gen), ("reference", ref)):
            if len(array) < metric.min_items:
                raise ConfigError(f"{role} embeddings: {len(array)} rows; {name} needs at least {metric.min_items}")
        results.append(describe_result(metric, gen_set, ref_set, source, options,
                                       floor=lambda: cached_noise_floor(
                                           metric, ref_set, {"embeddings_sha256": ref_set.set_info["sha256"]}, options),
                                       where=f"{gen_path} vs {ref_path}"))
    return results, gen_set.set_info, ref_set.set_info

