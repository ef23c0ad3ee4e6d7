"""`bench score` results as RunRecords: a cell with a `files` generator and no suite.

The same record type as a suite cell, so `bench leaderboard --records`, `bench compare`, gates and
`bench sync` take it. Its cell is the generated folder (or manifest) as a `files` checkpoint at its own
rate; its identity is the content fingerprint of that audio. A score record's `suite` says there was none
(`path` None) and carries the hash of the record's inputs.
"""
from __future__ import annotations

from pathlib import Path

import soundfile as sf

from bench.core.cache import stable_hash
from bench.core.records import SCHEMA, RunRecord
from bench.core.versions import git_revision, library_versions
from bench.suite import Cell

NO_REFERENCE = {"name": "none", "kind": "none", "source": "none", "n_clips": 0, "fingerprint": "none"}


def score_cell(generated: dict, label: str | None) -> Cell:
    checkpoint = generated["source"]
    return Cell(generator="files", label=label or Path(checkpoint).stem or "generated", checkpoint=checkpoint,
                seed=None, steps=None, guidance=None, sample_rate=None, duration_s=None, samples_per_prompt=1,
                resampler="soxr-vhq", batch_size=1)


def audio_layout(clipset) -> dict:
    """Rates and channels of a clip set's files, from their headers (synthetic sets have no files)."""
    infos = [sf.info(str(c.path)) for c in clipset.clips if c.path is not None]
    return {"native_sample_rates": sorted({i.samplerate for i in infos}),
            "output_sample_rates": sorted({i.samplerate for i in infos}),
            "channels": sorted({i.channels for i in infos})}


def score_record(generated: dict, reference: dict | None, results: list[dict], label: str | None, pairing: str,
                 seconds: float, layout: dict | None = None, failed: list[dict] = ()) -> RunRecord:
    """The record of one `bench score`: `generated`/`reference` are the sets' descriptions (clip sets' or
    embedding files'), `layout` the audio's rates and channels, `failed` the metrics that could not run."""
    cell = score_cell(generated, label)
    ref = reference if reference is not None else NO_REFERENCE
    inputs = {"generated": generated["fingerprint"], "reference": ref["fingerprint"], "cell": cell.params(),
              "metrics": [(r["key"], r["protocol"]["id"], r["protocol"]["version"]) for r in results],
              "pairing": pairing}
    cell_hash = stable_hash(inputs)
    return RunRecord(
        schema=SCHEMA,
        suite={"name": "bench score", "path": None, "hash": cell_hash},
        cell_id=cell.id,
        cell_hash=cell_hash,
        cell=cell.params(),
        generation={"generator_version": "1", "checkpoint_sha256": generated["fingerprint"],
                    "n_prompts": None, "n_clips": generated.get("n_clips", generated.get("n_rows")),
                    "resampled_with": [], "untrained": False, **(layout or {}), "source": generated,
                    "generated_dir": generated["source"]},
        reference=ref,
        metrics=tuple(results),
        untrained=any(r["untrained"] for r in results),
        git_revision=git_revision(),
        versions=library_versions(),
        timing={"generation_seconds": None, "fresh_samples": 0, "real_time_factor": None,
                "scoring_seconds": round(seconds, 4)},
        failed_metrics=tuple(failed),
    )
