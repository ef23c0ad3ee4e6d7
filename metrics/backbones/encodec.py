"""EnCodec's encoder (Défossez et al. 2022) as an embedding backbone: transformers' `EncodecEncoder`,
loading Meta's release checkpoints, the files fadtk's EncodecEmbModel loads through the encodec package
(`EncodecModel.encodec_model_24khz()` / `_48khz()`: dl.fbaipublicfiles.com/encodec/v0/, the sha256
prefix in the file name, as torch.hub checks it).

Only the encoder runs: fadtk embeds with `model.encoder(audio)`, the continuous 128-d frames before the
quantizer (so the bandwidth it sets does not matter) and without the model's own loudness normalisation
(which lives in EncodecModel.encode). The release keys `encoder.model.K....` map to EncodecEncoder's
`layers.K....` as transformers' conversion script (convert_encodec_checkpoint_to_pytorch.py) maps them;
weight-normalised convolutions keep their g / v. tests/test_fadtk.py checks the outputs equal the
encodec package's own encoder on identical random weights.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import torch

from bench.core import weights as weights_registry
from bench.core.checkpoints import load_checkpoint
from bench.core.errors import CheckpointError
from bench.core.extras import require
from metrics.backbones.base import (Backbone, Needs, WeightsChoice, declare_needs, pick_device, pretrained,
                                    register_backbone, to_device)

EMBED_DIM = 128
UNTRAINED_INIT = "encodec-encoder-seeded-init-v1"  # bump when the seeded initialisation changes
_URL = "https://dl.fbaipublicfiles.com/encodec/v0/"
_CITATION = "Défossez, Copet, Synnaeve, Adi: High Fidelity Neural Audio Compression, TMLR 2023"


@dataclass(frozen=True)
class EncodecSpec:
    backbone: str
    filename: str
    sample_rate: int
    channels: int
    causal: bool
    norm: str  # "weight_norm" | "time_group_norm"
    segment_s: float | None  # fadtk feeds the 48 kHz model 1 s segments


SPECS = {s.backbone: s for s in (
    EncodecSpec("encodec-24khz", "encodec_24khz-d7cc33bc.th", 24000, 1, True, "weight_norm", None),
    EncodecSpec("encodec-48khz", "encodec_48khz-7e698e3e.th", 48000, 2, False, "time_group_norm", 1.0),
)}
for _spec in SPECS.values():
    weights_registry.register_weights(weights_registry.WeightsCard(
        name=_spec.backbone, filename=_spec.filename, url=_URL + _spec.filename, backbone=_spec.backbone,
        license="MIT (facebookresearch/encodec)", citation=_CITATION,
        sha256_prefix=_spec.filename.rsplit("-", 1)[1].split(".")[0]))


def _transformers():
    from bench.core.torch_compat import ensure_torchaudio_importable, ensure_torchvision_importable

    ensure_torchvision_importable()  # transformers' audio models import them; see bench.core.torch_compat
    ensure_torchaudio_importable()
    return require("transformers", "fadtk", "EnCodec (transformers' EncodecModel)")


def encoder_config(spec: EncodecSpec):
    """The release model's settings (encodec's encodec_model_24khz / _48khz; transformers' conversion)."""
    tf = _transformers()
    return tf.EncodecConfig(sampling_rate=spec.sample_rate, audio_channels=spec.channels,
                            use_causal_conv=spec.causal, norm_type=spec.norm)


def empty_encoder(spec: EncodecSpec):
    _transformers()
    from transformers.models.encodec.modeling_encodec import EncodecEncoder

    return EncodecEncoder(encoder_config(spec))


def release_to_transformers(state: dict) -> dict:
    """The encoder part of a release state dict in EncodecEncoder's names (decoder and quantizer dropped)."""
    out = {}
    for key, value in state.items():
        if not key.startswith("encoder.model."):
            continue
        name = "layers." + key[len("encoder.model."):]
        name = name.replace(".conv.conv.", ".conv.").replace(".conv.norm.", ".norm.")
        name = re.sub(r"\.weight_g$", ".parametrizations.weight.original0", name)
        name = re.sub(r"\.weight_v$", ".parametrizations.weight.original1", name)
        out[name] = value
    return out


def load_release(path, spec: EncodecSpec):
    """EncodecEncoder with the encoder weights of a release checkpoint (a plain state dict)."""
    fix = f"delete it and run `bench weights fetch {spec.backbone}`"
    state = load_checkpoint(path, f"EnCodec checkpoint ({spec.backbone})", fix)
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{path}: not an EnCodec checkpoint (expected a state dict of tensors, as "
                              f"{spec.filename} from {_URL}); {fix}")
    encoder = empty_encoder(spec)
    try:
        encoder.load_state_dict(release_to_transformers(state), strict=True)
    except RuntimeError as exc:
        raise CheckpointError(f"{path}: does not fit the EnCodec {spec.sample_rate // 1000} kHz encoder "
                              f"({spec.filename}): {str(exc)[:400]}; {fix}") from exc
    return encoder


def seeded_encoder(spec: EncodecSpec, seed: int):
    """EncodecEncoder with seeded random weights (PyTorch's default init under a forked global RNG)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return empty_encoder(spec)


class EncodecEmbedder:
    def __init__(self, encoder, spec: EncodecSpec, device: str):
        self.encoder, self.spec, self.device = encoder.eval().requires_grad_(False).to(device), spec, device

    @torch.inference_mode()
    def embed(self, batch: np.ndarray) -> torch.Tensor:
        """Audio [B, channels, n] at the model's rate -> frames [B, T, 128]."""
        if batch.ndim != 3 or batch.shape[1] != self.spec.channels:
            raise ValueError(f"{self.spec.backbone} takes audio [batch, {self.spec.channels}, samples], "
                             f"got {list(batch.shape)}")
        return self.encoder(to_device(batch, self.device)).transpose(1, 2)


def build(spec: EncodecSpec, choice: WeightsChoice) -> Backbone:
    if choice.mode == "untrained":
        encoder = seeded_encoder(spec, choice.seed)
        provenance = {"weights": "untrained", "backbone": spec.backbone, "seed": choice.seed,
                      "init": UNTRAINED_INIT, "file": None, "sha256": None}
    else:
        resolved = weights_registry.resolve(spec.backbone, choice.weights_root, choice.local_file(spec.backbone),
                                            allow_download=choice.allow_download)
        encoder = load_release(resolved.path, spec)
        provenance = {"backbone": spec.backbone, **resolved.provenance()}
    provenance["runtime"] = "transformers EncodecEncoder (release state dict converted)"
    embedder = EncodecEmbedder(encoder, spec, pick_device())

    def embed_tensors(batch):
        return {"embedding": embedder.embed(batch)}

    return Backbone(spec.backbone, {"embedding": EMBED_DIM}, provenance,
                    lambda batch: {"embedding": embedder.embed(batch).float().cpu().numpy()}, embedder.device,
                    embed_tensors=embed_tensors)


for _spec in SPECS.values():
    register_backbone(_spec.backbone)(lambda choice, spec=_spec: build(spec, choice))
    declare_needs(_spec.backbone, lambda choice, spec=_spec: Needs(
        weights=(spec.backbone,) if pretrained(choice, spec.backbone) else ()))
