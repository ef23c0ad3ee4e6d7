"""The Python API: what the `bench` command does, as functions (`from bench import score, run, ...`).

- `score(metrics, generated, reference)`: score folders (or manifests) of audio; returns the RunRecord that
  `bench score` writes (`.metrics`: one result per metric, with value, CI and provenance).
- `run(suite)`: run a suite file (None: the built-in quickstart); returns the RunOutcome (records, gates).
- `load_records(path)`: the RunRecords of a results directory (or one record file).
- `leaderboard(records, format)`: a table as Markdown, LaTeX, HTML or CSV text.
"""
from __future__ import annotations

from pathlib import Path

from bench.core.errors import ConfigError

FORMATS = ("md", "latex", "html", "csv")


def score(metrics: str | list[str], generated, reference=None, *, weights: str = "pretrained",
          weights_seed: int = 0, cache_dir: str | Path | None = None, bootstrap: int = 200,
          bootstrap_seed: int = 0, batch_size: int = 32, progress: bool = False, label: str | None = None):
    """Score the `generated` clips (a folder, a .jsonl/.csv manifest or "builtin:synthetic") with each metric
    (ids such as "fad-vggish@audioldm"), against `reference` where a metric needs one."""
    import time

    from bench.core.clip_sources import open_clip_set
    from bench.score_record import audio_layout, score_record
    from bench.scoring import score as score_sets
    from metrics.backbones.base import WeightsChoice
    from metrics.inputs import ScoreOptions

    cache = Path(cache_dir) if cache_dir is not None else None
    options = ScoreOptions(weights=WeightsChoice(mode=weights, seed=weights_seed, cache_root=cache),
                           cache_root=cache, batch_size=batch_size, bootstrap=bootstrap,
                           bootstrap_seed=bootstrap_seed, progress=progress)
    gen = open_clip_set(generated, Path.cwd(), where="generated")
    ref = open_clip_set(reference, Path.cwd(), where="reference") if reference is not None else None
    t0 = time.perf_counter()
    results = score_sets([metrics] if isinstance(metrics, str) else list(metrics), gen, ref, options)
    return score_record(gen.describe(), ref.describe() if ref is not None else None, results, label,
                        options.pairing, time.perf_counter() - t0, audio_layout(gen))


def run(suite: str | Path | None = None, *, out: str | Path | None = None, cache_dir: str | Path | None = None,
        tracking: bool | None = None, progress: bool = False):
    """Run a suite file (None: the built-in quickstart) as `bench run` does; returns its RunOutcome
    (.records, .gates, .errors, .exit_code, .leaderboard)."""
    from bench.runner import RunOptions, run_suite
    from bench.suite import load_suite

    options = RunOptions(results_dir=Path(out) if out is not None else None,
                         cache_root=Path(cache_dir) if cache_dir is not None else None,
                         tracking=tracking, progress=progress)
    return run_suite(load_suite(suite), options, log=print if progress else (lambda *a: None))


def load_records(path: str | Path) -> list:
    """The RunRecords of a `bench run` results directory, its records/ folder, or one record file."""
    from leaderboards.sources import load_records as load

    return load(path)


def leaderboard(records: list, format: str = "md", **table_options) -> str:
    """A leaderboard of `records` as text; `table_options` as `bench leaderboard` takes them (layout,
    metrics, group_by, info, title)."""
    from leaderboards import csv_table, html, latex, markdown
    from leaderboards.table import build_table

    if format not in FORMATS:
        raise ConfigError(f"format must be one of {', '.join(FORMATS)}, got {format!r}")
    table = build_table(records, **table_options)
    return {"md": markdown.render_table, "latex": latex.render_table, "html": html.render_table,
            "csv": csv_table.render_table}[format](table)
