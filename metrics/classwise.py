"""Kernels over classifier outputs: Inception Score and KL divergences between paired clips.

Pure float64 numpy functions, no I/O. The formulas follow the published toolkits (docs/protocols.md#panns-fd-is-and-kl):
IS as in audioldm_eval / torch-fidelity (shuffle with numpy RandomState(2020), 10 contiguous splits,
population std), KL as torch.nn.functional.kl_div with eps added to the predicted side.
"""
from __future__ import annotations

import numpy as np


def softmax(logits: np.ndarray) -> np.ndarray:
    z = np.asarray(logits, np.float64)
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def log_softmax(logits: np.ndarray) -> np.ndarray:
    z = np.asarray(logits, np.float64)
    z = z - z.max(axis=-1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))


def sigmoid(logits: np.ndarray) -> np.ndarray:
    z = np.asarray(logits, np.float64)
    return np.where(z >= 0, 1.0 / (1.0 + np.exp(-np.abs(z))), np.exp(-np.abs(z)) / (1.0 + np.exp(-np.abs(z))))


def inception_score(logits: np.ndarray, splits: int = 10, shuffle_seed: int | None = 2020) -> tuple[float, float]:
    """Mean and (population) std over splits of exp(E_x KL(p(y|x) || p(y))), p(y) per split."""
    logits = np.asarray(logits, np.float64)
    n = len(logits)
    if logits.ndim != 2 or n < splits:
        raise ValueError(f"inception score needs [N, classes] logits with N >= splits ({splits}), got "
                         f"{list(logits.shape)}")
    if shuffle_seed is not None:
        logits = logits[np.random.RandomState(shuffle_seed).permutation(n)]
    p, log_p = softmax(logits), log_softmax(logits)
    scores = []
    for i in range(splits):
        lo, hi = i * n // splits, (i + 1) * n // splits
        marginal = p[lo:hi].mean(axis=0, keepdims=True)
        kl = (p[lo:hi] * (log_p[lo:hi] - np.log(marginal))).sum(axis=1)
        scores.append(float(np.exp(kl.mean())))
    return float(np.mean(scores)), float(np.std(scores))


def kl_per_pair(target: np.ndarray, predicted: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    """sum_c t_c (log t_c - log(p_c + eps)) for each row: KL(target || predicted), 0 log 0 = 0."""
    t, p = np.asarray(target, np.float64), np.asarray(predicted, np.float64)
    if t.shape != p.shape:
        raise ValueError(f"paired outputs differ in shape: {t.shape} vs {p.shape}")
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(t > 0, t * (np.log(t) - np.log(p + eps)), 0.0)
    return terms.sum(axis=-1)
