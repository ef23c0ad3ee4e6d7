"""ArchiSound (Schneider's thesis ch. 3-5, the Mousai / audio-diffusion-pytorch lineage) as reference generators.

- `archisound`: text-to-audio v-diffusion on waveforms (ArchisoundNet: learned transform + 1D U-Net +
  text cross-attention), DDIM-style v-sampler, classifier-free guidance on the text embedding.
- `archisound-upsampler`: the diffusion upsampler; generates high-rate audio conditioned on the
  reference clip brought down to `low_rate` (and interpolated back to the model rate).
- `archisound-vocoder`: the diffusion vocoder; generates a waveform conditioned on the reference clip's
  log-mel spectrogram (one mel frame per transform frame).

v-objective (thesis ch. 3): t ~ U[0, 1], alpha = cos(pi t / 2), sigma = sin(pi t / 2),
x_t = alpha x0 + sigma eps, target v = alpha eps - sigma x0. The sampler walks t from 1 to 0 in `steps`
equal steps: x0_hat = alpha x_t - sigma v, eps_hat = sigma x_t + alpha v, x_next = alpha' x0_hat + sigma' eps_hat.
Guidance: v = v_uncond + g (v_cond - v_uncond); training drops the caption with probability cond_drop.

Determinism: each sample runs on its own (batch of one; [cond, uncond] as a pair under guidance) from
its own sample_rng on one intra-op thread, so the same request gives the same bits whatever the batch
size, order, worker or core count.
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from bench.core.errors import ConfigError
from bench.core.seeding import pinned_threads
from generators.archisound_unet import ArchisoundNet
from generators.base import (GeneratedAudio, GenerationRequest, GeneratorContext, at_requested_rate, check_request,
                             register_generator, sample_rng, sample_seed)
from generators.trainable import TrainingBatch, checkpoint_metadata, model_for_generator, register_trainable

VERSION = "1"
MAX_STEPS = 1000

# The thesis's training recipe (section 5.7.2) for every size: AdamW (lr 1e-4 at paper size, betas 0.95 /
# 0.999, eps 1e-6, weight decay 1e-3) and an EMA of the weights (beta 0.995, warm-up power 0.7) that
# sampling uses.
RECIPE = {"optimizer": {"name": "adamw", "betas": [0.95, 0.999], "eps": 1e-6, "weight_decay": 1e-3},
          "ema": {"beta": 0.995, "power": 0.7}}
_BASE = {"channels": 1, "transform": "learned", "patch": 16, "transform_width": 32, "emb_dim": 64, "heads": 4,
         "head_features": 16, "ff_multiplier": 2, "text_dim": 64, "text_vocab": 4096, "text_max_words": 24,
         "lr": 1e-3, "default_steps": 25, "metadata_augmentation": False, **RECIPE}
SIZES = {
    # tiny: trains on a CPU in minutes (~0.3M parameters). small: closer to the thesis's proportions.
    "tiny": {"widths": [32, 48, 64], "factors": [1, 2, 2], "items": [1, 1, 1], "attentions": [0, 0, 1],
             "cross_attentions": [1, 1, 1], "sample_rate": 8000, "duration_s": 1.0},
    "small": {"widths": [64, 128, 256, 256], "factors": [1, 2, 2, 2], "items": [1, 1, 2, 2],
              "attentions": [0, 0, 1, 1], "cross_attentions": [1, 1, 1, 1], "sample_rate": 16000, "duration_s": 2.0,
              "transform_width": 64, "emb_dim": 128, "text_dim": 128, "head_features": 32, "lr": 3e-4},
}
# paper: the thesis's models at 48 kHz stereo (section 1 sizes: Crisp ~419M, Upsampler ~238M, Vocoder
# ~178M). Crisp's layout is the one the thesis prints (section 5.2.5 / 5.3.2: learned transform with 128
# filters, window and stride 64; channels 256-1024 over 6 levels, items 2,2,2,2,4,4, self-attention at
# the two deepest levels with 12 heads of 64 features, cross-attention at every level, 768-d T5-base
# text embeddings of up to 64 tokens). For the upsampler and vocoder the thesis states only the task and
# size: their layouts here are ours, chosen in the same family to land on the stated sizes.
_PAPER = {"channels": 2, "sample_rate": 48000, "transform_width": 128, "patch": 64, "emb_dim": 512,
          "heads": 12, "head_features": 64, "ff_multiplier": 2, "text_dim": 768, "text_max_words": 64,
          "lr": 1e-4, "duration_s": 2 ** 18 / 48000, "default_steps": 50}
PAPER = {
    "archisound": {**_PAPER, "widths": [256, 256, 512, 512, 1024, 1024], "factors": [1, 2, 2, 2, 2, 2],
                   "items": [2, 2, 2, 2, 4, 4], "attentions": [0, 0, 0, 0, 1, 1],
                   "cross_attentions": [1, 1, 1, 1, 1, 1], "duration_s": 2 ** 21 / 48000,
                   "metadata_augmentation": True, "default_guidance": 5.0},
    "archisound-upsampler": {**_PAPER, "widths": [256, 256, 512, 512, 1024, 1024], "factors": [1, 2, 2, 2, 2, 2],
                             "items": [2, 2, 2, 2, 2, 3], "attentions": [0, 0, 0, 0, 1, 1],
                             "cross_attentions": [0, 0, 0, 0, 0, 0], "low_rate": 3000},
    "archisound-vocoder": {**_PAPER, "widths": [256, 256, 512, 512, 1024, 1024], "factors": [1, 2, 2, 2, 2, 2],
                           "items": [2, 2, 2, 2, 3, 3], "attentions": [0, 0, 0, 0, 0, 0],
                           "cross_attentions": [0, 0, 0, 0, 0, 0], "patch": 256, "n_mels": 80},
}
TASKS = {
    "archisound": {"text_conditioning": True, "text_encoder": "hashed-words", "cond_drop": 0.1,
                   "default_guidance": 2.0},
    "archisound-upsampler": {"text_conditioning": False, "wave_cond_channels": 1, "low_rate": 2000},
    "archisound-vocoder": {"text_conditioning": False, "n_mels": 32, "log_mel_floor": 1e-5},
}


def alpha_sigma(t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.cos(t * math.pi / 2), torch.sin(t * math.pi / 2)


# --------------------------------------------------------------------------------- conditioning

def low_rate_condition(x: torch.Tensor, rate: int, low_rate: int) -> torch.Tensor:
    """x [B, C, N] at `rate` -> band-limited to low_rate/2 by resampling down and back up (julius sinc)."""
    import julius

    low = julius.resample_frac(x, rate, low_rate)
    return julius.resample_frac(low, low_rate, rate, output_length=x.shape[-1])


def mel_filterbank(n_fft: int, n_mels: int, rate: int) -> torch.Tensor:
    """Triangular HTK-mel filters [n_mels, n_fft // 2 + 1] from 0 Hz to Nyquist."""
    def mel(f):
        return 2595.0 * np.log10(1.0 + f / 700.0)

    def hz(m):
        return 700.0 * (10 ** (m / 2595.0) - 1.0)

    edges = hz(np.linspace(mel(0.0), mel(rate / 2), n_mels + 2))
    freqs = np.linspace(0, rate / 2, n_fft // 2 + 1)
    lower = (freqs[None] - edges[:-2, None]) / (edges[1:-1, None] - edges[:-2, None])
    upper = (edges[2:, None] - freqs[None]) / (edges[2:, None] - edges[1:-1, None])
    return torch.from_numpy(np.maximum(0.0, np.minimum(lower, upper))).float()


def log_mel_frames(x: torch.Tensor, config: dict) -> torch.Tensor:
    """x [B, C, N] -> log-mel [B, n_mels, N / patch]: hop = patch, window 4 * patch, mono mix."""
    hop = int(config["patch"])
    n_fft = 4 * hop
    mono = x.mean(1)
    spec = torch.stft(mono, n_fft, hop_length=hop, window=torch.hann_window(n_fft), center=True,
                      return_complex=True).abs() ** 2
    mel = mel_filterbank(n_fft, int(config["n_mels"]), int(config["sample_rate"])) @ spec
    return torch.log(mel.clamp(min=float(config["log_mel_floor"])))[..., :x.shape[-1] // hop]


def conditioning(config: dict, clean: torch.Tensor) -> dict:
    """The network's extra inputs for the upsampler / vocoder, computed from clean audio."""
    if "wave_cond_channels" in config:
        return {"wave_cond": low_rate_condition(clean, int(config["sample_rate"]), int(config["low_rate"]))}
    if "n_mels" in config:
        return {"frame_cond": log_mel_frames(clean, config)}
    return {}


# ------------------------------------------------------------------------------------ trainables

class _ArchisoundTrainable:
    name: str

    def default_config(self, size: str = "tiny") -> dict:
        if size not in SIZES and size != "paper":
            raise ConfigError(f"{self.name}: unknown size {size!r}; sizes: {', '.join([*SIZES, 'paper'])}")
        config = {**_BASE, **SIZES[size], **TASKS[self.name]} if size in SIZES else {
            **_BASE, **TASKS[self.name], **PAPER[self.name]}
        if "wave_cond_channels" in config:
            config["wave_cond_channels"] = config["channels"]
        if "n_mels" in config:
            config["frame_cond_channels"] = config["n_mels"]
        return config

    def build(self, config: dict, seed: int) -> torch.nn.Module:
        with torch.random.fork_rng(devices=[]):  # deterministic init without touching the caller's RNG
            torch.manual_seed(seed)
            model = ArchisoundNet(config)
        model.config = dict(config)
        return model

    def training_loss(self, model, batch: TrainingBatch, rng: torch.Generator) -> torch.Tensor:
        config = model.config
        x0 = batch.audio
        b = x0.shape[0]
        x0 = x0[..., :x0.shape[-1] - x0.shape[-1] % model.multiple]
        if x0.shape[-1] == 0:
            raise ConfigError(f"{self.name}: training crops must hold at least {model.multiple} samples")
        t = torch.rand(b, generator=rng)
        eps = torch.randn(x0.shape, generator=rng)
        alpha, sigma = (a[:, None, None] for a in alpha_sigma(t))
        x_t = alpha * x0 + sigma * eps
        kwargs = conditioning(config, x0)
        if model.text is not None:
            captions = batch.captions
            if config.get("metadata_augmentation"):
                captions = [augment_metadata(c, chunk, rng) for c, chunk in zip(captions, batch.chunks or
                                                                                  [None] * b)]
            drop = torch.rand(b, generator=rng) < float(config["cond_drop"])
            captions = ["" if d else c for c, d in zip(captions, drop.tolist())]
            kwargs["text"] = model.encode_text(captions)
        v = model(x_t, t, **kwargs)
        return F.mse_loss(v, alpha * eps - sigma * x0)


@register_trainable("archisound")
class ArchisoundTrainable(_ArchisoundTrainable):
    pass


@register_trainable("archisound-upsampler")
class UpsamplerTrainable(_ArchisoundTrainable):
    pass


@register_trainable("archisound-vocoder")
class VocoderTrainable(_ArchisoundTrainable):
    pass


def augment_metadata(caption: str, chunk: tuple[int, int] | None, rng: torch.Generator,
                     drop: float = 0.1) -> str:
    """Thesis section 5.3.2: the caption's metadata fields (comma-separated: title, artist, album, genre,
    year, ...) shuffled, each dropped with probability `drop`, joined with spaces or with commas (50/50),
    and the crop's position appended as "i of N" (chunk = (i, N), 1-based; None: not known)."""
    fields = [f.strip() for f in caption.split(",") if f.strip()]
    order = torch.randperm(len(fields), generator=rng).tolist()
    keep = (torch.rand(len(fields), generator=rng) >= drop).tolist()
    fields = [fields[i] for i in order if keep[i]]
    if chunk is not None:
        fields.append(f"{chunk[0]} of {chunk[1]}")
    return (" " if float(torch.rand(1, generator=rng)) < 0.5 else ", ").join(fields)


# --------------------------------------------------------------------------------------- sampler

@torch.inference_mode()
def v_sample(model, noise: torch.Tensor, steps: int, guidance: float | None, text=None, null_text=None,
             **cond) -> torch.Tensor:
    """DDIM-style deterministic v-sampler from t=1 to t=0 in `steps` steps; noise [1, C, N]."""
    x = noise
    ts = torch.linspace(1.0, 0.0, steps + 1)
    guided = text is not None and guidance is not None and guidance != 1.0
    if guided:  # one forward on the [cond, uncond] pair per step
        (tc, mc), (tu, mu) = _pad_tokens(text, null_text), _pad_tokens(null_text, text)
        pair = (torch.cat([tc, tu]), torch.cat([mc, mu]))
        cond2 = {k: v.repeat(2, 1, 1) for k, v in cond.items()}
    for i in range(steps):
        t, t_next = ts[i], ts[i + 1]
        if guided:
            v_both = model(x.repeat(2, 1, 1), t.repeat(2), text=pair, **cond2)
            v = v_both[1:] + guidance * (v_both[:1] - v_both[1:])
        else:
            v = model(x, t.repeat(1), text=text, **cond)
        alpha, sigma = alpha_sigma(t)
        x0 = (alpha * x - sigma * v).clamp(-1.0, 1.0)
        if i == steps - 1:
            return x0
        # eps re-derived from the clipped x0 (DDIM with clipping): the update stays on the noise path
        eps = (x - alpha * x0) / sigma
        a_next, s_next = alpha_sigma(t_next)
        x = a_next * x0 + s_next * eps
    return x


def _pad_tokens(a, b):
    """Pad a's (tokens, pad mask) to the longer of a and b so the two can be batched (encoders may
    return captions' sequences at their own lengths)."""
    length = max(a[0].shape[1], b[0].shape[1])
    tokens, pad = a
    extra = length - tokens.shape[1]
    if extra:
        tokens = F.pad(tokens, (0, 0, 0, extra))
        pad = F.pad(pad, (0, extra), value=True)
    return tokens, pad


# ------------------------------------------------------------------------------------- generators

class ArchisoundGenerator:
    """One of the three ArchiSound generators around a (trained or untrained) ArchisoundNet."""

    max_duration_s = None
    uses_steps = True

    def __init__(self, name: str, model, config: dict, info: dict, context: GeneratorContext):
        self.name, self.model, self.config, self.info, self.context = name, model, config, info, context
        self.rate = int(config["sample_rate"])
        self.native_sample_rates = (self.rate,)
        self.uses_guidance = bool(config.get("text_conditioning"))
        self.reads_reference = not self.uses_guidance
        self.version = f"{VERSION}+{info['label']}"
        if self.reads_reference:
            if context.reference is None:
                raise ConfigError(f"generator {name!r} needs a reference set (it "
                                  f"{'upsamples' if 'wave_cond_channels' in config else 'vocodes'} reference clips)")
            self.clips = context.reference.by_id()

    def _reference_clip(self, prompt_id: str, n: int) -> torch.Tensor:
        from bench.core.resample import resample

        if prompt_id not in self.clips:
            raise ConfigError(f"generator {self.name!r}: prompt id {prompt_id!r} is not in the reference set "
                              f"{self.context.reference.source}")
        wave, rate = self.context.reference.load(self.clips[prompt_id])
        wave = resample(np.asarray(wave, np.float32), rate, self.rate, self.context.resampler)
        wave = wave.mean(0, keepdims=True).repeat(self.model.channels, 0)
        wave = wave[:, :n] if wave.shape[1] >= n else np.pad(wave, ((0, 0), (0, n - wave.shape[1])))
        return torch.from_numpy(np.ascontiguousarray(wave))[None]

    def generate(self, request: GenerationRequest) -> list[GeneratedAudio]:
        # One intra-op thread: the bits do not depend on the machine's core count, and per-sample kernels
        # this small gain nothing from threads (on a busy 2-core machine 2 threads ran 10x slower).
        # Parallelism across samples belongs to the executor's workers.
        with pinned_threads(1):
            return self._generate(request)

    def _generate(self, request: GenerationRequest) -> list[GeneratedAudio]:
        check_request(self, request)
        steps = request.steps if request.steps is not None else int(self.config["default_steps"])
        if steps > MAX_STEPS:
            raise ConfigError(f"generator {self.name!r}: steps={steps} exceeds the sampler's maximum {MAX_STEPS}")
        guidance = None
        if self.uses_guidance:
            guidance = float(request.guidance if request.guidance is not None else self.config["default_guidance"])
            if not guidance >= 0:
                raise ConfigError(f"generator {self.name!r}: guidance must be >= 0, got {guidance}")
        n_out = int(round(request.duration_s * self.rate))
        if n_out < 1:
            raise ConfigError(f"duration_s={request.duration_s} is shorter than one sample at {self.rate} Hz")
        n = -(-n_out // self.model.multiple) * self.model.multiple  # pad to the U-Net's multiple, crop after
        out = []
        null = self.model.encode_text([""]) if self.uses_guidance else None
        for p in request.prompts:
            cond = {}
            text = self.model.encode_text([p.text]) if self.uses_guidance else None
            if self.reads_reference:
                cond = conditioning(self.config, self._reference_clip(p.id, n))
            for k in range(request.samples_per_prompt):
                noise = torch.randn((1, self.model.channels, n), generator=sample_rng(request.seed, p.index, k))
                wave = v_sample(self.model, noise, steps, guidance, text, null, **cond)[0, :, :n_out].numpy()
                wave, rate_meta = at_requested_rate(wave, self.rate, request, self.context.resampler)
                meta = {"generator": self.name, "generator_version": self.version,
                        **checkpoint_metadata(self.info), "seed": request.seed,
                        "seed_used": sample_seed(request.seed, p.index, k), "prompt_index": p.index,
                        "sample_index": k, "steps": steps, "guidance": guidance, "sampler": "ddim-v",
                        **rate_meta}
                if self.reads_reference:
                    meta["reference_clip_hash"] = self.context.reference.clip_hash(self.clips[p.id])
                out.append(GeneratedAudio(p.id, k, wave, request.sample_rate, meta))
        return out


def _factory(name: str):
    def build(checkpoint: str | None, context: GeneratorContext) -> ArchisoundGenerator:
        model, config, info = model_for_generator(name, checkpoint)
        return ArchisoundGenerator(name, model, config, info, context)
    return build


register_generator("archisound", "ArchiSound text-to-audio waveform v-diffusion (U-Net, DDIM v-sampler, CFG); "
                   "untrained tiny without a checkpoint")(_factory("archisound"))
register_generator("archisound-upsampler", "ArchiSound diffusion upsampler: reference clip band-limited to "
                   "low_rate -> full rate (needs a reference set)")(_factory("archisound-upsampler"))
register_generator("archisound-vocoder", "ArchiSound diffusion vocoder: reference clip's log-mel -> waveform "
                   "(needs a reference set)")(_factory("archisound-vocoder"))
