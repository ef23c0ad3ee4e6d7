"""`bench train-evaluator`: train the mel-inception evaluator or the small captioner."""
from __future__ import annotations

from pathlib import Path

from bench.core.errors import ConfigError
from bench.training.captioner import CaptionTrainSpec, train_captioner
from bench.training.evaluator import TrainSpec, train


def add_parser(sub) -> None:
    p = sub.add_parser("train-evaluator", help="train the mel-inception evaluator (fid-mel / kl-mel) on labelled clips",
                       description="Train Diffsound's InceptionV3-style log-mel classifier on the first label of "
                                   "each clip. Rerunning the same command resumes from the last checkpoint.")
    p.add_argument("--task", choices=("classification", "captioning"), default="classification",
                   help="classification: the mel-inception evaluator (first label of each clip); captioning: "
                        "the small captioner for caption-*@trained metrics (caption + references of each clip; "
                        "--config tiny|small, writes small-captioner.pt)")
    p.add_argument("--data", required=True, help="labelled set: manifest (.jsonl/.csv with labels), folder, or "
                   "builtin:synthetic[?n_clips=140&seed=1&duration_s=4&sample_rate=16000]")
    p.add_argument("--out", required=True, help="output folder: checkpoints/, mel-inception.pt, mel-inception.json")
    p.add_argument("--steps", type=int, default=150)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch-size", type=int, default=16, help="Diffsound used 64 (full config, GPU)")
    p.add_argument("--config", default="tiny", help="tiny (trains on a CPU in minutes) or full (Melception's size)")
    p.add_argument("--lr", type=float, default=3e-3, help="Adam learning rate (Diffsound: 3e-3)")
    p.add_argument("--weight-decay", type=float, default=1e-3, help="Adam weight decay (Diffsound: 1e-3)")
    p.add_argument("--val-fraction", type=float, default=0.2, help="held-out share of each class")
    p.add_argument("--schedule", choices=("constant", "cosine"), default="constant",
                   help="learning rate: constant (Diffsound) or cosine decay to 0")
    p.add_argument("--threads", type=int, default=1, help="intra-op threads (part of the result's identity)")
    p.add_argument("--checkpoint-every", type=int, default=50, help="steps between resumable checkpoints")
    p.add_argument("--workers", type=int, default=2, help="decoding threads")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=_cmd)


def _cmd(args) -> int:
    if args.checkpoint_every < 1:
        raise ConfigError(f"--checkpoint-every must be >= 1, got {args.checkpoint_every}")
    if args.task == "captioning":
        return _train_captioner(args)
    spec = TrainSpec(config=args.config, steps=args.steps, seed=args.seed, batch_size=args.batch_size, lr=args.lr,
                     weight_decay=args.weight_decay, val_fraction=args.val_fraction, schedule=args.schedule,
                     threads=args.threads)
    result = train(args.data, Path(args.out), spec, Path.cwd(), args.checkpoint_every, progress=not args.quiet,
                   log=(lambda *a: None) if args.quiet else print, workers=args.workers)
    t = result.card["training"]
    print(f"{result.checkpoint}: {len(result.card['classes'])} classes, train accuracy {t['train_accuracy']}, "
          f"validation accuracy {t['val_accuracy']}")
    print(f"use it: bench score --metric fid-mel@diffsound --metric kl-mel@diffsound "
          f"--checkpoint mel-inception={result.checkpoint} --generated GEN --reference REF")
    return 0


def _train_captioner(args) -> int:
    """`--task captioning`: the small captioner for caption-*@trained metrics."""
    spec = CaptionTrainSpec(config=args.config, steps=args.steps, seed=args.seed, batch_size=args.batch_size, lr=args.lr,
                            threads=args.threads)
    result = train_captioner(args.data, Path(args.out), spec, Path.cwd(), args.checkpoint_every,
                             progress=not args.quiet, log=(lambda *a: None) if args.quiet else print,
                             workers=args.workers)
    t = result.card["training"]
    print(f"{result.checkpoint}: {t['vocab_size']} words, final loss {t['final_loss']}, training captions "
          f"reproduced exactly: {t['train_exact_caption_rate']:.0%}")
    print(f"use it: bench score --metric caption-cider-d@trained --checkpoint small-captioner={result.checkpoint} "
          f"--generated GEN")
    return 0
