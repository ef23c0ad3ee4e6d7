"""The DAC architecture with the parameter names of descript-audio-codec's release weights.pth.

The harness's own DAC until it moved to transformers' DacModel (generators/dac_codec.py); kept here as the
reference the parity tests compare DacModel against on identical random weights, and as the writer of
release-format checkpoints (weight_g / weight_v, `encoder.block.N`, `decoder.model.N`) for the loading tests.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


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
            raise ValueError(f"n_codebooks must be between 1 and {self.n_codebooks}, got {n}")
        return n


def random_release_codec(config: dict, seed: int) -> DACCodec:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return DACCodec(**config).eval().requires_grad_(False)


def write_release_checkpoint(path, codec: DACCodec) -> None:
    """The layout of descript-audio-codec's weights.pth: state_dict + metadata.kwargs."""
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"state_dict": codec.state_dict(), "metadata": {"kwargs": {**codec.config, "quantizer_dropout": 0.0}}},
               path)
