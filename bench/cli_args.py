"""Command-line arguments shared by several commands, parsed the same way everywhere.

One meaning per flag name: `--weights-seed` seeds untrained backbone weights, `--bootstrap-seed` seeds
the resampling of confidence intervals, and `--seed` (generation and training) seeds the work itself.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from bench.core.errors import ConfigError
from metrics.backbones.base import WeightsChoice, check_backbone_names


def add_weights_arguments(parser: argparse.ArgumentParser, untrained: bool = True) -> None:
    """--weights/--weights-seed (when the command can use untrained weights), --checkpoint, --offline."""
    if untrained:
        parser.add_argument("--weights", choices=("pretrained", "untrained"), default="pretrained",
                            help="pretrained weights from the cache (default) or seeded random weights (untrained)")
        parser.add_argument("--weights-seed", type=int, default=0, help="seed of --weights untrained")
    parser.add_argument("--checkpoint", action="append", metavar="BACKBONE=PATH",
                        help="use a local checkpoint file for a backbone (its sha256 is recorded; repeatable)")
    parser.add_argument("--offline", action="store_true", help="never download weights")


def cache_root(args) -> Path | None:
    return Path(args.cache_dir).expanduser() if args.cache_dir else None


def parse_checkpoints(items: list[str] | None) -> tuple[tuple[str, str], ...]:
    pairs = []
    for item in items or []:
        name, sep, path = item.partition("=")
        if not sep or not name or not path:
            raise ConfigError(f"--checkpoint {item!r}: expected BACKBONE=PATH, e.g. vggish=/path/vggish.pth")
        check_backbone_names([name], f"--checkpoint {item!r}")
        pairs.append((name, path))
    return tuple(sorted(pairs))


def weights_choice(args) -> WeightsChoice:
    """The backbone weights a command's arguments ask for (see add_weights_arguments)."""
    return WeightsChoice(mode=getattr(args, "weights", "pretrained"), seed=getattr(args, "weights_seed", 0),
                         local_files=parse_checkpoints(args.checkpoint), cache_root=cache_root(args),
                         allow_download=False if args.offline else None)
