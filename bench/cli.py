"""The `bench` command: run suites, score existing audio, manage weights, list what exists."""
from __future__ import annotations

import argparse
import json
import sys
import traceback
from pathlib import Path

from bench.cli_args import add_weights_arguments, cache_root, weights_choice
from bench.core.audio import AUDIO_EXTENSIONS
from bench.core.errors import EXIT_INTERNAL_ERROR, BenchError, doing

EXAMPLES = """examples:
  bench run                                   the built-in quickstart suite, offline
  bench run my_suite.toml --tracking-uri http://127.0.0.1:5000
  bench score --metric fad-vggish@audioldm --generated gen_wavs/ --reference refs.jsonl
  bench score --metric fad-vggish@google --generated gen/ --reference ref/ --checkpoint vggish=vggish.pth
  bench score --metric fd --metric kad --generated gen_emb.npy --reference ref_emb.npz
  bench weights list | bench weights fetch vggish | bench weights verify
  bench list | bench describe discodiff --size paper
  bench compare RESULTS/records/a.json RESULTS/records/b.json --bootstrap 1000
  bench leaderboard --records bench-results/quickstart --format latex --out table.tex
  bench sanity --metric fad-vggish@audioldm --reference refs/ --require fad-vggish@audioldm:noise
  bench train archisound --data builtin:synthetic --steps 300 --out runs/archisound --every 100
  bench train-evaluator --data labelled.jsonl --out evaluators/mel --steps 300 --seed 0
  bench train-evaluator --task captioning --data builtin:synthetic --out evaluators/cap
  bench select --generated gen.jsonl --top-k 1 --out best.jsonl   (SPICE + CIDEr-D, Diffsound)
  bench run my_suite.toml --executor ray --ray-address auto      fan out over a Ray cluster
  bench run my_suite.toml --check-determinism | bench sync bench-results/my_suite
  bench listen create bench-results/my_suite --protocol mos-ovl-rel --raters 10 --out study/ (then serve, score)
audio files: folders are read recursively (symbolic links followed); extensions, in any case:
  {extensions}
exit codes: 0 ok, 1 a CI gate failed, 2 bad input or a cell failed, 3 results saved but not tracked
(push them with `bench sync`), 4 --check-determinism found differences, 5 internal error (a bug or an
unexpected environment; finished results are kept; --debug shows the traceback), 130 interrupted
""".format(extensions=" ".join(e[1:] for e in AUDIO_EXTENSIONS))


def cmd_run(args) -> int:
    from bench.runner import RunOptions, run_suite
    from bench.suite import load_suite

    suite = load_suite(args.suite)
    if args.baseline:  # a bad baseline fails now, not after the run
        from leaderboards.sources import load_records
        load_records(args.baseline)
    options = RunOptions(results_dir=Path(args.out) if args.out else None, cache_root=cache_root(args),
                         tracking_uri=args.tracking_uri, tracking=False if args.no_tracking else None,
                         force=args.force, progress=not args.quiet,
                         allow_download=False if args.offline else None,
                         baseline=Path(args.baseline) if args.baseline else None,
                         executor=args.executor, ray_address=args.ray_address,
                         check_determinism=args.check_determinism)
    outcome = run_suite(suite, options, log=(lambda *a: None) if args.quiet else print)
    print()
    print(outcome.leaderboard.read_text())
    for line in [g.line() for g in outcome.gates]:
        print(line)
    for err in outcome.errors + outcome.tracking_errors:
        print(f"error: {err}", file=sys.stderr)
    print(f"records: {outcome.results_dir / 'records'}   leaderboard: {outcome.leaderboard}")
    failed = [g for g in outcome.gates if not g.passed]
    if failed:
        print(f"{len(failed)} of {len(outcome.gates)} gate checks FAILED", file=sys.stderr)
    for cell_id, fields in outcome.nondeterministic.items():
        print(f"NOT DETERMINISTIC {cell_id}: {len(fields)} field(s) differ on recomputation:", file=sys.stderr)
        for line in fields[:50]:
            print(f"  {line}", file=sys.stderr)
    if args.check_determinism and not outcome.nondeterministic and outcome.records:
        print(f"determinism: {len(outcome.records)} cell(s) recomputed without caches, records identical")
    return outcome.exit_code


def cmd_score(args) -> int:
    import time

    from bench.core.clip_sources import open_clip_set
    from bench.core.records import write_record
    from bench.embedding_files import is_embedding_file, score_embeddings
    from bench.preflight import PreflightReport, check_backbones, check_pairing
    from bench.score_record import audio_layout, score_record
    from bench.scoring import ScoringFailed, score
    from metrics.inputs import ScoreOptions

    options = ScoreOptions(weights=weights_choice(args), cache_root=cache_root(args), batch_size=args.batch_size,
                           workers=args.workers, bootstrap=args.bootstrap, bootstrap_seed=args.bootstrap_seed,
                           progress=not args.quiet, pairing=args.pairing)
    failures = []
    t0 = time.perf_counter()
    if is_embedding_file(args.generated):
        results, gen_info, ref_info = score_embeddings(args.metric, args.generated, args.reference, options)
        layout = None
    else:
        generated = open_clip_set(args.generated, Path.cwd())
        # Reference-free metrics (IS) need none; score() names the metrics that do when it is missing.
        reference = open_clip_set(args.reference, Path.cwd()) if args.reference else None
        # Before any embedding: every missing weights file, and ids that a paired metric cannot pair.
        report = PreflightReport(check_backbones(args.metric, options.weights))
        if reference is not None:
            report.problems += check_pairing(args.metric, [c.id for c in generated.clips],
                                             [c.id for c in reference.clips], args.pairing,
                                             f"{generated.source} vs {reference.source}")
        report.raise_if_problems("bench score")
        gen_info, ref_info = generated.describe(), reference.describe() if reference else None
        layout = audio_layout(generated)
        try:
            results = score(args.metric, generated, reference, options)
        except ScoringFailed as exc:  # the metrics that worked are kept, printed and recorded
            results, failures = exc.results, exc.failures
    tracked = 0
    if results:  # nothing computed, nothing to keep: only the errors below
        record = score_record(gen_info, ref_info, results, args.label, args.pairing, time.perf_counter() - t0,
                              layout, failures)
        out = Path(args.out) if args.out else Path("bench-results") / "score" / "records" / f"{record.cell_id}.json"
        write_record(out, record)
        tracked = _track_score(record, out, args)
        if args.format == "json":
            print(json.dumps(record.to_dict(), indent=2))
        else:
            for r in results:
                print_result(r)
            print(f"record: {out}")
    for f in failures:
        print(f"error: {f['metric']}: {f['error']}", file=sys.stderr)
    return 2 if failures else tracked


def _track_score(record, out: Path, args) -> int:
    """Log a score record to MLflow when asked (exit 3 if MLflow cannot take it: the record stays on disk)."""
    if not (args.tracking_uri or args.experiment):
        return 0
    from bench.core.mlflow_store import results_store_uri
    from bench.sync import track
    from bench.tracking import TrackingError

    # records live in RESULTS/records/: the tracking sidecar goes next to them, as for `bench run`
    results_dir = out.parent.parent if out.parent.name == "records" else out.parent
    try:
        track(record, args.tracking_uri or results_store_uri(results_dir), args.experiment or "bench-score",
              results_dir)
    except TrackingError as exc:
        print(f"error: {exc}; the record is kept, push it later with `bench sync {results_dir}`", file=sys.stderr)
        return 3
    return 0


def _backbone_text(r: dict) -> str:
    b = r["backbone"]
    if r["untrained"]:
        return f"UNTRAINED {b['backbone']} (seed {b['seed']})"
    if b.get("weights") == "none":
        return f"precomputed embeddings (sha256 {b['generated_sha256'][:12]} vs {b['reference_sha256'][:12]})"
    text = f"{b['file']} sha256 {b['sha256'][:12]}"
    return f"LOCAL UNVERIFIED checkpoint {text} ({b.get('note')})" if r.get("unverified") else text


def print_result(r: dict) -> None:
    """One metric's result as text: the value as the published toolkits print it (IS with its std over
    splits, KL with its direction), its interval and what it covers, the noise floor, warnings."""
    details = r.get("details") or {}
    extra = ""
    if "std_over_splits" in details:
        extra = f" ± {details['std_over_splits']:.4f} (std over {details['splits']} splits)"
    elif "direction" in details:
        extra = f"  {details['direction']}"
    print(f"{r['key']}: {r['value']:.4f}{extra}")
    ci = r.get("ci")
    if ci:
        corrected = (f"; bias-corrected estimate {ci['bias_corrected']:.4f}"
                     if ci.get("bias_corrected") is not None else "")
        print(f"  {ci['level']:.0%} CI [{ci['low']:.4f}, {ci['high']:.4f}]{corrected}")
        print(f"  the interval covers {ci.get('covers', '(not recorded)')}")
    floor = r.get("noise_floor")
    if floor and floor.get("mean") is not None:
        print(f"  noise floor {floor['mean']:.4f} ± {floor['std']:.4f} (reference half vs half, {floor['splits']} "
              f"splits of {floor['set_sizes'][0]} vs {floor['set_sizes'][1]} clips): what a perfect generator scores")
    elif floor:
        print(f"  noise floor: none ({floor.get('reason')})")
    against = f" vs {r['reference']['n_clips']} reference" if r["reference"] else ""
    print(f"  {r['generated']['n_clips']} generated{against} clips; "
          f"protocol {r['protocol']['id']} v{r['protocol']['version']}; {_backbone_text(r)}")
    if r.get("degenerate"):
        print(f"  DEGENERATE: {r['degenerate']}")
    for warning in r.get("warnings") or []:
        print(f"  warning: {warning}")
    for role in [role for role in ("generated", "reference") if r[role]]:
        flags = r[role]
        if flags["silent_clips"]["count"] or flags["clips_without_embeddings"]["count"]:
            print(f"  note: {role}: {flags['silent_clips']['count']} silent clip(s) scored and flagged, "
                  f"{flags['clips_without_embeddings']['count']} clip(s) too short to yield an embedding")


def cmd_weights(args) -> int:
    from bench.core import weights
    from bench.core.cache import default_cache_root
    from generators.base import GENERATORS
    from metrics.backbones.base import BACKBONES

    # Backbone and generator modules (built-in and plugins) register their checkpoints when imported.
    BACKBONES.load()
    GENERATORS.load()
    root = cache_root(args) or default_cache_root()
    if args.action == "list":
        print(f"weights cache: {weights.weights_dir(root)}")
        for row in weights.status_rows(root):
            size = f"{row['size_bytes'] / 1e6:.0f} MB" if row["size_bytes"] else "size unpublished"
            digest = row["sha256"] or (f"{row['sha256_prefix']}... (prefix)" if row["sha256_prefix"]
                                       else "unpublished")
            print(f"{row['name']:<12} {'cached' if row['cached'] else 'missing':<8} {row['filename']}  {size}")
            print(f"{'':<12} url {row['url']}\n{'':<12} sha256 {digest}; license {row['license']}")
        for card in sorted(weights.KNOWN_HUB_MODELS.values(), key=lambda c: c.name):
            missing = weights.hub_missing_files(card)
            print(f"{card.name:<12} {'missing' if missing else 'cached':<8} Hugging Face repo {card.repo} "
                  f"({', '.join(card.files)}; read from the HF cache)")
            print(f"{'':<12} license {card.license}{'; ' + card.note if card.note else ''}")
        return 0
    if args.action == "fetch":
        names = args.names or sorted([*weights.KNOWN_WEIGHTS, *weights.KNOWN_HUB_MODELS])
        for name in names:
            if name in weights.KNOWN_HUB_MODELS:
                print(f"{name}: {weights.fetch_hub_model(weights.KNOWN_HUB_MODELS[name])} (Hugging Face cache)")
                continue
            resolved = weights.resolve(name, root, allow_download=True)
            print(f"{name}: {resolved.path} ({resolved.source}) sha256 {resolved.sha256}")
        return 0
    bad = 0
    for row in weights.verify_cached(root):
        print(f"{row['name']:<12} {row['status']}  {row['path']}")
        bad += row["status"] == "MISMATCH"
    return 1 if bad else 0


def cmd_train(args) -> int:
    from bench.training.generator import TrainSettings, parse_overrides, train_generator

    settings = TrainSettings(steps=args.steps, seed=args.seed, every=args.every, batch_size=args.batch_size,
                             lr=args.lr, threads=args.threads)
    outcome = train_generator(args.generator, args.data, Path(args.out), settings, size=args.size,
                              overrides=parse_overrides(args.config), base_dir=Path.cwd(), progress=not args.quiet,
                              log=(lambda *a: None) if args.quiet else print, init_from=args.init_from)
    for path in outcome.checkpoints:
        print(path)
    if outcome.checkpoints:
        print(f"use them: [[generators]] name = \"{args.generator}\" checkpoints = \"{Path(args.out) / 'step-*.pt'}\"")
    return 0


def cmd_describe(args) -> int:
    from generators.trainable import TRAINABLES, describe_model

    if args.generator not in TRAINABLES.load():
        from bench.core.errors import ConfigError

        raise ConfigError(f"bench describe: {args.generator!r} is not a trainable reference generator; "
                          f"known: {', '.join(sorted(TRAINABLES.load()))}")
    d = describe_model(args.generator, args.size)
    print(f"{d.name} (size {d.size}), built on the meta device (no weights allocated)")
    print("config:")
    for key, value in d.config.items():
        print(f"  {key} = {json.dumps(value)}")
    print(f"parameters per module (to depth {args.depth}; a module's count includes its children; "
          "modules without parameters left out):")
    for path, count in d.modules.items():
        level = path.count(".")
        if level < args.depth and count:
            print(f"  {'  ' * level}{path:<{max(1, 48 - 2 * level)}} {count:>15,}  {100 * count / max(1, d.total):5.1f}%")
    print(f"total {d.total:,} parameters ({d.total / 1e6:.1f}M)")
    return 0


def cmd_list(args) -> int:
    from generators.base import GENERATORS
    from metrics.registry import all_metrics

    print("generators:")
    for name, (_, summary) in sorted(GENERATORS.load().items()):
        print(f"  {name:<22} {summary}")
    print("metrics (name@protocol):")
    for mid, m in sorted(all_metrics().items()):
        print(f"  {mid:<22} {m.direction} is better; {m.summary} [{m.lineage}]")
    return 0


def _version() -> str:
    from bench.core.versions import git_revision, library_versions

    revision = git_revision()
    return (f"{library_versions()['bench-harness'] or '(not installed)'}"
            + (f" (git {revision[:12]}{'-dirty' if revision.endswith('-dirty') else ''})" if revision else ""))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bench", description="Benchmark harness for text-to-audio and "
                                     "text-to-music generation.", epilog=EXAMPLES,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    parser.add_argument("--cache-dir", help="cache root for weights, generated audio and embeddings "
                        "(default: $BENCH_CACHE_DIR or ~/.cache/bench)")
    parser.add_argument("--debug", action="store_true", help="print the traceback of an internal error (exit 5)")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run a benchmark suite (default: the built-in offline quickstart)")
    run.add_argument("suite", nargs="?", help="suite TOML file; omit for the built-in quickstart")
    run.add_argument("--out", help="results directory (default: the suite's results_dir)")
    run.add_argument("--tracking-uri", help="MLflow tracking URI (default: sqlite in the results dir)")
    run.add_argument("--no-tracking", action="store_true", help="do not log to MLflow")
    run.add_argument("--force", action="store_true", help="recompute cells that already have a record")
    run.add_argument("--offline", action="store_true", help="never download weights")
    run.add_argument("--quiet", action="store_true", help="no progress output")
    run.add_argument("--baseline", metavar="RECORDS", help="records (directory or file) to compare against "
                     "in RESULTS_DIR/ci-summary.md (also appended to $GITHUB_STEP_SUMMARY when set)")
    run.add_argument("--executor", choices=("local", "ray"), help="where generation and embedding run "
                     "(default: the suite's `executor`, else local); ray: a Ray cluster, see --ray-address")
    run.add_argument("--ray-address", help="Ray cluster to join (e.g. auto, ray://head:10001; default: "
                     "$RAY_ADDRESS, else a local Ray instance)")
    run.add_argument("--check-determinism", action="store_true", help="recompute every cell with empty "
                     "generation/embedding caches and diff against its record; exit 4 listing differing fields")
    run.set_defaults(func=cmd_run)

    sc = sub.add_parser("score", help="score existing audio (directory or manifest) against a reference")
    sc.add_argument("--metric", action="append", required=True, help="metric id NAME@PROTOCOL (repeatable)")
    sc.add_argument("--generated", required=True, help="directory of audio, or .jsonl/.csv manifest; or a "
                    ".npy/.npz [n, d] array of precomputed embeddings (then --metric fd, kad or fd-inf)")
    sc.add_argument("--reference", help="directory, manifest, or builtin:synthetic (not needed by "
                    "reference-free metrics such as IS); a .npy/.npz with embedding files")
    sc.add_argument("--pairing", choices=("strict", "audioldm-99"), default="strict",
                    help="paired metrics (KL): every id must pair (strict), or audioldm_eval's rule: pair "
                    "the matching ids when more than 99%% of reference ids match (audioldm-99)")
    add_weights_arguments(sc)
    sc.add_argument("--bootstrap", type=int, default=200, help="bootstrap resamples for CIs (0: none)")
    sc.add_argument("--bootstrap-seed", type=int, default=0)
    sc.add_argument("--batch-size", type=int, default=32, help="most examples per backbone forward (speed and "
                    "memory only: every example's outputs are those it gives alone)")
    sc.add_argument("--workers", type=int, default=2, help="decoding threads")
    sc.add_argument("--format", choices=("text", "json"), default="text")
    sc.add_argument("--label", help="model name in tables and MLflow (default: the --generated folder's name)")
    sc.add_argument("--out", help="where to write the RunRecord (default: bench-results/score/records/CELL.json, "
                    "so `bench leaderboard --records bench-results/score` and `bench sync` find it)")
    sc.add_argument("--tracking-uri", help="log the record to this MLflow tracking URI")
    sc.add_argument("--experiment", help="MLflow experiment (default: bench-score; alone: the sqlite store next to "
                    "the records)")
    sc.add_argument("--quiet", action="store_true")
    sc.set_defaults(func=cmd_score)

    w = sub.add_parser("weights", help="list, fetch or verify pretrained checkpoints")
    w.add_argument("action", choices=("list", "fetch", "verify"))
    w.add_argument("names", nargs="*", help="weights to fetch (default: all)")
    w.set_defaults(func=cmd_weights)

    tr = sub.add_parser("train", help="train a reference generator (deterministic, checkpointed, resumable)",
                        description="Train a trainable reference generator on a clip set. Checkpoints go to "
                        "OUT/step-NNNNNN.pt every --every steps, the loss of every step to OUT/train_log.jsonl. "
                        "Rerunning the same command continues from the latest checkpoint in OUT and ends with "
                        "the same bytes as an uninterrupted run (for the same --threads).")
    tr.add_argument("generator", help="trainable generator name, e.g. archisound (see `bench list`)")
    tr.add_argument("--data", required=True, help="directory of audio, .jsonl/.csv manifest (captions used as "
                    "text), or builtin:synthetic[?n_clips=140&seed=1&duration_s=4&sample_rate=16000]")
    tr.add_argument("--steps", type=int, required=True, help="total optimisation steps (a rerun with more "
                    "steps extends the run)")
    tr.add_argument("--out", required=True, help="output folder for checkpoints and train_log.jsonl")
    tr.add_argument("--seed", type=int, default=0, help="seeds the initialisation, batches and noise")
    tr.add_argument("--every", type=int, default=100, help="checkpoint every K steps (and at the last step)")
    tr.add_argument("--batch-size", type=int, default=8)
    tr.add_argument("--lr", type=float, help="Adam learning rate (default: the config's lr)")
    tr.add_argument("--size", default="tiny", help="named config size (tiny trains on a CPU in minutes)")
    tr.add_argument("--config", nargs="*", metavar="KEY=VALUE", help="override config keys (JSON values)")
    tr.add_argument("--threads", type=int, default=1, help="intra-op threads (bit-identity needs the same count)")
    tr.add_argument("--init-from", metavar="CKPT", help="start from this checkpoint's weights (fine-tuning); "
                    "e.g. SRC-gAudio pre-trained at 16 kHz, fine-tuned with --config 'rates=[16000,24000,32000,48000]'")
    tr.add_argument("--quiet", action="store_true")
    tr.set_defaults(func=cmd_train)

    de = sub.add_parser("describe", help="a trainable generator's config and parameter counts (meta device: "
                        "no memory, so paper sizes work anywhere)")
    de.add_argument("generator", help="trainable generator name, e.g. archisound (see `bench list`)")
    de.add_argument("--size", default="tiny", help="named config size (e.g. tiny, paper)")
    de.add_argument("--depth", type=int, default=2, help="module levels to list (default 2)")
    de.set_defaults(func=cmd_describe)

    ls = sub.add_parser("list", help="list generators and metrics with their protocols")
    ls.set_defaults(func=cmd_list)

    from leaderboards.cli import add_parser as add_leaderboard_parser
    add_leaderboard_parser(sub)

    from bench.sanity import add_parser as add_sanity_parser
    add_sanity_parser(sub)

    from bench.sync import add_parser as add_sync_parser
    add_sync_parser(sub)

    from bench.compare import add_parser as add_compare_parser
    add_compare_parser(sub)

    from bench.training.cli import add_parser as add_train_evaluator_parser
    add_train_evaluator_parser(sub)

    from bench.select import add_parser as add_select_parser
    add_select_parser(sub)

    from bench.listen.cli import add_parser as add_listen_parser
    add_listen_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        with doing(f"running `bench {args.command}`"):
            return args.func(args)
    except BenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; finished cells are saved, rerun the same command to resume", file=sys.stderr)
        return 130
    except Exception as exc:  # anything else is ours to fix: say what was being done, never "a gate failed"
        if args.debug:
            traceback.print_exc()
        detail = (str(exc).splitlines() or [""])[0][:300]
        advice = "report it with the command line" if args.debug else "rerun with --debug for the traceback and report it"
        print(f"internal error while {getattr(exc, 'bench_doing', None) or 'running bench'}: "
              f"{type(exc).__name__}: {detail}. This is not an input problem the harness knows how to name; "
              f"results finished before it are kept on disk; {advice} (exit code {EXIT_INTERNAL_ERROR}).",
              file=sys.stderr)
        return EXIT_INTERNAL_ERROR


if __name__ == "__main__":
    sys.exit(main())
