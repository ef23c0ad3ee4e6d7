"""MERT-v1-95M (Li et al., ICLR 2024) as an embedding backbone, loaded exactly as fadtk's MERTModel loads it.

The checkpoint `m-a-p/MERT-v1-95M` carries its own model code on the Hugging Face hub (`trust_remote_code`:
configuration_MERT.py, modeling_MERT.py, whose MERTModel subclasses transformers' HubertModel). We run that
code from the Hugging Face cache, as fadtk does (fadtk/model_loader.py MERTModel.load_model):
`AutoConfig.from_pretrained(repo, trust_remote_code=True)`, `conv_pos_batch_norm = False`,
`AutoModel.from_pretrained(repo, trust_remote_code=True, config=cfg)` and the repo's
`Wav2Vec2FeatureExtractor`; downloaded on first use unless offline. Choosing this backbone therefore runs
code from that repository (pin it by keeping the cached snapshot; its commit is recorded).

Untrained weights (smoke runs, the sanity grid, benchmarks) cannot use the hub code offline: they use
transformers' own HubertModel at MERT-v1-95M's sizes (HuBERT base: 7 conv layers of 512, group norm, 12
post-norm layers of 768, 75 frames per second at 24 kHz), labelled untrained, with a feature extractor that
normalises each clip to zero mean and unit variance as the repo's does.

Output: hidden state `LAYER` of the 13 (embedding output + 12 layers): fadtk's "MERT-v1-95M" is layer 12.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import torch

from bench.core import weights as weights_registry
from bench.core.errors import CheckpointError
from bench.core.extras import require
from metrics.backbones.base import Backbone, Needs, WeightsChoice, declare_needs, pick_device, pretrained, register_backbone

BACKBONE = "mert-v1-95m"
REPO = "m-a-p/MERT-v1-95M"
SAMPLE_RATE = 24000
LAYER = 12
EMBED_DIM = 768
MIN_SAMPLES = 400  # the first convolution's kernel: shorter clips give no frame
UNTRAINED_INIT = "mert-hubert-base-seeded-init-v1"  # bump when the seeded initialisation changes
_FILES = ("config.json", "preprocessor_config.json")
CITATION = "Li et al., MERT: Acoustic Music Understanding Model with Large-Scale Self-supervised Training, ICLR 2024"
weights_registry.register_hub_model(weights_registry.HubCard(
    name=BACKBONE, repo=REPO, files=("config.json", "preprocessor_config.json", "configuration_MERT.py",
                                     "modeling_MERT.py"),
    fetch_patterns=("*.json", "*.py", "*.safetensors", "*.bin"), backbone=BACKBONE, license="CC-BY-NC-4.0",
    citation=CITATION, note="runs the repository's own model code (trust_remote_code), as fadtk does"))


def _transformers():
    from bench.core.torch_compat import ensure_torchaudio_importable, ensure_torchvision_importable

    ensure_torchvision_importable()  # transformers' audio models import them; see bench.core.torch_compat
    ensure_torchaudio_importable()
    return require("transformers", "fadtk", "MERT (transformers with the repo's remote code)")


def _fetch_hint(reason: str) -> str:
    from huggingface_hub import constants

    return (f"MERT could not be loaded from the Hugging Face cache ({constants.HF_HUB_CACHE}): {reason}. Fetch it "
            f"once with network access: `bench weights fetch {BACKBONE}` or `hf download {REPO}` (config.json, "
            "preprocessor_config.json, "
            "configuration_MERT.py, modeling_MERT.py and the weights), or point HF_HOME at a cache that has it. "
            "MERT's model code lives in that repository (trust_remote_code), so there is no offline stand-in for "
            "its published weights; --weights untrained runs transformers' HubertModel at MERT's sizes instead.")


def load_pretrained(allow_download: bool):
    """(model, processor) through fadtk's loading calls, from the HF cache (downloads only when allowed)."""
    tf = _transformers()
    local = not allow_download
    try:
        cfg = tf.AutoConfig.from_pretrained(REPO, trust_remote_code=True, local_files_only=local)
        cfg.conv_pos_batch_norm = False  # as fadtk: newer transformers' Hubert code reads it, MERT's config lacks it
        model = tf.AutoModel.from_pretrained(REPO, trust_remote_code=True, config=cfg, local_files_only=local)
        processor = tf.Wav2Vec2FeatureExtractor.from_pretrained(REPO, trust_remote_code=True, local_files_only=local)
    except (OSError, ValueError, ImportError, AttributeError) as exc:
        raise CheckpointError(_fetch_hint(f"{type(exc).__name__}: {str(exc)[:300]}")) from exc
    if processor.sampling_rate != SAMPLE_RATE or model.config.hidden_size != EMBED_DIM:
        raise CheckpointError(_fetch_hint(f"the cached repo takes {processor.sampling_rate} Hz and gives "
                                          f"{model.config.hidden_size}-d states, not {SAMPLE_RATE} Hz / {EMBED_DIM}-d"))
    return model, processor


def seeded_stand_in(seed: int):
    """(HubertModel at MERT-v1-95M's sizes with seeded weights, a normalising feature extractor)."""
    tf = _transformers()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = tf.HubertModel(tf.HubertConfig())
    processor = tf.Wav2Vec2FeatureExtractor(feature_size=1, sampling_rate=SAMPLE_RATE, padding_value=0.0,
                                            do_normalize=True, return_attention_mask=True)
    return model, processor


def snapshot_files() -> tuple[str | None, dict[str, str]]:
    from huggingface_hub import try_to_load_from_cache

    commit, hashes = None, {}
    config = try_to_load_from_cache(REPO, "config.json")
    if isinstance(config, str):
        commit = Path(config).parent.name
    for name in ("model.safetensors", "pytorch_model.bin", "modeling_MERT.py", "configuration_MERT.py"):
        path = try_to_load_from_cache(REPO, name)
        if isinstance(path, str) and Path(path).is_file():
            hashes[name] = hashlib.sha256(Path(path).read_bytes()).hexdigest()
    return commit, hashes


class MertEmbedder:
    def __init__(self, model, processor, device: str):
        self.model, self.processor, self.device = model.eval().requires_grad_(False).to(device), processor, device

    @torch.inference_mode()
    def embed(self, batch: np.ndarray) -> torch.Tensor:
        """Audio [B, n] at 24 kHz (each example one whole clip) -> hidden state LAYER [B, T, 768]."""
        if batch.ndim != 2:
            raise ValueError(f"{BACKBONE} takes audio [batch, samples], got {list(batch.shape)}")
        out = []
        for x in batch:  # the processor normalises each clip on its own, as fadtk calls it per file
            inputs = self.processor(x, sampling_rate=SAMPLE_RATE, return_tensors="pt").to(self.device)
            states = self.model(**inputs, output_hidden_states=True).hidden_states
            out.append(states[LAYER][0])
        return torch.stack(out)


def build(choice: WeightsChoice) -> Backbone:
    if choice.mode == "untrained":
        model, processor = seeded_stand_in(choice.seed)
        provenance = {"weights": "untrained", "backbone": BACKBONE, "seed": choice.seed, "init": UNTRAINED_INIT,
                      "file": None, "sha256": None,
                      "runtime": "transformers HubertModel at MERT-v1-95M's sizes (not MERT's hub code)"}
    else:
        allow = choice.allow_download if choice.allow_download is not None else not weights_registry.offline()
        model, processor = load_pretrained(allow)
        commit, hashes = snapshot_files()
        weight_file = next((f for f in ("model.safetensors", "pytorch_model.bin") if f in hashes), None)
        if weight_file is None:
            raise CheckpointError(_fetch_hint("no weight file in the cached snapshot"))
        provenance = {"weights": "pretrained", "backbone": BACKBONE, "name": REPO, "file": weight_file,
                      "sha256": hashes[weight_file], "source": "huggingface cache", "revision": commit,
                      "url": f"https://huggingface.co/{REPO}", "hash_published": False, "license": "CC-BY-NC-4.0",
                      "citation": CITATION, "files_sha256": hashes,
                      "runtime": f"{type(model).__name__} from the repo's remote code (trust_remote_code)"}
    provenance["layer"] = LAYER
    embedder = MertEmbedder(model, processor, pick_device())
    return Backbone(BACKBONE, {"embedding": EMBED_DIM}, provenance,
                    lambda batch: {"embedding": embedder.embed(batch).float().cpu().numpy()}, embedder.device,
                    embed_tensors=lambda batch: {"embedding": embedder.embed(batch)})


register_backbone(BACKBONE)(build)
declare_needs(BACKBONE, lambda choice: Needs(
    hf_files=tuple((REPO, f) for f in _FILES) if pretrained(choice, BACKBONE) else ()))
