"""2-d linear layers run in blocks of a fixed number of rows (bench.batching's premise).

BLAS picks its matrix-product kernel by the number of rows, so a [rows, features] linear layer gives an
example other last bits (~1e-7 relative) in a batch of 1, 2 or 8 rows (measured on this CPU for the heads
of VGGish, Cnn14, PaSST, CLAP and the mel-Inception evaluator). Every product here has LINEAR_ROWS rows
(the last block zero-filled), and for a fixed shape a row's bits depend neither on its place nor on the
other rows. Inputs with more dimensions ([batch, tokens, features]) are left as they are: their products
have hundreds of rows per example, and the batching check (bench.batching) catches any that is not
batch-invariant.
"""
from __future__ import annotations

import functools

import torch
import torch.nn.functional as F
from torch import nn

LINEAR_ROWS = 8


def _blocked_forward(layer: nn.Linear, x: torch.Tensor) -> torch.Tensor:
    if x.dim() != 2:
        return F.linear(x, layer.weight, layer.bias)
    n = x.shape[0]
    if n % LINEAR_ROWS:
        x = torch.cat([x, x.new_zeros(LINEAR_ROWS - n % LINEAR_ROWS, x.shape[1])])
    return torch.cat([F.linear(block, layer.weight, layer.bias) for block in x.split(LINEAR_ROWS)])[:n]


def block_linear_rows(model: nn.Module) -> nn.Module:
    """Make every nn.Linear in `model` run 2-d inputs in LINEAR_ROWS-row blocks (in place; same weights)."""
    for module in model.modules():
        if isinstance(module, nn.Linear):
            module.forward = functools.partial(_blocked_forward, module)
    return model
