"""Meta's Audiobox Aesthetics predictor (Tjandra et al. 2025) as a backbone: the `audiobox-aesthetics`
package's own model code (`audiobox_aesthetics.model.aes.AesMultiOutput`: WavLM-base encoder, a softmax-
weighted sum of its 13 layer outputs per axis, masked mean over time, L2 norm, one linear head per axis),
weights from the Hugging Face cache (`facebook/audiobox-aesthetics`, loaded with the package's own
`from_pretrained`, PyTorchModelHubMixin: config.json + model.safetensors).

Input examples are [2, 160000]: row 0 a 10 s window of 16 kHz audio (zero-padded), row 1 its mask (1 where
the window holds audio), as the package's `make_inference_batch` builds them. Outputs per window: "scores",
the four axes CE, CU, PC, PQ in the model's rating scale (the heads' outputs passed through the inverse of the
checkpoint's target_transform, as `AesPredictor.forward`), and "weight", the fraction of the window holding
audio (the package's weight for averaging windows into a clip score).
"""
from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import torch

from bench.core import weights as weights_registry
from bench.core.errors import CheckpointError
from bench.core.extras import require
from metrics.backbones.base import (Backbone, Needs, WeightsChoice, declare_needs, pick_device, pretrained,
                                    register_backbone, to_device)

BACKBONE = "audiobox-aesthetics"
REPO = "facebook/audiobox-aesthetics"
AXES = ("CE", "CU", "PC", "PQ")
SAMPLE_RATE = 16000
WINDOW = 10 * SAMPLE_RATE
UNTRAINED_INIT = "audiobox-aesthetics-seeded-init-v1"  # bump when the seeded initialisation changes
# Untrained heads have no rating scale: identity transform (labelled untrained everywhere).
_IDENTITY = {axis: {"mean": 0.0, "std": 1.0} for axis in AXES}
CITATION = ("Tjandra et al., Meta Audiobox Aesthetics: Unified Automatic Quality Assessment for Speech, Music, "
            "and Sound, arXiv:2502.05139, 2025")
weights_registry.register_hub_model(weights_registry.HubCard(
    name=BACKBONE, repo=REPO, files=("config.json", "model.safetensors"),
    fetch_patterns=("config.json", "model.safetensors"), backbone=BACKBONE, license="CC-BY-4.0", citation=CITATION))


def _model_class():
    require("audiobox_aesthetics", "aesthetics", "Audiobox Aesthetics (the audiobox-aesthetics package)")
    from audiobox_aesthetics.model.aes import AesMultiOutput

    return AesMultiOutput


def _fetch_hint(reason: str) -> str:
    from huggingface_hub import constants

    return (f"Audiobox Aesthetics could not be loaded from the Hugging Face cache ({constants.HF_HUB_CACHE}): "
            f"{reason}. Fetch it once with network access: `bench weights fetch {BACKBONE}` or `hf download {REPO}` "
            "(config.json and model.safetensors), "
            "or point HF_HOME at a cache that has it.")


def load_pretrained(allow_download: bool):
    """AesMultiOutput.from_pretrained(REPO), the package's own loading path, from the HF cache."""
    cls = _model_class()
    try:
        model = cls.from_pretrained(REPO, local_files_only=not allow_download)
    except (OSError, ValueError, RuntimeError) as exc:
        raise CheckpointError(_fetch_hint(f"{type(exc).__name__}: {str(exc)[:300]}")) from exc
    if not model.target_transform or set(model.target_transform) != set(AXES):
        raise CheckpointError(_fetch_hint(f"its config has no target_transform for {', '.join(AXES)}"))
    return model


def seeded_model(seed: int):
    cls = _model_class()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return cls(target_transform=_IDENTITY)


def snapshot_files() -> tuple[str | None, dict[str, str]]:
    """(commit of the cached snapshot, {weight file: sha256})."""
    from huggingface_hub import try_to_load_from_cache

    commit, hashes = None, {}
    config = try_to_load_from_cache(REPO, "config.json")
    if isinstance(config, str):
        commit = Path(config).parent.name
    path = try_to_load_from_cache(REPO, "model.safetensors")
    if isinstance(path, str) and Path(path).is_file():
        h = hashlib.sha256()
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        hashes["model.safetensors"] = h.hexdigest()
    return commit, hashes


class AestheticsScorer:
    def __init__(self, model, device: str):
        self.model, self.device = model.eval().requires_grad_(False).to(device), device
        self.transform = {axis: (float(model.target_transform[axis]["mean"]), float(model.target_transform[axis]["std"]))
                          for axis in AXES}

    @torch.inference_mode()
    def score(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        """[B, 2, WINDOW] (audio, mask) -> {"scores": [B, 4], "weight": [B, 1]}."""
        if batch.ndim != 3 or batch.shape[1] != 2:
            raise ValueError(f"{BACKBONE} takes [batch, 2 (audio, mask), samples], got {list(batch.shape)}")
        x = to_device(batch, self.device)
        wav, mask = x[:, :1], x[:, 1:] > 0.5
        preds = self.model({"wav": wav, "mask": mask})
        scores = torch.stack([preds[a] * self.transform[a][1] + self.transform[a][0] for a in AXES], dim=-1)
        weight = mask.float().sum(dim=-1) / batch.shape[-1]
        return {"scores": scores.float().cpu().numpy(), "weight": weight.float().cpu().numpy()}


def build(choice: WeightsChoice) -> Backbone:
    if choice.mode == "untrained":
        model = seeded_model(choice.seed)
        provenance = {"weights": "untrained", "backbone": BACKBONE, "seed": choice.seed, "init": UNTRAINED_INIT,
                      "file": None, "sha256": None, "target_transform": "identity (untrained heads have no scale)"}
    else:
        allow = choice.allow_download if choice.allow_download is not None else not weights_registry.offline()
        model = load_pretrained(allow)
        commit, hashes = snapshot_files()
        if not hashes:
            raise CheckpointError(_fetch_hint("no model.safetensors in the cached snapshot"))
        provenance = {"weights": "pretrained", "backbone": BACKBONE, "name": REPO, "file": "model.safetensors",
                      "sha256": hashes["model.safetensors"], "source": "huggingface cache", "revision": commit,
                      "url": f"https://huggingface.co/{REPO}", "hash_published": False, "license": "CC-BY-4.0",
                      "citation": CITATION, "target_transform": model.target_transform}
    provenance["runtime"] = "audiobox_aesthetics.model.aes.AesMultiOutput (float32)"
    scorer = AestheticsScorer(model, pick_device())
    return Backbone(BACKBONE, {"scores": len(AXES), "weight": 1}, provenance, scorer.score, scorer.device)


register_backbone(BACKBONE)(build)
declare_needs(BACKBONE, lambda choice: Needs(
    hf_files=((REPO, "config.json"), (REPO, "model.safetensors")) if pretrained(choice, BACKBONE) else ()))
