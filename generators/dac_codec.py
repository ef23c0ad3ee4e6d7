"""The Descript Audio Codec (DAC, Kumar et al. 2023): transformers' DacModel, loading the release weights.

The network is transformers' `DacModel` (the [generators] extra). The release checkpoint
(descript-audio-codec's weights.pth: weight-normalised convolutions stored as weight_g / weight_v under
`encoder.block.N` / `decoder.model.N`) is converted key for key on loading (`release_to_dac_model`): the
weight norms are folded into plain weights, as transformers' own conversion script does. Why not
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
import re
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from bench.core.checkpoints import load_checkpoint
from bench.core.errors import CheckpointError, ConfigError
from bench.core.extras import require
from bench.core.torch_compat import ensure_torchaudio_importable, ensure_torchvision_importable
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



def _dac_model_class():
    ensure_torchvision_importable()  # transformers' audio modules import them; see bench.core.torch_compat
    ensure_torchaudio_importable()
    return require("transformers", "generators", "DAC (transformers' DacModel)").DacModel


def _dac_config(config: dict):
    """transformers' DacConfig for one of our configs; DacModel derives the latent width and the decoder
    rates from the encoder's, so other layouts are refused rather than built differently."""
    transformers = require("transformers", "generators", "DAC (transformers' DacConfig)")
    if not isinstance(config["codebook_dim"], int):
        raise ConfigError(f"DAC codec: per-codebook dimensions {config['codebook_dim']!r} are not supported; "
                          "codebook_dim must be one integer")
    latent = config["encoder_dim"] * 2 ** len(config["encoder_rates"])
    if config.get("latent_dim") not in (None, latent) or list(config["decoder_rates"]) != list(
            config["encoder_rates"])[::-1]:
        raise ConfigError(f"DAC codec: latent_dim {config.get('latent_dim')} / decoder_rates "
                          f"{config['decoder_rates']} are not supported; DacModel needs latent_dim = encoder_dim x "
                          f"2^len(encoder_rates) ({latent}) and decoder_rates = reversed encoder_rates")
    return transformers.DacConfig(
        encoder_hidden_size=config["encoder_dim"], downsampling_ratios=list(config["encoder_rates"]),
        decoder_hidden_size=config["decoder_dim"], n_codebooks=config["n_codebooks"],
        codebook_size=config["codebook_size"], codebook_dim=config["codebook_dim"],
        sampling_rate=config["sample_rate"])


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
        self.model = _dac_model_class()(_dac_config(self.config))
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


_RESIDUAL = {"0": "snake1", "1": "conv1", "2": "snake2", "3": "conv2"}


def _release_name(name: str, n_enc: int, n_dec: int) -> str:
    """DacModel's name for a parameter of the release (descript-audio-codec) state dict."""
    def unit(rest: str, j: int) -> str:  # a residual unit's `block.K.` inside
        m = re.match(r"block\.(\d)\.(.*)", rest)
        return f"res_unit{j}.{_RESIDUAL[m.group(1)]}.{m.group(2)}" if m else rest

    if m := re.fullmatch(r"encoder\.block\.(\d+)\.(.*)", name):
        k, rest = int(m.group(1)), m.group(2)
        if k == 0:
            return f"encoder.conv1.{rest}"
        if k == n_enc + 1:
            return f"encoder.snake1.{rest}"
        if k == n_enc + 2:
            return f"encoder.conv2.{rest}"
        j, inner = re.fullmatch(r"block\.(\d)\.(.*)", rest).groups()
        j = int(j)
        return f"encoder.block.{k - 1}." + (unit(inner, j + 1) if j < 3 else
                                            f"{('snake1', 'conv1')[j - 3]}.{inner}")
    if m := re.fullmatch(r"decoder\.model\.(\d+)\.(.*)", name):
        k, rest = int(m.group(1)), m.group(2)
        if k == 0:
            return f"decoder.conv1.{rest}"
        if k == n_dec + 1:
            return f"decoder.snake1.{rest}"
        if k == n_dec + 2:
            return f"decoder.conv2.{rest}"
        j, inner = re.fullmatch(r"block\.(\d)\.(.*)", rest).groups()
        j = int(j)
        return f"decoder.block.{k - 1}." + (f"{('snake1', 'conv_t1')[j]}.{inner}" if j < 2 else unit(inner, j - 1))
    return name  # quantizer.quantizers.N.{in_proj,out_proj,codebook}: the same names


def release_to_dac_model(state: dict, config: dict) -> dict:
    """A release state dict in DacModel's names, weight norms folded (w = g v / |v|, norm over dims 1, 2)."""
    n_enc, n_dec = len(config["encoder_rates"]), len(config["decoder_rates"])
    out = {}
    for key, value in state.items():
        module, _, param = key.rpartition(".")
        if param == "weight_g":
            continue
        if param == "weight_v":
            g = state.get(f"{module}.weight_g")
            if g is None:
                raise CheckpointError(f"DAC checkpoint: {key} has no {module}.weight_g beside it")
            key, value = f"{module}.weight", value * (g / value.norm(dim=(1, 2), keepdim=True))
        try:
            out[_release_name(key, n_enc, n_dec)] = value
        except (AttributeError, KeyError, ValueError):  # a path the release layout does not have
            out[key] = value  # kept as is: the strict load names it
    return out


def random_codec(config: dict, seed: int) -> DACCodec:
    """DAC of `config` with seeded random weights (untrained; DacModel's own initialisation)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        codec = DACCodec(**config)
    return codec.eval().requires_grad_(False)


def load_codec_file(path: str | Path, source: str) -> DACCodec:
    """A DAC release checkpoint ({"state_dict", "metadata": {"kwargs"}}) loaded without unpickling code."""
    from generators.trainable import load_model_state

    payload = load_checkpoint(path, source, "delete it and run `bench weights fetch dac-44khz`")
    if not isinstance(payload, dict) or "state_dict" not in payload:
        raise CheckpointError(f"{source} ({path}) is not a DAC checkpoint: expected a dict with 'state_dict' "
                              "and 'metadata' (the layout of descript-audio-codec's weights.pth)")
    kwargs = dict((payload.get("metadata") or {}).get("kwargs") or FULL_CONFIG)
    unknown = set(kwargs) - set(FULL_CONFIG) - _RELEASE_ONLY_KWARGS
    if unknown:
        raise CheckpointError(f"{source} ({path}): unsupported DAC settings in metadata.kwargs: {sorted(unknown)}")
    config = {k: kwargs.get(k, v) for k, v in FULL_CONFIG.items()}
    codec = DACCodec(**config)
    load_model_state(codec.model, release_to_dac_model(payload["state_dict"], config), f"{source} ({path})")
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
