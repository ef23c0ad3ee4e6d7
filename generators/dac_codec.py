"""The Descript Audio Codec (DAC, Kumar et al. 2023) architecture, state-dict compatible with its releases.

Why our own module rather than `import dac`: descript-audio-codec 1.0.0 needs descript-audiotools, which
pins protobuf<3.20, while ray 2.60.0 (a project dependency) needs protobuf>=3.20.3, so pip cannot install
both. The architecture is small and fully described by the release checkpoints, so it is rebuilt here
with the same parameter names: the released `weights.pth` loads into it key for key (weight-normalised
convolutions stored as weight_g / weight_v, Snake alphas, per-codebook in_proj / out_proj / codebook).

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

from bench.core.errors import CheckpointError, ConfigError
from bench.core.weights import WeightsCard, register_weights

DAC_44KHZ = register_weights(WeightsCard(
    name="dac-44khz",
    filename="dac_weights_44khz_8kbps_0.0.1.pth",
    url="https://github.com/descriptinc/descript-audio-codec/releases/download/0.0.1/weights.pth",
    backbone="dac",
    license="MIT (descriptinc/descript-audio-codec)",
    citation="Kumar et al., High-Fidelity Audio Compression with Improved RVQGAN, NeurIPS 2023",
))

# The released 44.1 kHz model (76.7M parameters; 9 codebooks x 1024 entries of dim 8, hop 512).
FULL_CONFIG = {"encoder_dim": 64, "encoder_rates": [2, 4, 8, 8], "latent_dim": None, "decoder_dim": 1536,
               "decoder_rates": [8, 8, 4, 2], "n_codebooks": 9, "codebook_size": 1024, "codebook_dim": 8,
               "sample_rate": 44100}
# Same layout at a size that runs in milliseconds on a CPU (hop 64); for tests and the tiny DiscoDiff.
TINY_CONFIG = {"encoder_dim": 4, "encoder_rates": [2, 4, 8], "latent_dim": None, "decoder_dim": 32,
               "decoder_rates": [8, 4, 2], "n_codebooks": 9, "codebook_size": 64, "codebook_dim": 8,
               "sample_rate": 44100}
_RELEASE_ONLY_KWARGS = {"quantizer_dropout"}  # training-time options in the release metadata


class WNConv1d(nn.Module):
    """Conv1d with weight normalisation (w = g v / |v|, norm over all but dim 0), DAC's parameter names."""

    transpose = False

    def __init__(self, c_in: int, c_out: int, kernel_size: int, stride: int = 1, padding: int = 0,
                 dilation: int = 1):
        super().__init__()
        conv = (nn.ConvTranspose1d if self.transpose else nn.Conv1d)(
            c_in, c_out, kernel_size, stride=stride, padding=padding, dilation=dilation)
        v = conv.weight.detach().clone()
        self.weight_g = nn.Parameter(v.norm(dim=(1, 2), keepdim=True))
        self.weight_v = nn.Parameter(v)
        self.bias = nn.Parameter(conv.bias.detach().clone())
        self.stride, self.padding, self.dilation = stride, padding, dilation

    def weight(self) -> torch.Tensor:
        return self.weight_v * (self.weight_g / self.weight_v.norm(dim=(1, 2), keepdim=True))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv1d(x, self.weight(), self.bias, self.stride, self.padding, self.dilation)


class WNConvTranspose1d(WNConv1d):
    transpose = True

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv_transpose1d(x, self.weight(), self.bias, self.stride, self.padding)


class Snake1d(nn.Module):
    """x + sin^2(alpha x) / alpha, one alpha per channel."""

    def __init__(self, channels: int):
        super().__init__()
        self.alpha = nn.Parameter(torch.ones(1, channels, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + (self.alpha + 1e-9).reciprocal() * torch.sin(self.alpha * x).pow(2)


class ResidualUnit(nn.Module):
    def __init__(self, dim: int, dilation: int):
        super().__init__()
        self.block = nn.Sequential(Snake1d(dim), WNConv1d(dim, dim, 7, dilation=dilation, padding=3 * dilation),
                                   Snake1d(dim), WNConv1d(dim, dim, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.block(x)
        crop = (x.shape[-1] - y.shape[-1]) // 2
        return (x[..., crop:-crop] if crop > 0 else x) + y


def _residual_stack(dim: int) -> list[nn.Module]:
    return [ResidualUnit(dim, 1), ResidualUnit(dim, 3), ResidualUnit(dim, 9)]


class EncoderBlock(nn.Module):
    def __init__(self, dim: int, stride: int):
        super().__init__()
        self.block = nn.Sequential(*_residual_stack(dim // 2), Snake1d(dim // 2),
                                   WNConv1d(dim // 2, dim, 2 * stride, stride=stride, padding=math.ceil(stride / 2)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block(x)


class DecoderBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int):
        super().__init__()
        self.block = nn.Sequential(Snake1d(c_in), WNConvTranspose1d(c_in, c_out, 2 * stride, stride=stride,
                                                                    padding=math.ceil(stride / 2)),
                                   *_residual_stack(c_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block(x)


class Encoder(nn.Module):
    def __init__(self, d_model: int, strides: list[int], d_latent: int):
        super().__init__()
        layers: list[nn.Module] = [WNConv1d(1, d_model, 7, padding=3)]
        for stride in strides:
            d_model *= 2
            layers.append(EncoderBlock(d_model, stride))
        layers += [Snake1d(d_model), WNConv1d(d_model, d_latent, 3, padding=1)]
        self.block = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block(x)


class Decoder(nn.Module):
    def __init__(self, c_in: int, channels: int, rates: list[int]):
        super().__init__()
        layers: list[nn.Module] = [WNConv1d(c_in, channels, 7, padding=3)]
        for i, stride in enumerate(rates):
            layers.append(DecoderBlock(channels // 2 ** i, channels // 2 ** (i + 1), stride))
        out = channels // 2 ** len(rates)
        layers += [Snake1d(out), WNConv1d(out, 1, 7, padding=3), nn.Tanh()]
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


class VectorQuantize(nn.Module):
    def __init__(self, input_dim: int, codebook_size: int, codebook_dim: int):
        super().__init__()
        self.in_proj = WNConv1d(input_dim, codebook_dim, 1)
        self.out_proj = WNConv1d(codebook_dim, input_dim, 1)
        self.codebook = nn.Embedding(codebook_size, codebook_dim)


class ResidualVectorQuantize(nn.Module):
    def __init__(self, input_dim: int, n_codebooks: int, codebook_size: int, codebook_dim: int):
        super().__init__()
        self.quantizers = nn.ModuleList(VectorQuantize(input_dim, codebook_size, codebook_dim)
                                        for _ in range(n_codebooks))


class DACCodec(nn.Module):
    """DAC encoder, residual vector quantiser and decoder; inference only."""

    def __init__(self, encoder_dim: int = 64, encoder_rates=(2, 4, 8, 8), latent_dim: int | None = None,
                 decoder_dim: int = 1536, decoder_rates=(8, 8, 4, 2), n_codebooks: int = 9,
                 codebook_size: int = 1024, codebook_dim: int = 8, sample_rate: int = 44100):
        super().__init__()
        if not isinstance(codebook_dim, int):
            raise ConfigError(f"DAC codec: per-codebook dimensions {codebook_dim!r} are not supported; "
                              "codebook_dim must be one integer")
        latent_dim = latent_dim or encoder_dim * 2 ** len(encoder_rates)
        self.config = {"encoder_dim": encoder_dim, "encoder_rates": list(encoder_rates), "latent_dim": latent_dim,
                       "decoder_dim": decoder_dim, "decoder_rates": list(decoder_rates),
                       "n_codebooks": n_codebooks, "codebook_size": codebook_size, "codebook_dim": codebook_dim,
                       "sample_rate": sample_rate}
        self.sample_rate = sample_rate
        self.hop_length = math.prod(encoder_rates)
        self.n_codebooks, self.codebook_dim = n_codebooks, codebook_dim
        self.encoder = Encoder(encoder_dim, list(encoder_rates), latent_dim)
        self.quantizer = ResidualVectorQuantize(latent_dim, n_codebooks, codebook_size, codebook_dim)
        self.decoder = Decoder(latent_dim, decoder_dim, list(decoder_rates))

    def codebook(self, i: int) -> torch.Tensor:
        return self.quantizer.quantizers[i].codebook.weight

    def encode(self, audio: torch.Tensor) -> torch.Tensor:
        """audio [B, 1, N] at self.sample_rate -> continuous embedding z [B, D, ceil(N / hop)]."""
        right = -audio.shape[-1] % self.hop_length
        return self.encoder(F.pad(audio, (0, right)))

    def latent_query(self, z: torch.Tensor, n_codebooks: int | None = None) -> tuple[torch.Tensor, list]:
        """(codes [B, K, T], [X_0 .. X_{K-1}] each [B, d, T]): DiscoDiff eq. 1 with DAC's own lookup."""
        n = self._check_n(n_codebooks)
        residual, codes, latents = z, [], []
        for i in range(n):
            vq = self.quantizer.quantizers[i]
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
        return sum(self.quantizer.quantizers[i].out_proj(x) for i, x in enumerate(latents))

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(z)

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
    """DAC of `config` with seeded random weights (untrained)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        codec = DACCodec(**config)
    return codec.eval().requires_grad_(False)


def load_codec_file(path: str | Path, source: str) -> DACCodec:
    """A DAC release checkpoint ({"state_dict", "metadata": {"kwargs"}}) loaded without unpickling code."""
    from generators.trainable import load_model_state

    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise CheckpointError(f"{source} ({path}) cannot be read as a DAC checkpoint with weights_only loading: "
                              f"{exc}. Delete it and run `bench weights fetch dac-44khz`.") from exc
    if not isinstance(payload, dict) or "state_dict" not in payload:
        raise CheckpointError(f"{source} ({path}) is not a DAC checkpoint: expected a dict with 'state_dict' "
                              "and 'metadata' (the layout of descript-audio-codec's weights.pth)")
    kwargs = dict((payload.get("metadata") or {}).get("kwargs") or FULL_CONFIG)
    unknown = set(kwargs) - set(FULL_CONFIG) - _RELEASE_ONLY_KWARGS
    if unknown:
        raise CheckpointError(f"{source} ({path}): unsupported DAC settings in metadata.kwargs: {sorted(unknown)}")
    config = {k: kwargs.get(k, v) for k, v in FULL_CONFIG.items()}
    codec = DACCodec(**config)
    load_model_state(codec, payload["state_dict"], f"{source} ({path})")
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
