"""The Descript Audio Codec's release checkpoint (descript-audio-codec's weights.pth) in transformers' DacModel.

Shared by the DAC generators (generators/dac_codec.py) and the DAC-latent FAD backbone
(metrics/backbones/dac_latents.py): the weights card, the release layout, and the key-for-key conversion
(`release_to_dac_model`: weight-normalised convolutions stored as weight_g / weight_v under `encoder.block.N`
/ `decoder.model.N`, folded into plain weights as transformers' own conversion script does).
"""
from __future__ import annotations

import re
from pathlib import Path

from bench.core.checkpoints import load_checkpoint
from bench.core.errors import CheckpointError, ConfigError
from bench.core.extras import require
from bench.core.weights import WeightsCard, register_weights

DAC_44KHZ = register_weights(WeightsCard(
    name="dac-44khz",
    filename="dac_weights_44khz_8kbps_0.0.1.pth",
    url="https://github.com/descriptinc/descript-audio-codec/releases/download/0.0.1/weights.pth",
    backbone="dac-44khz",  # --checkpoint dac-44khz=PATH (the fad-dac-44khz@fadtk backbone)
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


def dac_config(config: dict, extra: str = "generators"):
    """transformers' DacConfig for one of our configs; DacModel derives the latent width and the decoder
    rates from the encoder's, so other layouts are refused rather than built differently."""
    transformers = require("transformers", extra, "DAC (transformers' DacConfig)")
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



def read_release(path: str | Path, source: str) -> tuple[dict, dict]:
    """(state dict, config) of a DAC release checkpoint ({"state_dict", "metadata": {"kwargs"}}), loaded
    without unpickling code; the config is FULL_CONFIG updated by the file's metadata."""
    payload = load_checkpoint(path, source, "delete it and run `bench weights fetch dac-44khz`")
    if not isinstance(payload, dict) or "state_dict" not in payload:
        raise CheckpointError(f"{source} ({path}) is not a DAC checkpoint: expected a dict with 'state_dict' "
                              "and 'metadata' (the layout of descript-audio-codec's weights.pth)")
    kwargs = dict((payload.get("metadata") or {}).get("kwargs") or FULL_CONFIG)
    unknown = set(kwargs) - set(FULL_CONFIG) - _RELEASE_ONLY_KWARGS
    if unknown:
        raise CheckpointError(f"{source} ({path}): unsupported DAC settings in metadata.kwargs: {sorted(unknown)}")
    return payload["state_dict"], {k: kwargs.get(k, v) for k, v in FULL_CONFIG.items()}
