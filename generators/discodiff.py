"""DiscoDiff (Lanzendoerfer et al. 2024): coarse-to-fine v-diffusion on DAC latents.

- Latents: DAC's latent query (dac_codec.latent_query): X_0..X_8, one d=8 codebook entry per frame and
  codebook. Primary latent X_pri = X_0; secondary X_sec = concat(X_1..X_8).
- Primary model: denoises X_pri from text. Secondary model: denoises X_sec from text with the clean X_0
  concatenated to its input (trained on ground-truth X_0, sampled on the snapped generated X_0).
- v-objective, L1 loss (paper section 3.3 / appendix A): t ~ U[0, 1], alpha = cos(pi t / 2),
  sigma = sin(pi t / 2), x_t = alpha x0 + sigma eps, v = alpha eps - sigma x0.
- Sampler (appendix A): by default ancestral DDPM over T = `steps` equal steps of t from 1 to 0 with no
  guidance, as the paper samples: each step draws x_s from the posterior q(x_s | x_t, x0_hat) with
  x0_hat = alpha x_t - sigma v, eps_hat = sigma x_t + alpha v (eq. 6). `options.sampler = "ddim"` takes the
  deterministic DDIM step instead; `guidance` > 1 turns on classifier-free guidance
  v = v_uncond + g (v_cond - v_uncond) (the caption is dropped with probability cond_drop in training).
  Neither is the paper's; every sample's metadata says which sampler and guidance ran.
- Reconstruction (eq. 4): snap each latent to the nearest entry of its codebook, sum the out-projections,
  DAC-decode at 44.1 kHz.
- `discodiff-secondary-only` (the paper's "w/ PL"): the secondary model given the reference clip's
  ground-truth X_0.

Both models live in one module and train with one loss (their sum); they share nothing but the text encoder.
Denoisers (config "denoiser"): "unet", the paper's (section 3.3): a 1D U-Net (generators.unet1d) with
cross-attention to the text tokens at every level and self-attention at the deep ones, two of them of
1.2B parameters each at `--size paper`; or "dilated-conv" (the `tiny` size, and checkpoints written before
the U-Net existed): a flat stack of dilated conv blocks FiLM-modulated by the mean-pooled text.
Text encoders are pluggable (generators.text_encoders); the built-in "hashed-words" downloads nothing; the
paper's frozen Flan-T5 Large (1024-d tokens) plugs in the same way.

Determinism: each sample runs alone (batch of one) from its own sample_rng: primary noise, then secondary
noise, then (DDPM) each primary and each secondary step's noise, drawn in that order, so the output does not
depend on batch size or order.
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from bench.core.errors import ConfigError
from generators.base import (GeneratedAudio, GenerationRequest, GeneratorContext, at_requested_rate,
                             check_request, register_generator, sample_rng)
from generators.dac_codec import FULL_CONFIG, TINY_CONFIG, DACCodec, load_codec, random_codec
from generators.dac_resynthesis import ReferenceAudio
from generators.text_encoders import build_text_encoder, mean_pool
from generators.trainable import (TrainingBatch, building_on_meta, checkpoint_metadata, model_for_generator,
                                  register_trainable)
from generators.unet1d import UNet1d

VERSION = "1"
MAX_STEPS = 1000

SIZES = {
    # tiny: the tiny untrained DAC (hop 64) and ~0.3M-parameter dilated-conv denoisers; trains on a CPU in
    # minutes.
    "tiny": {"codec": "untrained-tiny", "codec_config": TINY_CONFIG, "codec_seed": 0, "width": 64, "depth": 4,
             "emb_dim": 64, "text_dim": 64, "duration_s": 0.5, "lr": 2e-3},
    # tiny-unet: the paper's denoiser layout (U-Net, text cross-attention) at a size a CPU trains.
    "tiny-unet": {"codec": "untrained-tiny", "codec_config": TINY_CONFIG, "codec_seed": 0, "denoiser": "unet",
                  "widths": [32, 48, 64], "factors": [1, 2, 2], "items": [1, 1, 1], "attentions": [0, 0, 1],
                  "cross_attentions": [1, 1, 1], "heads": 2, "head_features": 16, "ff_multiplier": 2,
                  "emb_dim": 64, "text_dim": 64, "duration_s": 0.5, "lr": 2e-3},
    # paper (section 3.3): two U-Nets of ~1.2B parameters each with text cross-attention, the released DAC
    # (9 codebooks of dim 8, hop 512), 29-second chunks (section 4.1), Flan-T5 Large's 1024-d tokens. The
    # paper gives no layout beyond that: widths 576-2304 over 5 levels and 128-d attention heads follow the
    # authors' released "large" configuration (which also attends at every level); the number of blocks per
    # level is ours, sized to 1.2B.
    "paper": {"codec": "dac-44khz", "codec_config": None, "codec_seed": 0, "denoiser": "unet",
              "widths": [576, 576, 1152, 1152, 2304], "factors": [1, 2, 2, 2, 2], "items": [4, 4, 3, 3, 3],
              "attentions": [1, 1, 1, 1, 1], "cross_attentions": [1, 1, 1, 1, 1], "heads": 9,
              "head_features": 128, "ff_multiplier": 2, "emb_dim": 1024, "text_dim": 1024,
              "text_max_words": 128, "duration_s": 29.0, "lr": 1e-4},
    # dac: the released 44.1 kHz DAC from the cache (`bench weights fetch dac-44khz`), wider denoisers.
    "dac": {"codec": "dac-44khz", "codec_config": None, "codec_seed": 0, "width": 256, "depth": 8,
            "emb_dim": 256, "text_dim": 256, "duration_s": 5.0, "lr": 3e-4},
}
_COMMON = {"sample_rate": 44100, "n_codebooks": 9, "codebook_dim": 8, "text_encoder": "hashed-words",
           "text_vocab": 4096, "text_max_words": 24, "cond_drop": 0.1, "latent_scale": 1.0, "default_steps": 25,
           "default_guidance": 1.0}
# The paper's sampler (appendix A) first; DDIM is ours, for fewer steps.
SAMPLERS = ("ddpm", "ddim")


# ------------------------------------------------------------------------------------------ denoiser

def time_features(t: torch.Tensor, dim: int) -> torch.Tensor:
    half = dim // 2
    freqs = torch.exp(-math.log(1000.0) * torch.arange(half, dtype=torch.float32) / half)
    angles = t[:, None] * 1000.0 * freqs[None]
    return torch.cat([angles.sin(), angles.cos()], dim=1)


class ResBlock(nn.Module):
    """Dilated conv block with FiLM from the (time + text) embedding."""

    def __init__(self, width: int, emb_dim: int, dilation: int):
        super().__init__()
        self.norm1, self.norm2 = nn.GroupNorm(8, width), nn.GroupNorm(8, width)
        self.conv1 = nn.Conv1d(width, width, 3, padding=dilation, dilation=dilation)
        self.conv2 = nn.Conv1d(width, width, 3, padding=1)
        self.film = nn.Linear(emb_dim, 2 * width)

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        scale, shift = self.film(emb)[:, :, None].chunk(2, dim=1)
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.norm2(h) * (1 + scale) + shift
        return x + self.conv2(F.silu(h))


class Denoiser(nn.Module):
    """v-prediction for `channels` latent channels, optionally conditioned on `cond_channels` clean ones."""

    def __init__(self, channels: int, cond_channels: int, width: int, depth: int, emb_dim: int):
        super().__init__()
        self.emb_dim = emb_dim
        self.inp = nn.Conv1d(channels + cond_channels, width, 3, padding=1)
        self.time = nn.Sequential(nn.Linear(emb_dim, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim))
        self.blocks = nn.ModuleList(ResBlock(width, emb_dim, 2 ** (i % 4)) for i in range(depth))
        self.out = nn.Conv1d(width, channels, 3, padding=1)

    def forward(self, x_t: torch.Tensor, t: torch.Tensor, text: torch.Tensor, cond: torch.Tensor | None = None):
        h = self.inp(x_t if cond is None else torch.cat([cond, x_t], dim=1))
        emb = self.time(time_features(t, self.emb_dim)) + text
        for block in self.blocks:
            h = block(h, emb)
        return self.out(h)


class UNetDenoiser(nn.Module):
    """The paper's denoiser: v-prediction by a 1D U-Net over the latent frames, text by cross-attention;
    `cond_channels` clean latents concatenated to the input (the secondary model's X_0)."""

    def __init__(self, channels: int, cond_channels: int, config: dict):
        super().__init__()
        self.unet = UNet1d(channels + cond_channels, channels, config, int(config["text_dim"]))
        self.multiple = self.unet.multiple

    def forward(self, x_t: torch.Tensor, t: torch.Tensor, text: tuple, cond: torch.Tensor | None = None):
        return self.unet(x_t if cond is None else torch.cat([cond, x_t], dim=1), t, text)


class DiscoDiffNet(nn.Module):
    """Primary + secondary denoisers and the text encoder. The codec is held outside the state dict
    (frozen, and 77M parameters for the real DAC): `codec` is attached by `build`."""

    def __init__(self, config: dict, codec: DACCodec):
        super().__init__()
        d, k = config["codebook_dim"], config["n_codebooks"]
        if codec.n_codebooks != k or codec.codebook_dim != d:
            raise ConfigError(f"discodiff config wants {k} codebooks of dim {d}; the codec has "
                              f"{codec.n_codebooks} of dim {codec.codebook_dim}")
        self.config = config
        self.text = build_text_encoder(config)
        self.denoiser = config.get("denoiser", "dilated-conv")  # checkpoints from before the U-Net: dilated-conv
        if self.denoiser == "unet":
            self.primary = UNetDenoiser(d, 0, config)
            self.secondary = UNetDenoiser((k - 1) * d, d, config)
            self.multiple = self.primary.multiple
        elif self.denoiser == "dilated-conv":
            self.text_proj = nn.Linear(config["text_dim"], config["emb_dim"])
            self.primary = Denoiser(d, 0, config["width"], config["depth"], config["emb_dim"])
            self.secondary = Denoiser((k - 1) * d, d, config["width"], config["depth"], config["emb_dim"])
            self.multiple = 1
        else:
            raise ConfigError(f"discodiff config denoiser must be 'unet' or 'dilated-conv', got {self.denoiser!r}")
        self._codec = (codec,)  # a tuple keeps it out of parameters() and state_dict()

    @property
    def codec(self) -> DACCodec:
        return self._codec[0]

    def encode_text(self, captions: list[str]):
        """Captions -> what the denoisers take: (tokens [B, L, text_dim], pad [B, L]) for the U-Net; for the
        dilated-conv denoisers [B, emb_dim], the tokens mean-pooled and projected."""
        tokens, pad = self.text(captions)
        return (tokens, pad) if self.denoiser == "unet" else self.text_proj(mean_pool(tokens, pad))

    @torch.no_grad()
    def latents(self, audio: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """audio [B, 1, N] -> (X_pri [B, d, T], X_sec [B, (K-1) d, T]), divided by latent_scale."""
        _, xs = self.codec.latent_query(self.codec.encode(audio))
        scale = self.config["latent_scale"]
        return xs[0] / scale, torch.cat(xs[1:], dim=1) / scale

    def frames(self, n_samples: int) -> int:
        """Latent frames for n samples, rounded up to what the U-Net's downsampling divides."""
        frames = -(-n_samples // self.codec.hop_length)
        return -(-frames // self.multiple) * self.multiple

    @torch.no_grad()
    def reconstruct(self, x_pri: torch.Tensor, x_sec: torch.Tensor) -> torch.Tensor:
        """Eq. 4: snap every latent to its codebook, sum out-projections, decode -> [B, 1, N]."""
        d, scale = self.config["codebook_dim"], self.config["latent_scale"]
        parts = [x_pri * scale] + list((x_sec * scale).split(d, dim=1))
        snapped = [self.codec.snap(x, i) for i, x in enumerate(parts)]
        return self.codec.decode(self.codec.embed(snapped))


def v_target(x0: torch.Tensor, rng: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(t, x_t, v) for clean x0, all randomness from rng."""
    t = torch.rand(x0.shape[0], generator=rng)
    eps = torch.randn(x0.shape, generator=rng)
    alpha, sigma = torch.cos(t * math.pi / 2)[:, None, None], torch.sin(t * math.pi / 2)[:, None, None]
    return t, alpha * x0 + sigma * eps, alpha * eps - sigma * x0


@register_trainable("discodiff")
class DiscoDiffTrainable:
    def default_config(self, size: str = "tiny") -> dict:
        if size not in SIZES:
            raise ConfigError(f"discodiff: unknown size {size!r}; known: {sorted(SIZES)}")
        return {**_COMMON, **SIZES[size]}

    def build(self, config: dict, seed: int) -> DiscoDiffNet:
        if config["codec"] == "untrained-tiny":
            codec = random_codec(config["codec_config"], config["codec_seed"])
        elif building_on_meta():  # shapes only (bench describe): the release DAC's layout, no weights read
            codec = random_codec(FULL_CONFIG, 0)
        else:
            codec, _ = load_codec(config["codec"])
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return DiscoDiffNet(config, codec)

    def training_loss(self, model: DiscoDiffNet, batch: TrainingBatch, rng: torch.Generator) -> torch.Tensor:
        x_pri, x_sec = model.latents(batch.audio.mean(dim=1, keepdim=True))
        usable = x_pri.shape[-1] - x_pri.shape[-1] % model.multiple  # what the U-Net's downsampling divides
        if usable == 0:
            raise ConfigError(f"discodiff: training crops must hold at least {model.multiple} latent frames")
        x_pri, x_sec = x_pri[..., :usable], x_sec[..., :usable]
        drop = torch.rand(len(batch.captions), generator=rng) < model.config["cond_drop"]
        text = model.encode_text(["" if d else c for c, d in zip(batch.captions, drop.tolist())])
        t, x_t, v = v_target(x_pri, rng)
        loss_pri = F.l1_loss(model.primary(x_t, t, text), v)
        t, x_t, v = v_target(x_sec, rng)
        loss_sec = F.l1_loss(model.secondary(x_t, t, text, cond=x_pri), v)
        return loss_pri + loss_sec


def _pair(text, null):
    """The [cond, uncond] batch of two text conditions: pooled vectors, or (tokens, pad) padded to one length."""
    if isinstance(text, torch.Tensor):
        return torch.cat([text, null])
    length = max(text[0].shape[1], null[0].shape[1])
    tokens, pads = [], []
    for tok, pad in (text, null):
        extra = length - tok.shape[1]
        tokens.append(F.pad(tok, (0, 0, 0, extra)))
        pads.append(F.pad(pad, (0, extra), value=True))
    return torch.cat(tokens), torch.cat(pads)


def _alpha_sigma(t: float) -> tuple[float, float]:
    return math.cos(t * math.pi / 2), math.sin(t * math.pi / 2)


@torch.no_grad()
def v_sample(net: Denoiser, noise: torch.Tensor, steps: int, guidance: float, text: torch.Tensor,
             null: torch.Tensor, cond: torch.Tensor | None = None, sampler: str = "ddpm",
             rng: torch.Generator | None = None) -> torch.Tensor:
    """`steps` equal steps of t from 1 to 0: ancestral DDPM (a draw from q(x_s | x_t, x0_hat) at each step,
    noise from `rng`) or deterministic DDIM; classifier-free guidance when `guidance` != 1."""
    x = noise
    ts = torch.linspace(1.0, 0.0, steps + 1).tolist()
    for t, s in zip(ts[:-1], ts[1:]):
        if guidance == 1.0:
            v = net(x, torch.tensor([t]), text, cond)
        else:
            both = net(torch.cat([x, x]), torch.tensor([t, t]), _pair(text, null),
                       None if cond is None else torch.cat([cond, cond]))
            v_c, v_u = both.chunk(2)
            v = v_u + guidance * (v_c - v_u)
        alpha, sigma = _alpha_sigma(t)
        x0, eps = alpha * x - sigma * v, sigma * x + alpha * v
        a_s, s_s = _alpha_sigma(s)
        if sampler == "ddim":
            x = a_s * x0 + s_s * eps
            continue
        # posterior of the variance-preserving process between t and s: x_s = alpha_ts x_t' + sigma_ts noise
        alpha_ts = alpha / a_s
        var_ts = sigma ** 2 - alpha_ts ** 2 * s_s ** 2
        mean = (alpha_ts * s_s ** 2 / sigma ** 2) * x + (a_s * var_ts / sigma ** 2) * x0
        std = math.sqrt(max(var_ts, 0.0) * s_s ** 2 / sigma ** 2)
        x = mean + std * torch.randn(x.shape, generator=rng) if std > 0 else mean
    return x


class DiscoDiffGenerator:
    max_duration_s = None
    uses_steps = True
    uses_guidance = True
    options = ("sampler",)

    def __init__(self, name: str, model: DiscoDiffNet, config: dict, info: dict, context: GeneratorContext,
                 secondary_only: bool):
        self.name, self.model, self.config, self.info, self.context = name, model, config, info, context
        self.secondary_only = secondary_only
        self.reference = ReferenceAudio(name, context) if secondary_only else None
        self.reads_reference = secondary_only
        self.native_sample_rates = (model.codec.sample_rate,)
        self.version = f"{VERSION}+{info['label']}" + ("" if config["codec"] != "untrained-tiny"
                                                       else "+codec-untrained-tiny")

    def _params(self, request: GenerationRequest) -> tuple[int, float, str]:
        steps = self.config["default_steps"] if request.steps is None else request.steps
        if steps > MAX_STEPS:
            raise ConfigError(f"generator {self.name!r}: steps must be <= {MAX_STEPS}, got {steps}")
        guidance = self.config["default_guidance"] if request.guidance is None else float(request.guidance)
        if not math.isfinite(guidance) or guidance < 0:
            raise ConfigError(f"generator {self.name!r}: guidance must be a finite number >= 0, got {guidance}")
        sampler = request.options.get("sampler", SAMPLERS[0])
        if sampler not in SAMPLERS:
            raise ConfigError(f"generator {self.name!r}: option sampler must be one of {list(SAMPLERS)} "
                              f"(ddpm: the paper's ancestral sampler), got {sampler!r}")
        return steps, guidance, sampler

    def generate(self, request: GenerationRequest) -> list[GeneratedAudio]:
        check_request(self, request)
        steps, guidance, sampler = self._params(request)
        sampling = {"sampler": sampler, "steps": steps, "guidance": guidance,
                    "sampler_is_paper": sampler == "ddpm" and guidance == 1.0,
                    "classifier_free_guidance": guidance != 1.0}
        if self.reference is not None:
            self.reference.check(request)
        codec, rate = self.model.codec, self.model.codec.sample_rate
        n = int(round(request.duration_s * rate))
        frames = self.model.frames(n)
        d, k = self.config["codebook_dim"], self.config["n_codebooks"]
        null = self.model.encode_text([""])
        out = []
        for p in request.prompts:
            text = self.model.encode_text([p.text])
            ref_meta, x_pri_ref = {}, None
            if self.reference is not None:
                audio, ref_meta = self.reference.load(p.id, rate)
                audio = F.pad(audio, (0, max(0, n - audio.shape[-1])))[..., :n]  # the requested duration
                x_pri_ref = self.model.latents(F.pad(audio, (0, frames * codec.hop_length - n)))[0]
            for s in range(request.samples_per_prompt):
                rng = sample_rng(request.seed, p.index, s)
                noise_pri = torch.randn(1, d, frames, generator=rng)
                noise_sec = torch.randn(1, (k - 1) * d, frames, generator=rng)
                if x_pri_ref is None:
                    x_pri = v_sample(self.model.primary, noise_pri, steps, guidance, text, null, None, sampler, rng)
                    # the secondary model was trained on exact codebook entries: condition on the snapped X_0
                    x_pri = codec.snap(x_pri * self.config["latent_scale"], 0) / self.config["latent_scale"]
                else:
                    x_pri = x_pri_ref
                x_sec = v_sample(self.model.secondary, noise_sec, steps, guidance, text, null, x_pri, sampler, rng)
                wave = self.model.reconstruct(x_pri, x_sec)[0, :, :n].numpy()
                wave, rate_meta = at_requested_rate(wave, rate, request, self.context.resampler)
                meta = {"generator": self.name, "generator_version": self.version,
                        **checkpoint_metadata(self.info), "codec": self.config["codec"],
                        "text_encoder": self.config["text_encoder"], "denoiser": self.model.denoiser,
                        "seed": request.seed,
                        "prompt_index": p.index, "sample_index": s, **sampling, **ref_meta, **rate_meta}
                out.append(GeneratedAudio(p.id, s, wave.astype(np.float32), request.sample_rate, meta))
        return out


def _factory(name: str, secondary_only: bool):
    def build(checkpoint: str | None, context: GeneratorContext) -> DiscoDiffGenerator:
        model, config, info = model_for_generator("discodiff", checkpoint)
        return DiscoDiffGenerator(name, model, config, info, context, secondary_only)

    return build


register_generator("discodiff", "DiscoDiff coarse-to-fine v-diffusion on DAC latents (primary X0, secondary "
                   "X1..X8), 44.1 kHz; untrained tiny without a checkpoint")(_factory("discodiff", False))
register_generator("discodiff-secondary-only", "DiscoDiff 'w/ PL': secondary model given the reference clip's "
                   "ground-truth primary latent; needs reference audio")(_factory("discodiff-secondary-only", True))
