"""Acceptance check of the fadtk presets against fadtk's published per-song values (needs the real weights).

    python -m bench.benchmarks.fadtk_regression                    # every fad-*@fadtk preset
    python -m bench.benchmarks.fadtk_regression --models encodec-emb dac-44kHz --download

fadtk 1.1.0 ships 23 generated songs (fadtk/test/samples/*.opus), the background statistics of FMA pop for each
of its models (fadtk/stats/fma_pop.npz) and the FAD of every song, and of all of them pooled, against that
background (fadtk/test/samples_FAD_scores.csv). Its own test (fadtk/test/__main__.py) passes a model when
max |ours - published| / mean(ours) < 5%; so does this one. Those files come from the installed fadtk package
(`pip install fadtk==1.1.0 --no-deps`) or --fadtk-dir. A preset whose weights are missing is skipped with
the message naming what to download (`bench weights fetch NAME`, or the Hugging Face repo to fetch).
Exit status: 0 all checked presets pass, 2 one fails, 3 nothing could be checked.
"""
from __future__ import annotations

import argparse
import csv
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bench.core.audio import read_audio
from bench.core.errors import BenchError
from bench.batching import embed_clip
from metrics.backbones.base import WeightsChoice, load_backbone
from metrics.frechet import frechet_distance
from metrics.registry import get_metric

# fadtk model name -> our preset
PRESETS = {"clap-laion-audio": "fad-clap-laion@fadtk", "clap-laion-music": "fad-clap-laion-music@fadtk",
           "encodec-emb": "fad-encodec-emb@fadtk", "encodec-emb-48k": "fad-encodec-emb-48k@fadtk",
           "dac-44kHz": "fad-dac-44khz@fadtk", "MERT-v1-95M": "fad-mert-v1-95m@fadtk"}
THRESHOLD_PERCENT = 5.0  # fadtk/test/__main__.py: madp < 5
INSTALL_HINT = "pip install fadtk==1.1.0 --no-deps (its samples, fma_pop statistics and published scores), or --fadtk-dir"


@dataclass(frozen=True)
class FadtkFiles:
    samples: list[Path]
    stats: Path
    scores: Path

    @classmethod
    def find(cls, folder: Path | None) -> "FadtkFiles":
        if folder is None:
            try:
                import importlib.util

                spec = importlib.util.find_spec("fadtk")
            except (ImportError, ValueError):
                spec = None
            if spec is None or not spec.submodule_search_locations:
                raise BenchError(f"fadtk's regression files are not available: {INSTALL_HINT}")
            folder = Path(next(iter(spec.submodule_search_locations)))
        files = cls(sorted((folder / "test" / "samples").glob("*.opus")), folder / "stats" / "fma_pop.npz",
                    folder / "test" / "samples_FAD_scores.csv")
        if not files.samples or not files.stats.is_file() or not files.scores.is_file():
            raise BenchError(f"{folder}: no test/samples/*.opus, stats/fma_pop.npz or test/samples_FAD_scores.csv; "
                             f"{INSTALL_HINT}")
        return files

    def published(self, model: str) -> dict[str, float]:
        column = f"FAD_{model.replace('-', '_')}_fma_pop"
        with open(self.scores, newline="") as f:
            rows = list(csv.DictReader(f))
        if not rows or column not in rows[0]:
            raise BenchError(f"{self.scores}: no column {column}")
        return {row["song_id"]: float(row[column]) for row in rows}


def check_model(model: str, files: FadtkFiles, choice: WeightsChoice, batch_size: int = 16) -> dict:
    """Our FAD of each sample song (and all pooled) against fadtk's background, vs the published values."""
    protocol = get_metric(PRESETS[model]).protocol
    backbone = load_backbone(protocol.backbone, choice)
    with np.load(files.stats) as data:
        mu, cov = data[f"{model}.mu"], data[f"{model}.cov"]
    per_song, pooled = {}, []
    for path in files.samples:
        wave, rate = read_audio(path)
        rows = embed_clip(backbone, protocol.prepare(wave, rate), batch_size)["embedding"].astype(np.float64)
        per_song[f"samples/{path.stem}"] = frechet_distance(mu, cov, rows.mean(0), np.cov(rows, rowvar=False))
        pooled.append(rows)
    rows = np.concatenate(pooled)
    per_song["samples/all"] = frechet_distance(mu, cov, rows.mean(0), np.cov(rows, rowvar=False))
    published = files.published(model)
    ours = np.array([per_song[k] for k in per_song])
    theirs = np.array([published[k] for k in per_song])
    mad = float(np.abs(ours - theirs).max())
    percent = mad / float(ours.mean()) * 100
    return {"model": model, "preset": PRESETS[model], "songs": len(files.samples), "max_abs_diff": mad,
            "mean": float(ours.mean()), "mad_percent": percent, "pass": percent < THRESHOLD_PERCENT,
            "weights": backbone.weights_label or "pretrained"}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", nargs="*", choices=sorted(PRESETS), default=sorted(PRESETS))
    parser.add_argument("--fadtk-dir", type=Path, default=None, help="a fadtk package folder (default: installed)")
    parser.add_argument("--download", action="store_true", help="fetch missing weights (default: offline)")
    parser.add_argument("--batch-size", type=int, default=16)
    args = parser.parse_args(argv)
    try:
        files = FadtkFiles.find(args.fadtk_dir)
    except BenchError as exc:
        print(f"skipped: {exc}")
        return 3
    choice = WeightsChoice(allow_download=args.download)
    results, skipped = [], []
    for model in args.models:
        try:
            results.append(check_model(model, files, choice, args.batch_size))
        except BenchError as exc:  # missing weights name the file / repo and where to put it
            skipped.append(model)
            print(f"{model}: skipped, {exc}")
            continue
        r = results[-1]
        print(f"{model:<17} {r['preset']:<28} max |diff| {r['max_abs_diff']:.4g} of mean {r['mean']:.4g} "
              f"({r['mad_percent']:.2f}%) {'pass' if r['pass'] else 'FAIL'}")
    if not results:
        print(f"nothing checked: no weights for {', '.join(skipped)}")
        return 3
    return 0 if all(r["pass"] for r in results) else 2


if __name__ == "__main__":
    sys.exit(main())
