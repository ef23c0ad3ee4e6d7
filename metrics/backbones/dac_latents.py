"""DAC 44.1 kHz encoder latents (Kumar et al. 2023) as an embedding backbone: transformers' `DacEncoder`
with the release checkpoint fadtk's DACModel loads (`dac.utils.load_model(tag='latest', model_type='44khz')`,
which resolves to the 0.0.1 release: the `dac-44khz` weights card, shared with the DAC generators through
bench.core.dac_release). fadtk embeds with `model.encoder(audio)`: the continuous 1024-d frames z before the
quantizer's projections, one row per frame (hop 512 samples).
"""
from __future__ import annotations

import numpy as np
import torch

from bench.core import dac_release
from bench.core import weights as weights_registry
from bench.core.errors import CheckpointError
from bench.core.extras import require
from metrics.backbones.base import (Backbone, Needs, WeightsChoice, declare_needs, pick_device, pretrained,
                                    register_backbone, to_device)

BACKBONE = dac_release.DAC_44KHZ.name  # "dac-44khz": the backbone and its weights card share the name
SAMPLE_RATE = 44100
EMBED_DIM = 1024  # the release's latent width (a smaller checkpoint of the same layout gives its own)
UNTRAINED_INIT = "dac-encoder-seeded-init-v1"  # bump when the seeded initialisation changes


def empty_encoder(config: dict):
    from bench.core.torch_compat import ensure_torchaudio_importable, ensure_torchvision_importable

    ensure_torchvision_importable()  # transformers' audio models import them; see bench.core.torch_compat
    ensure_torchaudio_importable()
    require("transformers", "fadtk", "DAC latents (transformers' DacModel)")
    from transformers.models.dac.modeling_dac import DacEncoder

    return DacEncoder(dac_release.dac_config(config, extra="fadtk"))


def load_release(path) -> tuple[torch.nn.Module, int]:
    """(DacEncoder with the encoder weights of a DAC release checkpoint, its latent width)."""
    state, config = dac_release.read_release(path, "DAC checkpoint")
    if config["sample_rate"] != SAMPLE_RATE:
        raise CheckpointError(f"{path}: a {config['sample_rate']} Hz DAC; fad-dac-44khz@fadtk takes the 44.1 kHz "
                              "release (`bench weights fetch dac-44khz`)")
    encoder = empty_encoder(config)
    converted = dac_release.release_to_dac_model(state, config)
    try:
        encoder.load_state_dict({k[len("encoder."):]: v for k, v in converted.items() if k.startswith("encoder.")},
                                strict=True)
    except RuntimeError as exc:
        raise CheckpointError(f"{path}: does not fit DAC's encoder: {str(exc)[:400]}; delete it and run "
                              "`bench weights fetch dac-44khz`") from exc
    return encoder, config["encoder_dim"] * 2 ** len(config["encoder_rates"])


def seeded_encoder(seed: int) -> torch.nn.Module:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return empty_encoder(dac_release.FULL_CONFIG)


def build(choice: WeightsChoice) -> Backbone:
    if choice.mode == "untrained":
        encoder, dim = seeded_encoder(choice.seed), EMBED_DIM
        provenance = {"weights": "untrained", "backbone": BACKBONE, "seed": choice.seed, "init": UNTRAINED_INIT,
                      "file": None, "sha256": None}
    else:
        resolved = weights_registry.resolve(BACKBONE, choice.weights_root, choice.local_file(BACKBONE),
                                            allow_download=choice.allow_download)
        encoder, dim = load_release(resolved.path)
        provenance = {"backbone": BACKBONE, **resolved.provenance()}
    provenance["runtime"] = "transformers DacEncoder (release state dict converted, weight norms folded)"
    device = pick_device()
    encoder = encoder.eval().requires_grad_(False).to(device)

    @torch.inference_mode()
    def run(batch: np.ndarray) -> torch.Tensor:
        if batch.ndim != 3 or batch.shape[1] != 1:
            raise ValueError(f"{BACKBONE} takes mono audio [batch, 1, samples], got {list(batch.shape)}")
        return encoder(to_device(batch, device)).transpose(1, 2)  # [B, frames, 1024]

    return Backbone(BACKBONE, {"embedding": dim}, provenance,
                    lambda batch: {"embedding": run(batch).float().cpu().numpy()}, device,
                    embed_tensors=lambda batch: {"embedding": run(batch)})


register_backbone(BACKBONE)(build)
declare_needs(BACKBONE, lambda choice: Needs(weights=(BACKBONE,) if pretrained(choice, BACKBONE) else ()))
