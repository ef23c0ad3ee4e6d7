"""The one optimisation loop every trainer here runs (generators, the mel-inception evaluator, the captioner).

Each trainer supplies the loss of a step (from its own seeded batch and generators); the loop owns what
they share: a fixed intra-op thread count (part of bit-identity), zero-grad / backward / optional gradient
clipping / step, a per-step learning rate, the progress bar, the loss history, and a checkpoint every
`every` steps. Resuming is the trainer's (it knows its checkpoint format): the loop starts at `start`.
"""
from __future__ import annotations

import math
from collections.abc import Callable

import torch
from tqdm import tqdm

from bench.core.errors import ConfigError


def run_steps(model: torch.nn.Module, optimizer: torch.optim.Optimizer, start: int, steps: int,
              step_loss: Callable[[int], torch.Tensor], *, every: int, checkpoint: Callable[[int], None],
              desc: str, progress: bool, lr_at: Callable[[int], float] | None = None,
              grad_clip: float | None = None, after_step: Callable[[int, float], None] | None = None) -> list[float]:
    """Steps start .. steps-1; returns each step's loss. `checkpoint(done)` runs after every `every`-th step;
    a non-finite loss stops with an error naming the step."""
    model.train()
    losses = []
    bar = tqdm(total=steps, initial=start, unit="step", disable=not progress, desc=desc)
    for step in range(start, steps):
        if lr_at is not None:
            for group in optimizer.param_groups:
                group["lr"] = lr_at(step)
        loss = step_loss(step)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        value = float(loss.detach())
        if not math.isfinite(value):
            bar.close()
            raise ConfigError(f"{desc}: loss became {value} at step {step + 1}; lower the learning rate (--lr)")
        if grad_clip is not None:
            torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
        optimizer.step()
        losses.append(value)
        bar.update(1)
        bar.set_postfix(loss=f"{value:.4f}")
        if after_step is not None:
            after_step(step + 1, value)
        if (step + 1) % every == 0:
            checkpoint(step + 1)
    bar.close()
    return losses
