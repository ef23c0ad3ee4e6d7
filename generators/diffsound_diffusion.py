"""Diffsound's discrete diffusion over VQ token grids: the mask-and-uniform transition (paper eqs. 17-19).

States 0..K-1 are codebook tokens, state K is [MASK]. One forward step from t-1 to t keeps a token with
probability alpha_t, resamples it uniformly over the K tokens with probability K*beta_t, or masks it
with probability gamma_t; [MASK] is absorbing. Cumulatively (eq. 19) q(x_t | x_0) keeps x_0 with
bar_alpha_t (+ bar_beta_t), gives every token bar_beta_t and the mask bar_gamma_t. The schedule is the
paper's linear one: bar_alpha goes 1 -> 0, bar_gamma 0 -> final mask rate (0.9 by default, Table IV),
the uniform mass K*bar_beta 0 -> 1 - final mask rate.

Everything is expressed with `transition(s, t)`: the row-stochastic (K+1)x(K+1) matrix of going from
step s to step t > s, which has the same mask-and-uniform form. Hence the posterior
q(x_s | x_t, x_0) for any s < t, used both for training (s = t-1) and for the fast sampler of the paper's
Table VI that jumps with a time stride (s = t - stride).
"""
from __future__ import annotations

import math

import torch


class MaskUniformSchedule:
    def __init__(self, num_tokens: int, timesteps: int, final_mask_rate: float = 0.9):
        if num_tokens < 2 or timesteps < 1:
            raise ValueError(f"need num_tokens >= 2 and timesteps >= 1, got {num_tokens}, {timesteps}")
        if not 0.0 <= final_mask_rate <= 1.0:
            raise ValueError(f"final_mask_rate must be in [0, 1], got {final_mask_rate}")
        self.K, self.T, self.final_mask_rate = num_tokens, timesteps, final_mask_rate
        frac = torch.arange(timesteps + 1, dtype=torch.float64) / timesteps
        self.bar_alpha = 1.0 - frac  # keep-the-token mass
        self.bar_gamma = final_mask_rate * frac  # mask mass
        self.bar_beta = (1.0 - self.bar_alpha - self.bar_gamma) / num_tokens  # per-token uniform mass

    @property
    def mask(self) -> int:
        return self.K

    def _params(self, s: int, t: int) -> tuple[float, float, float]:
        """(alpha, K*beta, gamma) of the jump s -> t (s < t), from the cumulative schedule."""
        a_s, a_t = float(self.bar_alpha[s]), float(self.bar_alpha[t])
        g_s, g_t = float(self.bar_gamma[s]), float(self.bar_gamma[t])
        alpha = a_t / a_s if a_s > 0 else 0.0
        gamma = 1.0 - (1.0 - g_t) / (1.0 - g_s) if g_s < 1 else 1.0
        return alpha, max(0.0, 1.0 - alpha - gamma), gamma

    def transition(self, s: int, t: int) -> torch.Tensor:
        """Row-stochastic matrix Q[from, to] of going from step s to step t (s <= t)."""
        K = self.K
        if s == t:
            return torch.eye(K + 1, dtype=torch.float64)
        alpha, uniform, gamma = self._params(s, t)
        q = torch.full((K + 1, K + 1), uniform / K, dtype=torch.float64)
        q[:K, :K] += alpha * torch.eye(K, dtype=torch.float64)
        q[:K, K] = gamma
        q[K, :] = 0.0
        q[K, K] = 1.0
        return q

    def cumulative(self, t: int) -> torch.Tensor:
        """q(x_t | x_0) as a matrix [x_0, x_t] (eq. 19)."""
        return self.transition(0, t)

    def q_sample(self, x0: torch.Tensor, t: torch.Tensor, rng: torch.Generator) -> torch.Tensor:
        """Draw x_t ~ q(x_t | x_0) for token grids x0 [B, N] and steps t [B]."""
        a = self.bar_alpha[t].float()[:, None]
        g = self.bar_gamma[t].float()[:, None]
        u = torch.rand(x0.shape, generator=rng)
        uniform_tokens = torch.randint(self.K, x0.shape, generator=rng)
        out = torch.where(u < a, x0, uniform_tokens)  # keep, else resample uniformly ...
        return torch.where((u >= a) & (u < a + g), torch.full_like(x0, self.mask), out)  # ... or mask

    def posterior(self, p_x0: torch.Tensor, x_t: torch.Tensor, s: int, t: int) -> torch.Tensor:
        """p(x_s | x_t) = sum_x0 q(x_s | x_t, x0) p(x0), for s < t.

        p_x0: [B, N, K] probabilities of the clean token; x_t: [B, N]. Returns [B, N, K+1].
        q(x_s | x_t, x0) = Q_{s->t}[x_s, x_t] * barQ_s[x0, x_s] / barQ_t[x0, x_t] (Bayes)."""
        dtype = p_x0.dtype
        q_st = self.transition(s, t).to(dtype)  # [K+1, K+1]
        bar_s = self.cumulative(s).to(dtype)[:self.K]  # [K, K+1] (x0 is never the mask)
        bar_t = self.cumulative(t).to(dtype)[:self.K]
        denom = bar_t[:, x_t].permute(1, 2, 0).clamp_min(1e-30)  # [B, N, K]: barQ_t[x0, x_t]
        weights = p_x0 / denom
        out = (weights @ bar_s) * q_st[:, x_t].permute(1, 2, 0)  # [B, N, K+1]
        return out / out.sum(-1, keepdim=True).clamp_min(1e-30)

    def stride_chain(self, stride: int, start: int | None = None) -> list[tuple[int, int]]:
        """The (t, s) jumps of the sampler: T, T-stride, ..., down to 0 (the last jump may be shorter)."""
        if stride < 1:
            raise ValueError(f"time stride must be >= 1, got {stride}")
        t = self.T if start is None else start
        chain = []
        while t > 0:
            s = max(0, t - stride)
            chain.append((t, s))
            t = s
        return chain

    def sample_prior(self, shape: tuple[int, ...], rng: torch.Generator) -> torch.Tensor:
        """x_T ~ p(x_T): mask with the final mask rate, otherwise a uniform token (eq. 18)."""
        u = torch.rand(shape, generator=rng)
        tokens = torch.randint(self.K, shape, generator=rng)
        return torch.where(u < float(self.bar_gamma[self.T]), torch.full_like(tokens, self.mask), tokens)


def steps_for_stride(timesteps: int, stride: int) -> int:
    return math.ceil(timesteps / stride)
