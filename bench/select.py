"""`bench select`: keep the top-k of several generated samples per prompt by caption scores (Diffsound Table VIII).

Samples of one prompt share the id before '#' ("dog#0", "dog#1", ... as `bench run` names them; an id
without '#' is its own group). Each clip is captioned, its caption scored against the prompt and
references, and within each group the clips are ranked by SPICE + CIDEr-D (Diffsound's ranking), or by
CIDEr-D alone when the user asks for it with `--by cider-d` (the choice is recorded). Ties go to the
smaller id. The selected clips are written as a JSONL manifest (absolute paths, captions, references,
rank and score), ready for any other metric, plus a JSON record of how they were chosen.
"""
from __future__ import annotations

import json
from pathlib import Path

from bench.cli_args import add_weights_arguments
from bench.core.cache import atomic_write_bytes, atomic_write_json
from bench.core.errors import ConfigError
from metrics.inputs import without_sample_suffix

CRITERIA = {"spice+cider-d": ("caption-spice", "caption-cider-d"), "cider-d": ("caption-cider-d",)}


def groups_of(clip_ids: list[str]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for cid in clip_ids:
        out.setdefault(without_sample_suffix(cid), []).append(cid)
    return out


def rank(scores: dict[str, float], clip_ids: list[str], top_k: int) -> list[tuple[str, int, float]]:
    """(id, rank from 1, score) of the top_k clips of every group, groups in id order."""
    chosen = []
    for group in sorted(groups_of(clip_ids)):
        members = sorted(groups_of(clip_ids)[group], key=lambda cid: (-scores[cid], cid))
        chosen += [(cid, r + 1, scores[cid]) for r, cid in enumerate(members[:top_k])]
    return chosen


def select(generated, captioner_preset: str, top_k: int, by: str, options) -> dict:
    """Score every clip and pick the top_k per prompt; returns {"selected": [...], "record": {...}}."""
    from bench.scoring import ScoringFailed, score
    from metrics import coco_caption_scores

    if top_k < 1:
        raise ConfigError(f"--top-k must be >= 1, got {top_k}")
    if by not in CRITERIA:
        raise ConfigError(f"--by must be one of {', '.join(CRITERIA)}, got {by!r}")
    metric_ids = [f"{name}@{captioner_preset}" for name in CRITERIA[by]]
    try:
        try:
            results = score(metric_ids, generated, None, options)
        except ScoringFailed as partial:  # the ranking needs every criterion: the first failure decides
            raise partial.errors[0] from partial
    except coco_caption_scores.SpiceUnavailable as exc:
        raise ConfigError(f"bench select ranks by SPICE + CIDEr-D (Diffsound Table VIII) and SPICE cannot run: "
                          f"{exc} To rank by CIDEr-D alone, pass --by cider-d (recorded in the output).") from exc
    total = {cid: 0.0 for cid in generated.by_id()}
    for r in results:
        for row in r["per_clip"]:
            total[row["id"]] += row["value"]
    captions = {row["id"]: row["caption"] for row in results[0]["per_clip"]}
    chosen = rank(total, [c.id for c in generated.clips], top_k)
    clips = generated.by_id()
    rows = []
    for cid, position, value in chosen:
        clip = clips[cid]
        if clip.path is None:
            raise ConfigError(f"{generated.source}: clip {cid!r} has no audio file; bench select writes a manifest "
                              "of files, so give a manifest or folder of audio")
        rows.append({"id": cid, "path": str(Path(clip.path).resolve()), "caption": clip.caption,
                     **({"references": list(clip.references)} if clip.references else {}),
                     "selection": {"rank": position, "score": value, "generated_caption": captions[cid]}})
    record = {"schema": "bench.select-record/1", "generated": generated.describe(), "top_k": top_k,
              "ranking": {"by": by, "metrics": metric_ids,
                          "rule": "sum of the per-clip scores, highest first, ties to the smaller id",
                          "diffsound": by == "spice+cider-d"},
              "groups": len(groups_of(list(total))), "selected": len(rows),
              "metrics": [{k: r[k] for k in ("key", "value", "protocol", "backbone", "details")} for r in results]}
    return {"selected": rows, "record": record}


def add_parser(sub) -> None:
    p = sub.add_parser("select", help="keep the top-k samples per prompt by caption scores (SPICE + CIDEr-D)",
                       description="Caption every generated clip, score it against its prompt (and references), "
                                   "and keep the best K clips of each prompt (ids 'prompt#k' share a prompt). "
                                   "Writes a JSONL manifest of the kept clips and a JSON record next to it.")
    p.add_argument("--generated", required=True, help="manifest (.jsonl/.csv with caption) of the generated clips")
    p.add_argument("--top-k", type=int, required=True, help="clips kept per prompt")
    p.add_argument("--captioner", default="whisper-small",
                   help="captioner preset of the caption metrics: whisper-small (default), whisper-tiny, or "
                        "trained (with --checkpoint small-captioner=PATH)")
    p.add_argument("--by", choices=tuple(CRITERIA), default="spice+cider-d",
                   help="ranking score: SPICE + CIDEr-D (Diffsound; needs the CoreNLP jars) or CIDEr-D alone")
    p.add_argument("--out", required=True, help="output manifest (.jsonl); the record goes to OUT.record.json")
    p.add_argument("--batch-size", type=int, default=8)
    add_weights_arguments(p, untrained=False)
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=_cmd)


def _cmd(args) -> int:
    from bench.cli_args import cache_root, weights_choice
    from bench.core.clip_sources import open_clip_set
    from metrics.inputs import ScoreOptions

    out = Path(args.out)
    if out.suffix.lower() != ".jsonl":
        raise ConfigError(f"--out {args.out}: the selection is written as a JSONL manifest; name it *.jsonl")
    options = ScoreOptions(weights=weights_choice(args), cache_root=cache_root(args), batch_size=args.batch_size,
                           bootstrap=0, progress=not args.quiet)
    generated = open_clip_set(args.generated, Path.cwd())
    result = select(generated, args.captioner, args.top_k, args.by, options)
    atomic_write_bytes(out, "".join(json.dumps(r) + "\n" for r in result["selected"]).encode())
    record_path = out.with_name(out.name + ".record.json")
    atomic_write_json(record_path, {**result["record"], "manifest": str(out)})
    print(f"kept {result['record']['selected']} of {len(generated)} clips ({args.top_k} per prompt, "
          f"{result['record']['groups']} prompts) by {args.by}: {out}")
    print(f"record: {record_path}")
    return 0
