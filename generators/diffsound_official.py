"""The Diffsound authors' published checkpoints, read into the `diffsound` paper config.

Two files (yangdongchao/Text-to-sound-Synthesis; the readme points to https://huggingface.co/Dongchao/Diffsound):
- the diffusion checkpoint (their solver's `torch.save`): {"model": DALLE state dict, "ema": the EMA of
  DALLE.transformer, "last_epoch", ...}. "model" holds `content_codec.*` (the VQ-VAE the model was trained
  with) and `transformer.*` (the CLIP text tower as `transformer.condition_emb.*`, the network as
  `transformer.transformer.*`). Sampling uses the EMA weights, as their evaluation script does.
- the VQ-VAE checkpoint (PyTorch Lightning): {"state_dict": {"encoder.*", "decoder.*", "quantize.*",
  "quant_conv.*", "post_quant_conv.*", "loss.discriminator.*", ...}}: only its discriminator is taken
  (for fine-tuning with the adversarial loss); the codec itself comes with the diffusion checkpoint.
Derived tables in their state dicts are dropped after a shape check: the schedule's log-probabilities
(`transformer.log_*`, recomputed here from the paper's schedule), training statistics (`Lt_history`,
`Lt_count`) and the cross-attention's causal mask (`attn2.mask`, which their forward never applies).
Everything else must match the paper config key for key and shape for shape.
"""
from __future__ import annotations

import re
from pathlib import Path

import torch

from bench.core.checkpoints import load_checkpoint
from bench.core.errors import CheckpointError
from generators.trainable import load_model_state

FIX = "download the authors' checkpoint again (https://huggingface.co/Dongchao/Diffsound)"
PROBE_KEY = "transformer.transformer.to_logits.1.weight"
SCHEDULE_BUFFERS = ("log_at", "log_bt", "log_ct", "log_cumprod_at", "log_cumprod_bt", "log_cumprod_ct",
                    "log_1_min_ct", "log_1_min_cumprod_ct", "Lt_history", "Lt_count")
_CROSS_MASK = re.compile(r"^transformer\.transformer\.blocks\.\d+\.attn2\.mask$")
_CITATION = ("Yang et al., Diffsound: Discrete Diffusion Model for Text-to-sound Generation, IEEE/ACM TASLP 2023")

# Weights cards. The authors publish both files (and their MelGAN) in the hub repository's file tree, not
# as release files with names or hashes this project could check offline, so they are not fetched by
# `bench weights fetch`: download them yourself and pass the file as the `diffsound` checkpoint; every
# result records the file's observed sha256.
CARDS = {
    "diffsound-diffusion": {"what": "DALLE diffusion checkpoint (VQ-VAE + CLIP text tower + transformer, EMA)",
                            "source": "https://huggingface.co/Dongchao/Diffsound/tree/main",
                            "license": "MIT (yangdongchao/Text-to-sound-Synthesis)", "citation": _CITATION,
                            "sha256": None},
    "diffsound-vqvae": {"what": "VQ-VAE (SpecVQGAN) Lightning checkpoint, with its discriminator",
                        "source": "https://huggingface.co/Dongchao/Diffsound/tree/main",
                        "license": "MIT (yangdongchao/Text-to-sound-Synthesis)", "citation": _CITATION,
                        "sha256": None},
}


def _read(path: str | Path, what: str) -> dict:
    state = load_checkpoint(path, what, FIX, mmap=True)
    if not isinstance(state, dict):
        raise CheckpointError(f"{what} {path}: expected a dict, found {type(state).__name__}")
    return state


def is_official(path: str | Path) -> bool:
    """Whether `path` is the authors' diffusion checkpoint (not one written by `bench train`)."""
    try:
        state = _read(path, "diffsound checkpoint")
    except CheckpointError:
        return False
    # `bench train` checkpoints hold the same names under "model" but say their format
    return "format" not in state and isinstance(state.get("model"), dict) and PROBE_KEY in state["model"]


def official_state(diffusion: dict, vqvae: dict | None, timesteps: int, source: str) -> dict:
    """Our state dict from the authors' diffusion checkpoint contents (+ the VQ-VAE checkpoint's)."""
    if not isinstance(diffusion.get("model"), dict) or PROBE_KEY not in diffusion["model"]:
        raise CheckpointError(f"{source}: not a Diffsound diffusion checkpoint (no 'model' with {PROBE_KEY!r})")
    state = dict(diffusion["model"])
    ema = diffusion.get("ema")
    if isinstance(ema, dict):
        state.update({f"transformer.{k}": v for k, v in ema.items()})
    for name in SCHEDULE_BUFFERS:
        value = state.pop(f"transformer.{name}", None)
        if value is not None and tuple(value.shape) != (timesteps,):
            raise CheckpointError(f"{source}: transformer.{name} has shape {tuple(value.shape)}, expected "
                                  f"({timesteps},): a model with another number of diffusion steps")
    for key in [k for k in state if _CROSS_MASK.match(k)]:
        del state[key]
    if vqvae is not None:
        inner = vqvae.get("state_dict", vqvae)
        state.update({f"content_codec.{k}": v for k, v in inner.items() if k.startswith("loss.discriminator.")})
    return state


def load_official(model: torch.nn.Module, diffusion_path: str | Path, vqvae_path: str | Path | None = None) -> dict:
    """Load the authors' weights into `model` (a `diffsound` model built from the paper config); returns
    what the records keep about them. Without the VQ-VAE checkpoint the discriminator (training only)
    keeps its seeded initialisation and the info says so."""
    from bench.core.weights import sha256_file

    diffusion = _read(diffusion_path, "diffsound diffusion checkpoint")
    vqvae = _read(vqvae_path, "diffsound VQ-VAE checkpoint") if vqvae_path is not None else None
    state = official_state(diffusion, vqvae, model.config["timesteps"], str(diffusion_path))
    missing_disc = [k for k in model.state_dict() if k.startswith("content_codec.loss.") and k not in state]
    if vqvae is None:
        state.update({k: model.state_dict()[k] for k in missing_disc})
    load_model_state(model, state, f"diffsound checkpoint {diffusion_path}")
    return {"checkpoint": str(diffusion_path), "sha256": sha256_file(Path(diffusion_path)),
            "weights": "the authors' published checkpoint (EMA transformer)" if "ema" in diffusion
            else "the authors' published checkpoint", "epoch": diffusion.get("last_epoch", diffusion.get("epoch")),
            "discriminator": "from the VQ-VAE checkpoint" if vqvae is not None else
            ("seeded (no VQ-VAE checkpoint given)" if missing_disc else None)}
