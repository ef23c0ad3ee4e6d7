"""LAION-CLAP as registered backbones: LAION's published `.pt` checkpoints, run on transformers' ClapModel.

Why not laion-clap's own `CLAP_Module`: it calls `RobertaModel.from_pretrained('roberta-base')` (hub
weights that the checkpoint then overwrites) and loads three tokenizers from the hub at import, so it
cannot be built offline. transformers' `ClapModel` is the same network (HTSAT audio encoder, RoBERTa
text encoder, two-layer projections), built here from a config; the LAION state dict is loaded into it
through a fixed key mapping (renames, and Swin's fused qkv split into query/key/value).
tests/test_clap.py shows the embeddings equal laion-clap's own forward on identical weights.

What lives outside `ClapModel`, as in laion-clap:
- non-fusion checkpoints compute their log-mel inside the LAION model (torchlibrosa): reflect-padded
  STFT by convolution with the checkpoint's own DFT kernels, power, the checkpoint's own mel matrix,
  10*log10(max(., 1e-10)). `_LogMel` does exactly that, so a checkpoint is run with its own constants.
- the fusion checkpoint is fed log-mels made by LAION's data pipeline (torchaudio's MelSpectrogram: HTK
  mel scale, no filter norm) and, for clips over 10 s, the 4-channel "fusion" input: `fusion_example`.
- laion-clap crops clips over 10 s at a random offset; `fit_to_clip` crops the middle instead (fixed,
  and recorded in every protocol's steps).

Text: the roberta-base tokenizer from the Hugging Face cache (never a silent 5-token stand-in), padded to
a fixed length so a caption's embedding does not depend on the batch it is in.
"""
from __future__ import annotations

import hashlib
import math
import os
import socket
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from bench.core import weights as weights_registry
from bench.core.checkpoints import load_checkpoint as _load
from bench.core.errors import BenchError, CheckpointError
from bench.core.extras import require
from metrics.backbones.blocked_linear import block_linear_rows
from metrics.backbones.base import (Backbone, declare_needs, Needs,
                                    pick_device, pretrained, register_backbone, WeightsChoice)

SAMPLE_RATE = 48000
CLIP_SAMPLES = 480000  # LAION's max_len: 10 s at 48 kHz
N_FFT, HOP, N_MELS, F_MIN, F_MAX = 1024, 480, 64, 50.0, 14000.0
CLIP_FRAMES = CLIP_SAMPLES // HOP + 1  # 1001 STFT frames (centred) in 10 s
EMBED_DIM = 512
MIN_SAMPLES = N_FFT // 2 + 1  # the reflect-padded STFT needs more samples than its half window
AMIN_DB = 1e-10
# Fusion inputs: the global mel plus three 10 s chunks, and LAION's `longer` flag (clip over 10 s).
FUSION_INPUT = np.dtype([("mel", np.float32, (4, CLIP_FRAMES, N_MELS)), ("longer", np.bool_)])

TOKENIZER_REPO = "roberta-base"
ROBERTA_VOCAB_SIZE = 50265
# Bump when the architecture or the seeded initialisation changes: untrained cache keys depend on it.
UNTRAINED_INIT = "clap-seeded-init-v1"
_HF_URL = "https://huggingface.co/lukewys/laion_clap/resolve/main/"
_INIT_BOUND = 0.02 * math.sqrt(3)  # uniform(-b, b) has standard deviation 0.02


@dataclass(frozen=True)
class ClapSpec:
    backbone: str  # registered backbone id
    weights: str  # weights card name, also the NAME of --checkpoint NAME=PATH
    filename: str
    audio_model: str  # "HTSAT-tiny" | "HTSAT-base"
    fusion: bool
    text_max_length: int  # tokens after padding/truncation


SPECS = {s.backbone: s for s in (
    ClapSpec("clap-630k-audioset", "clap-630k-audioset", "630k-audioset-best.pt", "HTSAT-tiny", False, 77),
    # SRC-gAudio's footnote 3 names "630k-best" (LAION's 630k model trained without AudioSet).
    ClapSpec("clap-630k", "clap-630k", "630k-best.pt", "HTSAT-tiny", False, 77),
    ClapSpec("clap-630k-audioset-fusion", "clap-630k-audioset-fusion", "630k-audioset-fusion-best.pt",
             "HTSAT-tiny", True, 77),
    ClapSpec("clap-music-audioset", "clap-music-audioset", "music_audioset_epoch_15_esc_90.14.pt",
             "HTSAT-base", False, 77),
    # AudioLDM 2 tokenizes captions to 512 tokens (its CLAPAudioEmbeddingClassifierFreev2.tokenizer).
    ClapSpec("clap-music-speech-audioset-t512", "clap-music-speech-audioset",
             "music_speech_audioset_epoch_15_esc_89.98.pt", "HTSAT-base", False, 512),
)}

# laion_clap/clap_module/htsat.py: create_htsat_model (Swin widths and depths of the two sizes used).
_HTSAT = {"HTSAT-tiny": {"patch_embeds_hidden_size": 96, "depths": [2, 2, 6, 2], "hidden_size": 768},
          "HTSAT-base": {"patch_embeds_hidden_size": 128, "depths": [2, 2, 12, 2], "hidden_size": 1024}}
_CITATION = ("Wu, Chen et al., Large-scale Contrastive Language-Audio Pretraining with Feature Fusion and "
             "Keyword-to-Caption Augmentation, ICASSP 2023")
for _weights, _filename in sorted({(s.weights, s.filename) for s in SPECS.values()}):
    weights_registry.register_weights(weights_registry.WeightsCard(
        name=_weights, filename=_filename, url=_HF_URL + _filename, backbone=_weights,
        license="CC0-1.0 (LAION-AI/CLAP)", citation=_CITATION, hub_lfs=True))


def import_transformers_clap():
    """transformers' CLAP classes; its import needs torchvision and torchaudio to import (see compat)."""
    from bench.core.torch_compat import ensure_torchaudio_importable, ensure_torchvision_importable

    ensure_torchaudio_importable()
    ensure_torchvision_importable()
    return require("transformers", "clap", "CLAP (transformers' ClapModel)")


def clap_config(spec: ClapSpec):
    """The ClapConfig of a LAION checkpoint: roberta-base text encoder (layer norm eps 1e-5, as in
    roberta-base's own config), HTSAT audio encoder, 512-d ReLU projections."""
    tf = import_transformers_clap()
    text = tf.ClapTextConfig(vocab_size=ROBERTA_VOCAB_SIZE, hidden_size=768, num_hidden_layers=12,
                             num_attention_heads=12, intermediate_size=3072, hidden_act="gelu",
                             max_position_embeddings=514, type_vocab_size=1, layer_norm_eps=1e-5,
                             pad_token_id=1, bos_token_id=0, eos_token_id=2)
    audio = tf.ClapAudioConfig(**_HTSAT[spec.audio_model], num_attention_heads=[4, 8, 16, 32], window_size=8,
                               spec_size=256, num_mel_bins=N_MELS, enable_fusion=spec.fusion,
                               fusion_type="aff_2d" if spec.fusion else None)
    return tf.ClapConfig(text_config=text.to_dict(), audio_config=audio.to_dict(), projection_dim=EMBED_DIM,
                         projection_hidden_act="relu")


def _empty_model(spec: ClapSpec):
    # Meta device: no memory and no default init (which would draw from the global RNG).
    tf = import_transformers_clap()
    with torch.device("meta"):
        return tf.ClapModel(clap_config(spec))


# ---- LAION <-> transformers parameter names -------------------------------------------------------
_PREFIXES = (("audio_branch.", "audio_model.audio_encoder."), ("text_branch.", "text_model."),
             ("text_projection.0.", "text_projection.linear1."), ("text_projection.2.", "text_projection.linear2."),
             ("audio_projection.0.", "audio_projection.linear1."),
             ("audio_projection.2.", "audio_projection.linear2."))
# Audio-encoder parts (only applied to audio keys: the text encoder has its own ".output.dense.").
# ".attn.proj." precedes ".mlp.fc2." so the reverse mapping sees ".attention.output.dense." first.
_AUDIO_PARTS = ((".bn0.", ".batch_norm."), (".norm1.", ".layernorm_before."), (".norm2.", ".layernorm_after."),
                (".attn.proj.", ".attention.output.dense."),
                (".attn.relative_position", ".attention.self.relative_position"),
                (".mlp.fc1.", ".intermediate.dense."), (".mlp.fc2.", ".output.dense."))
_QKV = ".attn.qkv."
_SPLIT = (".attention.self.query.", ".attention.self.key.", ".attention.self.value.")
# In LAION checkpoints but not in ClapModel: the log-mel constants (used by _LogMel), the AudioSet
# classifier head and the contrastive-training MLPs (not part of the embeddings).
_FRONTEND = {"audio_branch.spectrogram_extractor.stft.conv_real.weight": (N_FFT // 2 + 1, 1, N_FFT),
             "audio_branch.spectrogram_extractor.stft.conv_imag.weight": (N_FFT // 2 + 1, 1, N_FFT),
             "audio_branch.logmel_extractor.melW": (N_FFT // 2 + 1, N_MELS)}
_UNUSED = ("audio_branch.tscam_conv.", "audio_branch.head.", "text_transform.", "audio_transform.")
_OPTIONAL = {"text_branch.embeddings.position_ids": (1, 514)}  # saved by older transformers; recomputed
_HF_ONLY = ("text_model.embeddings.position_ids", "text_model.embeddings.token_type_ids")


def _rename(key: str, forward: bool) -> str:
    def swap(k, pairs):
        for a, b in pairs:
            k = k.replace(a, b) if forward else k.replace(b, a)
        return k

    audio = key.startswith("audio_branch." if forward else "audio_model.")
    key = swap(key, _PREFIXES)
    return swap(key, _AUDIO_PARTS) if audio else key


def laion_layout(spec: ClapSpec) -> dict[str, tuple]:
    """Every key of the LAION checkpoint for `spec`, with its shape."""
    hf = _empty_model(spec).state_dict()
    layout = {}
    for key, value in hf.items():
        audio = key.startswith("audio_model.")
        if key in _HF_ONLY or (audio and any(p in key for p in _SPLIT[1:])):
            continue
        if audio and _SPLIT[0] in key:  # query stands for the fused qkv of three times its rows
            layout[_rename(key, False).replace(_SPLIT[0], _QKV)] = (3 * value.shape[0], *value.shape[1:])
        else:
            layout[_rename(key, False)] = tuple(value.shape)
    h = _HTSAT[spec.audio_model]["hidden_size"]
    layout.update(_FRONTEND)
    layout.update(_shift_masks(spec))
    layout.update({"audio_branch.tscam_conv.weight": (527, h, 2, 3), "audio_branch.tscam_conv.bias": (527,),
                   "audio_branch.head.weight": (527, 527), "audio_branch.head.bias": (527,)})
    for mlp in ("text_transform", "audio_transform"):
        for i in (0, 3):
            layout[f"{mlp}.sequential.{i}.weight"] = (EMBED_DIM, EMBED_DIM)
            layout[f"{mlp}.sequential.{i}.bias"] = (EMBED_DIM,)
    return layout


def _shift_masks(spec: ClapSpec) -> dict[str, tuple]:
    """LAION's shifted-window blocks store their attention masks (ClapModel computes them): the odd
    blocks of every stage wider than one window, [windows, 64, 64]."""
    masks, side = {}, 256 // 4  # patch grid of the 256x256 spectrogram image
    for stage, depth in enumerate(_HTSAT[spec.audio_model]["depths"]):
        if side > 8:
            for block in range(1, depth, 2):
                masks[f"audio_branch.layers.{stage}.blocks.{block}.attn_mask"] = ((side // 8) ** 2, 64, 64)
        side //= 2
    return masks


def to_transformers(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """LAION state dict (validated) -> ClapModel state dict."""
    out = {}
    for key, value in state.items():
        if key in _FRONTEND or key in _OPTIONAL or key.startswith(_UNUSED) or key.endswith(".attn_mask"):
            continue
        if _QKV in key:
            for part, chunk in zip(_SPLIT, value.chunk(3, dim=0)):
                out[_rename(key, True).replace(_QKV, part)] = chunk
        else:
            out[_rename(key, True)] = value
    out["text_model.embeddings.position_ids"] = torch.arange(514)[None]
    out["text_model.embeddings.token_type_ids"] = torch.zeros(1, 514, dtype=torch.long)
    return out


# ---- checkpoint files -----------------------------------------------------------------------------
def read_checkpoint(path, spec: ClapSpec) -> dict[str, torch.Tensor]:
    """The validated LAION state dict of a checkpoint file (tensors only, never arbitrary objects).

    Accepts LAION's training checkpoints ({"epoch", "name", "state_dict", optimizer...}, keys possibly
    prefixed "module." by DataParallel) and bare state dicts."""
    path = Path(path)
    # memory-mapped: the optimizer state in LAION's files (GBs) is never read
    obj = _load(path, "CLAP checkpoint", mmap=True, fix=f"delete it and re-fetch it "
                          f"(`bench weights fetch {spec.weights}`)")
    state = obj.get("state_dict", obj) if isinstance(obj, Mapping) else obj
    if not isinstance(state, Mapping) or not state or not all(
            isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()):
        raise CheckpointError(f"{path}: not a LAION-CLAP checkpoint (expected a state dict of tensors, or a "
                              f"dict with one under 'state_dict'); use {spec.filename} from {_HF_URL}")
    if next(iter(state)).startswith("module."):  # saved from DataParallel, as LAION's own loader strips
        state = {k[len("module."):] if k.startswith("module.") else k: v for k, v in state.items()}
    _check_layout(state, laion_layout(spec), f"{path}", spec)
    return {k: v.clone() for k, v in state.items() if k not in _OPTIONAL}  # off the memory map


def _check_layout(state: Mapping, layout: dict, source: str, spec: ClapSpec) -> None:
    layout = {**layout, **{k: shape for k, shape in _OPTIONAL.items() if k in state}}
    for key in sorted(set(layout) | set(state)):
        if key not in state:
            problem = f"missing key '{key}'"
        elif key not in layout:
            problem = f"unexpected key '{key}'"
        elif tuple(state[key].shape) != layout[key]:
            problem = f"key '{key}' has shape {tuple(state[key].shape)}, expected {layout[key]}"
        else:
            continue
        raise CheckpointError(
            f"{source}: does not fit CLAP {spec.audio_model}{' with fusion' if spec.fusion else ''} "
            f"({spec.filename}): {problem}")


# ---- the model ------------------------------------------------------------------------------------
def _seeded_state(spec: ClapSpec, seed: int) -> dict[str, torch.Tensor]:
    """LAION-layout state dict with seeded random weights (a torch.Generator, never the global RNG):
    uniform matrices with the spread of N(0, 0.02) (uniform draws are twice as fast as normal ones, and
    there are 150M), zero biases, unit norms, neutral batch-norm statistics; the log-mel constants are
    what laion-clap itself builds (DFT x periodic Hann, librosa's Slaney mel)."""
    g = torch.Generator().manual_seed(seed)
    state = {}
    for key, shape in laion_layout(spec).items():
        name = key.rsplit(".", 1)[-1]
        if key in _FRONTEND or key.endswith(".attn_mask"):
            continue
        if name == "relative_position_index":
            state[key] = _relative_position_index(int(math.isqrt(shape[0])))
        elif name == "num_batches_tracked":
            state[key] = torch.zeros((), dtype=torch.long)
        elif name in ("running_var",) or (name == "weight" and len(shape) == 1):
            state[key] = torch.ones(shape)
        elif name in ("running_mean", "bias"):
            state[key] = torch.zeros(shape)
        elif key.startswith("logit_scale"):
            state[key] = torch.tensor(math.log(1 / 0.07))
        else:
            state[key] = torch.empty(shape).uniform_(-_INIT_BOUND, _INIT_BOUND, generator=g)
    state.update(_standard_frontend())
    return state


def _relative_position_index(window: int) -> torch.Tensor:
    # Swin: index of the (dy, dx) offset between every pair of positions in a window.
    coords = torch.stack(torch.meshgrid(torch.arange(window), torch.arange(window), indexing="ij")).flatten(1)
    rel = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0) + (window - 1)
    return rel[..., 0] * (2 * window - 1) + rel[..., 1]


def _standard_frontend() -> dict[str, torch.Tensor]:
    librosa = require("librosa", "clap", "CLAP's mel filterbank")

    n = np.arange(N_FFT)
    k = np.arange(N_FFT // 2 + 1)[:, None]
    hann = 0.5 - 0.5 * np.cos(2 * np.pi * n / N_FFT)  # periodic
    angle = 2 * np.pi * k * n / N_FFT
    mel = librosa.filters.mel(sr=SAMPLE_RATE, n_fft=N_FFT, n_mels=N_MELS, fmin=F_MIN, fmax=F_MAX).T
    return {"audio_branch.spectrogram_extractor.stft.conv_real.weight":
            torch.tensor(np.cos(angle) * hann, dtype=torch.float32)[:, None],
            "audio_branch.spectrogram_extractor.stft.conv_imag.weight":
            torch.tensor(-np.sin(angle) * hann, dtype=torch.float32)[:, None],
            "audio_branch.logmel_extractor.melW": torch.tensor(mel, dtype=torch.float32)}


class _LogMel(torch.nn.Module):
    """The non-fusion LAION model's own log-mel, with the checkpoint's DFT kernels and mel matrix."""

    def __init__(self, state: Mapping[str, torch.Tensor]):
        super().__init__()
        names = list(_FRONTEND)
        self.register_buffer("real", state[names[0]].float())
        self.register_buffer("imag", state[names[1]].float())
        self.register_buffer("mel", state[names[2]].float())

    def forward(self, wave: torch.Tensor) -> torch.Tensor:  # [B, n] -> [B, 1, frames, 64]
        x = F.pad(wave[:, None, :], (N_FFT // 2, N_FFT // 2), mode="reflect")
        power = F.conv1d(x, self.real, stride=HOP) ** 2 + F.conv1d(x, self.imag, stride=HOP) ** 2
        mel = power.transpose(1, 2) @ self.mel
        return (10.0 * torch.log10(torch.clamp(mel, min=AMIN_DB)))[:, None]


class ClapEmbedder:
    """A LAION checkpoint on ClapModel: audio inputs -> L2-normalised 512-d embeddings, and captions."""

    def __init__(self, spec: ClapSpec, state: Mapping[str, torch.Tensor], device: str = "cpu"):
        self.spec, self.device = spec, device
        model = _empty_model(spec)
        model.load_state_dict(to_transformers(state), strict=True, assign=True)
        self.model = model.eval().to(device)
        self.logmel = None if spec.fusion else _LogMel(state).to(device)
        self.tokenizer = None  # set by the builder (load_tokenizer)

    @torch.inference_mode()
    def embed_audio(self, batch: np.ndarray) -> np.ndarray:
        """Waveforms [B, n] at 48 kHz (non-fusion), or FUSION_INPUT records (fusion)."""
        if self.spec.fusion:
            if batch.dtype != FUSION_INPUT:
                raise ValueError(f"{self.spec.backbone} takes FUSION_INPUT records, got {batch.dtype}")
            features = torch.from_numpy(batch["mel"].copy()).to(self.device)  # a field view: copy
            longer = torch.from_numpy(batch["longer"].copy())[:, None].to(self.device)
        else:
            if batch.ndim != 2:
                raise ValueError(f"{self.spec.backbone} takes waveforms [batch, samples], got {batch.shape}")
            features = self.logmel(torch.from_numpy(np.ascontiguousarray(batch, np.float32)).to(self.device))
            longer = None
        pooled = self.model.audio_model(input_features=features, is_longer=longer).pooler_output
        return F.normalize(self.model.audio_projection(pooled), dim=-1).float().cpu().numpy()

    @torch.inference_mode()
    def embed_text(self, texts: list[str]) -> np.ndarray:
        if self.tokenizer is None:
            raise BenchError(f"{self.spec.backbone}: no tokenizer loaded")
        enc = self.tokenizer(list(texts), padding="max_length", truncation=True,
                             max_length=self.spec.text_max_length, return_tensors="pt")
        pooled = self.model.text_model(input_ids=enc["input_ids"].to(self.device),
                                       attention_mask=enc["attention_mask"].to(self.device)).pooler_output
        return F.normalize(self.model.text_projection(pooled), dim=-1).float().cpu().numpy()


# ---- LAION's data pipeline (shared by every protocol) ---------------------------------------------
def fit_to_clip(x: np.ndarray) -> np.ndarray:
    """One 10 s example from a mono 48 kHz clip: the middle 10 s of longer clips (LAION: a random
    offset), shorter ones repeated a whole number of times and zero-padded (LAION's "repeatpad")."""
    n = len(x)
    if n > CLIP_SAMPLES:
        start = (n - CLIP_SAMPLES) // 2
        return x[start:start + CLIP_SAMPLES]
    if n < CLIP_SAMPLES:
        x = np.tile(x, CLIP_SAMPLES // n)
        return np.pad(x, (0, CLIP_SAMPLES - len(x)))
    return x


def fusion_mel(x: np.ndarray) -> torch.Tensor:
    """LAION's data-pipeline log-mel (torchaudio MelSpectrogram + AmplitudeToDB): [frames, 64]."""
    wave = torch.from_numpy(np.ascontiguousarray(x, np.float32))
    spec = torch.stft(wave, N_FFT, HOP, N_FFT, window=torch.hann_window(N_FFT), center=True, pad_mode="reflect",
                      return_complex=True).abs() ** 2
    mel = spec.T @ torch.from_numpy(htk_mel_filters())
    return 10.0 * torch.log10(torch.clamp(mel, min=AMIN_DB))


def htk_mel_filters() -> np.ndarray:
    """Triangular filters on the HTK mel scale, unnormalised (torchaudio's melscale_fbanks): [513, 64]."""
    freqs = np.linspace(0, SAMPLE_RATE // 2, N_FFT // 2 + 1)
    mel = np.linspace(2595 * np.log10(1 + F_MIN / 700), 2595 * np.log10(1 + F_MAX / 700), N_MELS + 2)
    hz = 700 * (10 ** (mel / 2595) - 1)
    slopes = hz[None, :] - freqs[:, None]
    down = -slopes[:, :-2] / np.diff(hz)[:-1]
    up = slopes[:, 2:] / np.diff(hz)[1:]
    return np.maximum(0, np.minimum(down, up)).astype(np.float32)


def fusion_example(x: np.ndarray) -> np.ndarray:
    """LAION's fusion input for a mono 48 kHz clip, as one FUSION_INPUT record [1].

    Up to 10 s: repeat-padded to 10 s, its mel four times, longer=False. Longer: the whole clip's mel
    shrunk to 1001 frames (antialiased bilinear, torchvision's Resize) plus three 1001-frame chunks, one
    from each third of the possible start frames: LAION draws each start at random, we take the middle
    of each third."""
    out = np.zeros(1, FUSION_INPUT)
    if len(x) <= CLIP_SAMPLES:
        out["mel"][0] = fusion_mel(fit_to_clip(x)).numpy()[None]
        return out
    mel = fusion_mel(x)
    total = mel.shape[0]
    if total == CLIP_FRAMES:  # just over 10 s, but no more frames than 10 s give: used whole
        out["mel"][0] = mel.numpy()[None]
        return out
    thirds = np.array_split(np.arange(total - CLIP_FRAMES + 1), 3)
    starts = [int(t[len(t) // 2]) if len(t) else 0 for t in thirds]
    shrunk = F.interpolate(mel[None, None], size=(CLIP_FRAMES, N_MELS), mode="bilinear", align_corners=False,
                           antialias=True)[0, 0]
    out["mel"][0] = torch.stack([shrunk] + [mel[s:s + CLIP_FRAMES] for s in starts]).numpy()
    out["longer"][0] = True
    return out


# ---- tokenizer ------------------------------------------------------------------------------------
def _tokenizer_problem(reason: str) -> str:
    return (f"CLAP needs the '{TOKENIZER_REPO}' tokenizer (vocab.json and merges.txt of the Hugging Face "
            f"repo {TOKENIZER_REPO}) in the Hugging Face cache, and {reason}. Fetch it once with network "
            f"access: python -c \"from transformers import RobertaTokenizer; "
            f"RobertaTokenizer.from_pretrained('{TOKENIZER_REPO}')\" (or `hf download {TOKENIZER_REPO} "
            f"vocab.json merges.txt`), or point HF_HOME at a cache that has it.")


def load_tokenizer(allow_download: bool):
    """roberta-base's tokenizer from the HF cache (downloaded only when allowed); refuses the silent
    5-token stand-in that offline from_pretrained returns when the files are missing."""
    tf = import_transformers_clap()
    cached = not _missing_tokenizer_files()
    if not cached and allow_download:
        # transformers retries every file for minutes when the hub is unreachable: ask once, briefly
        unreachable = _hub_unreachable()
        if unreachable:
            raise BenchError(_tokenizer_problem(f"it is not there and the hub is unreachable ({unreachable})"))
    try:
        tok = tf.RobertaTokenizer.from_pretrained(TOKENIZER_REPO, local_files_only=cached or not allow_download)
    except (OSError, ValueError) as exc:
        raise BenchError(_tokenizer_problem(f"loading it failed ({exc})")) from exc
    if tok.vocab_size != ROBERTA_VOCAB_SIZE or tok.pad_token_id != 1:
        raise BenchError(_tokenizer_problem(
            f"the cache gave a {tok.vocab_size}-token tokenizer instead of {ROBERTA_VOCAB_SIZE} tokens "
            f"(files missing{' with downloads off' if not allow_download else ''})"))
    return tok


def _missing_tokenizer_files() -> list[str]:
    from huggingface_hub import try_to_load_from_cache

    return [name for name in ("vocab.json", "merges.txt")
            if not isinstance(try_to_load_from_cache(TOKENIZER_REPO, name), str)]


def _hub_unreachable(timeout_s: float = 5.0) -> str | None:
    """Why the Hugging Face endpoint cannot be reached (one TCP connect), or None when it can."""
    from huggingface_hub import constants

    url = urllib.parse.urlsplit(os.environ.get("HF_ENDPOINT") or constants.ENDPOINT)
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        socket.create_connection((url.hostname, port), timeout=timeout_s).close()
    except OSError as exc:
        return f"{url.hostname}:{port}: {exc}"
    return None


def tokenizer_files() -> dict[str, str]:
    """sha256 of the tokenizer files found in the HF cache (recorded in provenance)."""
    from huggingface_hub import try_to_load_from_cache

    found = {}
    for name in ("vocab.json", "merges.txt", "tokenizer.json"):
        path = try_to_load_from_cache(TOKENIZER_REPO, name)
        if isinstance(path, str) and Path(path).is_file():
            found[name] = hashlib.sha256(Path(path).read_bytes()).hexdigest()
    return found


# ---- registered backbones -------------------------------------------------------------------------
def build(spec: ClapSpec, choice: WeightsChoice) -> Backbone:
    allow = choice.allow_download if choice.allow_download is not None else not weights_registry.offline()
    tokenizer = load_tokenizer(allow)  # before the model: a missing tokenizer fails fast
    if choice.mode == "untrained":
        state = _seeded_state(spec, choice.seed)
        provenance = {"weights": "untrained", "backbone": spec.backbone, "seed": choice.seed,
                      "init": UNTRAINED_INIT, "file": None, "sha256": None}
    else:
        resolved = weights_registry.resolve(spec.weights, choice.weights_root, choice.local_file(spec.weights),
                                            allow_download=choice.allow_download)
        state = read_checkpoint(resolved.path, spec)
        provenance = {"backbone": spec.backbone, **resolved.provenance()}
    provenance.update({"runtime": "transformers.ClapModel (LAION state dict converted)",
                       "audio_model": spec.audio_model, "fusion": spec.fusion,
                       "text_max_length": spec.text_max_length,
                       "tokenizer": {"repo": TOKENIZER_REPO, "vocab_size": tokenizer.vocab_size,
                                     "files_sha256": tokenizer_files()}})
    embedder = ClapEmbedder(spec, state, pick_device())
    block_linear_rows(embedder.model)
    embedder.tokenizer = tokenizer
    return Backbone(spec.backbone, {"embedding": EMBED_DIM}, provenance,
                    lambda x: {"embedding": embedder.embed_audio(x)}, embedder.device,
                    embed_text=embedder.embed_text)


def _register(spec: ClapSpec) -> None:
    register_backbone(spec.backbone)(lambda choice: build(spec, choice))
    # the tokenizer whatever the weights (untrained CLAP still tokenizes captions)
    declare_needs(spec.backbone, lambda choice, spec=spec: Needs(
        weights=(spec.weights,) if pretrained(choice, spec.backbone) else (),
        hf_files=((TOKENIZER_REPO, "vocab.json"), (TOKENIZER_REPO, "merges.txt"))))


for _spec in SPECS.values():
    _register(_spec)
