"""`bench listen create|serve|import|score|report`: listening tests as one more way to score a suite."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

EXAMPLES = """examples:
  bench listen create bench-results/my-suite --protocol mos-ovl-rel --clips-per-rater 20 --raters 10 --out study/
  bench listen serve study/ --host 127.0.0.1 --port 8765
  bench listen import study/ ratings.csv          (rater,item,question,score; item = audio file name)
  bench listen score study/                       (records in study/records, logged to the suite's MLflow)
  bench listen report study/ --out study/report
  bench leaderboard --records bench-results/my-suite study/records"""


def cmd_create(args) -> int:
    from bench.listen.study import LINKS_FILE, create_study

    study = create_study(Path(args.results_dir), args.protocol, args.clips_per_rater, args.raters,
                         Path(args.out), seed=args.seed, hidden_reference=args.hidden_reference)
    n_clips = len(study["clips"])
    print(f"study {args.out}: protocol {study['protocol']['name']}, {len(study['conditions'])} conditions, "
          f"{len(study['items'])} items, {len(study['raters'])} raters x {len(study['raters'][0]['trials'])} "
          f"pages, {n_clips} audio files; fingerprint {study['fingerprint'][:16]}")
    print(f"secret rater links: {Path(args.out) / LINKS_FILE} (give each rater only their own)")
    return 0


def cmd_serve(args) -> int:
    from bench.listen.app import serve

    serve(Path(args.study), host=args.host, port=args.port, threads=args.threads)
    return 0


def cmd_import(args) -> int:
    from bench.listen.importer import import_ratings

    out = import_ratings(Path(args.study), Path(args.ratings))
    print(f"imported {out['imported']} ratings from {out['raters']} raters ({out['already_present']} already in "
          f"the database, {out['repeated_in_file']} repeated rows counted once)")
    return 0


def cmd_score(args) -> int:
    from bench.listen.scoring import log_records, score_study

    summary, records = score_study(Path(args.study), n_resamples=args.bootstrap, seed=args.bootstrap_seed)
    for qid, q in summary["questions"].items():
        alpha = q["agreement"]["krippendorff_alpha_interval"]
        print(f"{q['metric']}  (Krippendorff's alpha {'n/a' if alpha is None else f'{alpha:.3f}'})")
        for c in q["conditions"]:
            s = c["summary"]
            if s:
                print(f"  {c['label']:<30} {s['mean']:7.2f}  [{s['low']:.2f}, {s['high']:.2f}]  "
                      f"{s['n_ratings']} ratings, {s['n_raters']} raters")
    excluded = summary["raters"]["excluded"]
    print(f"raters: {summary['raters']['kept']} kept, {len(excluded)} excluded")
    for rater, reason in excluded.items():
        print(f"  excluded {rater}: {reason}")
    if summary["raters"]["not_screened"]:
        print(f"  not screened (no attention-check / hidden-reference answers): "
              f"{', '.join(summary['raters']['not_screened'])}")
    print(f"records: {Path(args.study) / 'records'} ({len(records)})   summary: {Path(args.study) / 'score.json'}")
    if args.no_tracking:
        return 0
    errors = log_records(Path(args.study), records, args.tracking_uri, args.experiment, log=print)
    for err in errors:
        print(f"error: {err}", file=sys.stderr)
    return 3 if errors else 0


def cmd_report(args) -> int:
    from bench.listen.report import write_report

    out = Path(args.out) if args.out else Path(args.study) / "report"
    files = write_report(Path(args.study), out)
    print(json.dumps([str(f) for f in files], indent=1))
    return 0


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("listen", help="listening tests (MOS OVL/REL, MUSHRA): create, serve, import, score, report",
                       epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    lsub = p.add_subparsers(dest="listen_command", required=True)

    c = lsub.add_parser("create", help="build a blind, balanced study from a suite's results")
    c.add_argument("results_dir", help="results directory of `bench run` (records/ and cells/)")
    c.add_argument("--protocol", default="mos-ovl-rel",
                   help="mos-ovl-rel, mos-ovl, mushra, or a protocol TOML file with custom questions")
    c.add_argument("--clips-per-rater", type=int, default=20, help="rated pages per rater (attention checks extra)")
    c.add_argument("--raters", type=int, default=10, help="number of rater links")
    c.add_argument("--seed", type=int, default=0, help="seeds the assignment, order and file names")
    c.add_argument("--hidden-reference", action="store_true",
                   help="MOS: also rate the reference recordings, blind, as one more condition (MUSHRA always does)")
    c.add_argument("--out", required=True, help="new study folder")
    c.set_defaults(func=cmd_create)

    s = lsub.add_parser("serve", help="run the rating web app (waitress)")
    s.add_argument("study")
    s.add_argument("--host", default="127.0.0.1", help="bind address (default localhost; 0.0.0.0 warns)")
    s.add_argument("--port", type=int, default=8765)
    s.add_argument("--threads", type=int, default=4)
    s.set_defaults(func=cmd_serve)

    i = lsub.add_parser("import", help="add ratings collected elsewhere (CSV or JSONL)")
    i.add_argument("study")
    i.add_argument("ratings", help="CSV/JSONL with rater, item, question, score")
    i.set_defaults(func=cmd_import)

    sc = lsub.add_parser("score", help="screen raters, aggregate with CIs, write records, log to MLflow")
    sc.add_argument("study")
    sc.add_argument("--bootstrap", type=int, default=1000, help="two-way bootstrap resamples")
    sc.add_argument("--bootstrap-seed", type=int, default=0)
    sc.add_argument("--tracking-uri", help="MLflow URI (default: where the suite's cells were logged, else "
                    "sqlite in the suite's results dir)")
    sc.add_argument("--experiment", help="MLflow experiment (default: the suite's)")
    sc.add_argument("--no-tracking", action="store_true")
    sc.set_defaults(func=cmd_score)

    r = lsub.add_parser("report", help="per-rater and per-item plots and the raw table")
    r.add_argument("study")
    r.add_argument("--out", help="folder (default: STUDY/report)")
    r.set_defaults(func=cmd_report)
    return p
