"""The Descript Audio Codec (DAC, Kumar et al. 2023): transformers' DacModel, loading the release weights.

The network is transformers' `DacModel` (the [generators] extra). The release checkpoint
(descript-audio-codec's weights.pth) is converted key for key on loading (bench.core.dac_release, shared
with the DAC-latent FAD backbone). Why not
`import dac`: descript-audio-codec 1.0.0 needs descript-audiotools, which pins protobuf<3.20, while ray
(the [ray] extra) needs protobuf>=3.20.3, so pip cannot install both into one environment ([all]).
tests/test_dac_parity.py checks DacModel against the release architecture on identical random weights.

DiscoDiff's "latent query" (paper eq. 1) is `latent_query`: residual z_0 = z; for each codebook i,
x_hat_i = P_i z_i (in_proj), X_i = the codebook entry DAC's quantizer picks for it (nearest after l2
normalisation, DAC's lookup rule), z_{i+1} = z_i - Q_i X_i (out_proj). `snap` + `embed` are eq. 4:
snap each generated latent to the nearest entry of its codebook (plain L2, as the paper writes it) and sum
the out-projections.
"""
from __future__ import annotations

import math
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from bench.core.dac_release import (DAC_44KHZ, FULL_CONFIG, TINY_CONFIG, dac_config, read_release,  # noqa: F401
                                    release_to_dac_model)
from bench.core.errors import CheckpointError, ConfigError
from bench.core.extras import require
from bench.core.torch_compat import ensure_torchaudio_importable, ensure_torchvision_importable


def _dac_model_class():
    ensure_torchvision_importable()  # transformers' audio modules import them; see bench.core.torch_compat
    ensure_torchaudio_importable()
    return require("transformers", "generators", "DAC (transformers' DacModel)").DacModel


class DACCodec(nn.Module):
    """DAC encoder, residual vector quantiser and decoder (transformers' DacModel); inference only."""

    def __init__(self, encoder_dim: int = 64, encoder_rates=(2, 4, 8, 8), latent_dim: int | None = None,
                 decoder_dim: int = 1536, decoder_rates=(8, 8, 4, 2), n_codebooks: int = 9,
                 codebook_size: int = 1024, codebook_dim: int = 8, sample_rate: int = 44100):
        super().__init__()
        self.config = {"encoder_dim": encoder_dim, "encoder_rates": list(encoder_rates),
                       "latent_dim": latent_dim or encoder_dim * 2 ** len(encoder_rates),
                       "decoder_dim": decoder_dim, "decoder_rates": list(decoder_rates),
                       "n_codebooks": n_codebooks, "codebook_size": codebook_size, "codebook_dim": codebook_dim,
                       "sample_rate": sample_rate}
        self.model = _dac_model_class()(dac_config(self.config))
        self.sample_rate = sample_rate
        self.hop_length = math.prod(encoder_rates)
        self.n_codebooks, self.codebook_dim = n_codebooks, codebook_dim

    def codebook(self, i: int) -> torch.Tensor:
        return self.model.quantizer.quantizers[i].codebook.weight

    def encode(self, audio: torch.Tensor) -> torch.Tensor:
        """audio [B, 1, N] at self.sample_rate -> continuous embedding z [B, D, ceil(N / hop)]."""
        right = -audio.shape[-1] % self.hop_length
        return self.model.encoder(F.pad(audio, (0, right)))

    def latent_query(self, z: torch.Tensor, n_codebooks: int | None = None) -> tuple[torch.Tensor, list]:
        """(codes [B, K, T], [X_0 .. X_{K-1}] each [B, d, T]): DiscoDiff eq. 1 with DAC's own lookup."""
        n = self._check_n(n_codebooks)
        residual, codes, latents = z, [], []
        for i in range(n):
            vq = self.model.quantizer.quantizers[i]
            x_hat = vq.in_proj(residual)
            flat = F.normalize(x_hat.transpose(1, 2).reshape(-1, self.codebook_dim), dim=1)
            book = F.normalize(self.codebook(i), dim=1)
            idx = (flat @ book.t()).argmax(dim=1).reshape(z.shape[0], -1)  # max cosine = min l2 of unit vectors
            x = F.embedding(idx, self.codebook(i)).transpose(1, 2)
            residual = residual - vq.out_proj(x)
            codes.append(idx)
            latents.append(x)
        return torch.stack(codes, dim=1), latents

    def snap(self, latent: torch.Tensor, i: int) -> torch.Tensor:
        """Each frame of latent [B, d, T] replaced by its nearest (L2) entry of codebook i (paper eq. 4)."""
        book = self.codebook(i)
        flat = latent.transpose(1, 2).reshape(-1, self.codebook_dim)
        idx = torch.cdist(flat.double(), book.double()).argmin(dim=1)
        return book[idx].reshape(latent.shape[0], latent.shape[2], -1).transpose(1, 2)

    def embed(self, latents: list[torch.Tensor]) -> torch.Tensor:
        """z = sum_i Q_i X_i over the latents given (the first len(latents) codebooks)."""
        self._check_n(len(latents))
        return sum(self.model.quantizer.quantizers[i].out_proj(x) for i, x in enumerate(latents))

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.model.decoder(z)

    @torch.no_grad()
    def resynthesize(self, audio: torch.Tensor, n_codebooks: int | None = None) -> torch.Tensor:
        """Encode, quantise with the first n codebooks, decode, cut to the input length."""
        _, latents = self.latent_query(self.encode(audio), n_codebooks)
        return self.decode(self.embed(latents))[..., :audio.shape[-1]]

    def _check_n(self, n: int | None) -> int:
        n = self.n_codebooks if n is None else n
        if not 1 <= n <= self.n_codebooks:
            raise ConfigError(f"n_codebooks must be between 1 and {self.n_codebooks} for this DAC, got {n}")
        return n


def random_codec(config: dict, seed: int) -> DACCodec:
    """DAC of `config` with seeded random weights (untrained; DacModel's own initialisation)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        codec = DACCodec(**config)
    return codec.eval().requires_grad_(False)


def load_codec_file(path: str | Path, source: str) -> DACCodec:
    """A DAC release checkpoint ({"state_dict", "metadata": {"kwargs"}}) loaded without unpickling code."""
    from generators.trainable import load_model_state

    state, config = read_release(path, source)
    codec = DACCodec(**config)
    load_model_state(codec.model, release_to_dac_model(state, config), f"{source} ({path})")
    return codec.eval().requires_grad_(False)


def load_codec(spec: str, cache_root: Path | None = None, seed: int = 0) -> tuple[DACCodec, dict]:
    """(codec, provenance) for `spec`: "dac-44khz" (release weights from the cache, downloaded on first
    use unless offline), "untrained" (full-size DAC, seeded random), "untrained-tiny", or a file path."""
    if spec == "untrained":
        return random_codec(FULL_CONFIG, seed), {"codec": "dac-44khz-architecture", "weights": "untrained",
                                                 "seed": seed}
    if spec == "untrained-tiny":
        return random_codec(TINY_CONFIG, seed), {"codec": "dac-tiny", "weights": "untrained", "seed": seed}
    from bench.core import weights
    from bench.core.cache import default_cache_root

    local = None if spec == DAC_44KHZ.name else spec
    if local is not None and not Path(local).expanduser().is_file():
        raise CheckpointError(f"DAC codec {spec!r}: not a file, and not one of 'dac-44khz', 'untrained', "
                              "'untrained-tiny'")
    resolved = weights.resolve(DAC_44KHZ.name, cache_root or default_cache_root(), local_path=local)
    return load_codec_file(resolved.path, "DAC checkpoint"), {"codec": "dac", **resolved.provenance()}
