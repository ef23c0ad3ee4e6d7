"""What every trainer here shares: rolling checkpoints to resume from, reuse of a finished run, results.

A training run is identified by the hash of its settings and data (`run_hash`); a checkpoint or final
file from another run is never loaded or overwritten silently.
"""
from __future__ import annotations

import io
from dataclasses import dataclass, field
from pathlib import Path

from bench.core.cache import atomic_write_bytes
from bench.core.errors import ConfigError


@dataclass
class TrainResult:
    checkpoint: Path
    card: dict
    reused: bool  # the final checkpoint already existed
    losses: list[float] = field(default_factory=list)  # training loss of each step run by this call


def save_tensors(path: Path, tensors: dict) -> None:
    import torch

    buf = io.BytesIO()
    torch.save(tensors, buf)
    atomic_write_bytes(path, buf.getvalue())


def reuse_finished(final: Path, run_hash: str, read_card, what: str, log) -> dict | None:
    """The card of `final` when it was trained with exactly this run; None when there is no `final`; an
    error when `final` comes from other settings or data (never overwritten silently)."""
    if not final.exists():
        return None
    existing = read_card(final)
    if existing.get("training", {}).get("run_hash") == run_hash:
        log(f"{what} already trained with these settings: {final}")
        return existing
    raise ConfigError(f"{final.parent} holds {what} trained with other settings or data; give another "
                      f"--out, or delete {final} and {final.parent / 'checkpoints'} to retrain")


def resume(ckpt_dir: Path, run_hash: str, model, optimizer, read_state, log) -> int:
    """Load the newest rolling checkpoint of this run into model and optimizer; the step to go on from."""
    resumable = sorted(ckpt_dir.glob("step-*.pt"))
    if not resumable:
        return 0
    state = read_state(resumable[-1])
    if not isinstance(state, dict) or state.get("run_hash") != run_hash:
        raise ConfigError(f"{resumable[-1]} belongs to a training run with other settings or data; give "
                          f"another --out, or delete {ckpt_dir} to start over")
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    log(f"resuming from {resumable[-1]} (step {state['step']})")
    return int(state["step"])


def save_rolling_checkpoint(ckpt_dir: Path, step: int, run_hash: str, model, optimizer) -> None:
    """Write step-N.pt for resuming and drop older ones: only the newest is needed."""
    save_tensors(ckpt_dir / f"step-{step:06d}.pt", {"run_hash": run_hash, "step": step,
                                             "model": model.state_dict(), "optimizer": optimizer.state_dict()})
    for old in ckpt_dir.glob("step-*.pt"):
        if old.name != f"step-{step:06d}.pt":
            old.unlink(missing_ok=True)
