"""`bench listen create`: a blind, balanced listening study from a finished suite's results.

The study folder holds
- `study.json`: the protocol, the conditions (one per suite cell, plus hidden reference and anchors for
  MUSHRA), the items (clip ids common to every cell), every audio file with its sha256, and each rater's
  trials in their order. Its fingerprint (sha256 of the content) goes into every record it produces.
- `audio/HEX.wav`: 16-bit PCM copies under random names drawn from the recorded seed; nothing in a file
  name or URL tells which system made it.
- `ratings.sqlite`: raters (token hashes) and answers; `links.txt` (mode 0600): one secret link per rater.

MOS studies can add the suite's reference recordings as one more condition (`--hidden-reference`);
MUSHRA always has them. Balance: rater r's n-th rated trial uses item (r * clips_per_rater + n) mod n_items and, for MOS,
condition (n + r) mod n_conditions, so every rater hears every system about equally often and the
item-system pairs rotate across raters; trial order is then shuffled per rater. MOS raters also get
`attention_checks` noise clips at random positions (not first) that must be rated low.
"""
from __future__ import annotations

import hashlib
import json
import os
import secrets
import shutil
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf

from bench.core.cache import atomic_write_json, stable_hash
from bench.core.clip_sources import open_clip_set, open_training_set
from bench.core.clipsets import load_manifest
from bench.core.errors import BenchError, ConfigError
from bench.listen import store
from bench.listen.protocols import load_protocol
from leaderboards.sources import load_records

SCHEMA = "bench.listening-study/1"
STUDY_FILE, DB_FILE, LINKS_FILE = "study.json", "ratings.sqlite", "links.txt"
ATTENTION_NOISE_DBFS = -20.0
# What a listening record copies from the suite record of its cell (so it joins that cell's row).
RECORD_FIELDS = ("cell_id", "cell", "generation", "suite", "reference")


def _write_pcm16(path: Path, waveform: np.ndarray, rate: int) -> str:
    """Write 16-bit PCM WAV atomically (browsers play it everywhere); return the file's sha256."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        sf.write(tmp, np.clip(waveform.T, -1.0, 1.0), int(rate), format="WAV", subtype="PCM_16")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _open_reference(describe: dict, results_dir: Path):
    source = describe["source"]
    opened = (open_training_set(source, results_dir) if source.startswith("builtin:")
              else open_clip_set(source, results_dir))
    if opened.fingerprint() != describe["fingerprint"]:
        raise BenchError(f"reference set {source}: its content changed since the suite ran (fingerprint "
                         f"{opened.fingerprint()[:12]} != recorded {describe['fingerprint'][:12]})")
    return opened


def _lowpass(waveform: np.ndarray, rate: int, cutoff_hz: float) -> np.ndarray:
    from metrics.perturbations import lowpass  # the sanity checks' zero-phase Butterworth low-pass

    return np.asarray(lowpass(waveform.astype(np.float64), rate, float(cutoff_hz), None, None), np.float32)


def create_study(results_dir: Path, protocol_spec: str, clips_per_rater: int, n_raters: int, out: Path,
                 seed: int = 0, hidden_reference: bool = False) -> dict:
    """Build the study in a hidden sibling folder and rename it into place: a failed create leaves nothing."""
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise BenchError(f"{out} exists and is not empty; a study is never overwritten (choose another --out)")
    out.parent.mkdir(parents=True, exist_ok=True)
    building = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.building-"))
    try:
        study = _build_study(Path(results_dir), load_protocol(protocol_spec), clips_per_rater, n_raters,
                             building, seed, hidden_reference)
        if out.exists():
            out.rmdir()  # empty, checked above
        os.rename(building, out)
    except BaseException:
        shutil.rmtree(building, ignore_errors=True)
        raise
    return study


def _build_study(results_dir: Path, protocol: dict, clips_per_rater: int, n_raters: int, out: Path,
                 seed: int, hidden_reference: bool) -> dict:
    if clips_per_rater < 1 or n_raters < 1:
        raise ConfigError("--clips-per-rater and --raters must be >= 1")
    records = load_records(results_dir)
    fingerprints = {r.reference["fingerprint"] for r in records}
    if len(fingerprints) > 1:
        raise BenchError(f"{results_dir}: the records use different reference sets; build one study per set")
    generated = {}
    for record in records:
        # `bench run` writes CELLS/ID/generated.jsonl; the recorded path may be relative to where it ran.
        manifest = results_dir / "cells" / record.cell_id / "generated.jsonl"
        if not manifest.is_file():
            raise BenchError(f"{results_dir}: cell {record.cell_id} has no generated audio at {manifest}; "
                             "a listening study needs the suite's generated clips")
        generated[record.cell_id] = load_manifest(manifest)
    item_ids = sorted(set.intersection(*(set(g.by_id()) for g in generated.values())))
    if not item_ids:
        raise BenchError(f"{results_dir}: no clip id is common to every cell; nothing to compare")
    kind = protocol["kind"]
    hidden_reference = hidden_reference or kind == "mushra"
    reference = _open_reference(records[0].reference, results_dir) if hidden_reference else None
    if reference is not None:
        missing = [i for i in item_ids if i.split("#")[0] not in reference.by_id()]
        if missing:
            raise BenchError(f"a hidden reference needs a reference clip per item; {len(missing)} items have "
                             f"none in {reference.source} (e.g. {missing[0]!r})")

    conditions = [{"kind": "system", "cell_id": r.cell_id, "label": r.label} for r in records]
    if hidden_reference:  # the reference recording, rated blind like any system
        conditions += [{"kind": "hidden-reference", "label": "hidden reference"}]
    if kind == "mushra":
        conditions += [{"kind": "anchor", "label": f"anchor {hz / 1000:g} kHz low-pass", "cutoff_hz": hz}
                       for hz in protocol["anchors_hz"]]
    rng = np.random.default_rng(seed)
    order = list(rng.permutation(len(item_ids)))
    items = [item_ids[k] for k in order]
    captions = {i: next(iter(generated.values())).by_id()[i].caption or "" for i in items}

    (out / "audio").mkdir()
    clips: dict[str, dict] = {}
    made: dict[tuple, str] = {}
    ref_cache: dict[str, tuple[np.ndarray, int]] = {}

    def clip_for(condition: int | None, item: str, role: str, audio) -> str:
        key = (condition, item, role)
        if key not in made:
            name = rng.bytes(16).hex()
            wave, rate = audio()
            sha = _write_pcm16(out / "audio" / f"{name}.wav", wave, rate)
            clips[name] = {"condition": condition, "item": item, "role": role, "sha256": sha,
                           "sample_rate": int(rate), "seconds": round(wave.shape[1] / rate, 3)}
            made[key] = name
        return made[key]

    def reference_audio(item):
        ref_id = item.split("#")[0]
        if ref_id not in ref_cache:
            ref_cache[ref_id] = reference.load(ref_id)
        return ref_cache[ref_id]

    def condition_audio(c: int, item: str):
        cond = conditions[c]
        if cond["kind"] == "system":
            return lambda: generated[cond["cell_id"]].load(item)
        if cond["kind"] == "hidden-reference":
            return lambda: reference_audio(item)
        return lambda: (_lowpass(reference_audio(item)[0], reference_audio(item)[1], cond["cutoff_hz"]),
                        reference_audio(item)[1])

    def noise(k: int):
        first = next(iter(generated.values()))
        _, rate = first.load(first.clips[0].id)
        seconds = float(np.median([c["seconds"] for c in clips.values()])) if clips else 4.0
        gen = np.random.default_rng([seed, 1, k])
        amp = 10 ** (ATTENTION_NOISE_DBFS / 20)
        return (amp * gen.standard_normal((1, int(seconds * rate)))).astype(np.float32), rate

    raters = []
    n_items, n_cond = len(items), len(conditions)
    for r in range(n_raters):
        trials = []
        for n in range(clips_per_rater):
            item = items[(r * clips_per_rater + n) % n_items]
            if kind == "mos":
                c = (n + r) % n_cond
                trials.append({"item": item, "clips": [clip_for(c, item, "rated", condition_audio(c, item))]})
            else:
                shown = [clip_for(int(c), item, "rated", condition_audio(int(c), item)) for c in rng.permutation(n_cond)]
                trials.append({"item": item, "clips": shown,
                               "reference": clip_for(None, item, "open-reference", lambda: reference_audio(item))})
        trials = [trials[k] for k in rng.permutation(len(trials))]
        for k in range(protocol["attention_checks"]):
            at = int(rng.integers(1, len(trials) + 1))
            item = items[int(rng.integers(n_items))]  # any caption: noise matches none
            trials.insert(at, {"item": item, "clips": [clip_for(None, f"noise-{k}", "attention",
                                                                lambda k=k: noise(k))], "attention": True})
        for n, t in enumerate(trials):
            t["id"] = f"t{n + 1:03d}"
        raters.append({"id": f"rater-{r + 1:03d}", "trials": trials})

    study = {"schema": SCHEMA, "protocol": protocol, "seed": seed, "clips_per_rater": clips_per_rater,
             "hidden_reference": hidden_reference,
             "source": {"results_dir": str(results_dir.resolve()),
                        "suite": records[0].suite, "reference": records[0].reference,
                        "records": {r.cell_id: {k: getattr(r, k) for k in RECORD_FIELDS} for r in records}},
             "conditions": conditions, "items": [{"id": i, "caption": captions[i]} for i in items],
             "clips": clips, "raters": raters}
    study["fingerprint"] = stable_hash({k: v for k, v in study.items() if k != "fingerprint"})
    atomic_write_json(out / STUDY_FILE, study)
    tokens = [(r["id"], secrets.token_urlsafe(24)) for r in raters]
    store.create(out / DB_FILE, study["fingerprint"], tokens)
    links = out / LINKS_FILE
    fd = os.open(links, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write("".join(f"{rid}\t/r/{tok}\n" for rid, tok in tokens))
    return study


def load_study(study_dir: Path) -> dict:
    path = Path(study_dir) / STUDY_FILE
    try:
        study = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise BenchError(f"{path}: not a readable study ({exc}); create one with `bench listen create`") from exc
    if not isinstance(study, dict) or study.get("schema") != SCHEMA:
        raise BenchError(f"{path}: not a listening study (expected schema {SCHEMA!r})")
    if stable_hash({k: v for k, v in study.items() if k != "fingerprint"}) != study.get("fingerprint"):
        raise BenchError(f"{path}: its content does not match its fingerprint; the study was edited after "
                         "creation, so ratings could no longer be traced to what raters heard")
    return study


def read_links(study_dir: Path) -> list[tuple[str, str]]:
    path = Path(study_dir) / LINKS_FILE
    return [tuple(line.split("\t")) for line in path.read_text().splitlines() if line]
