"""The thesis's headline model (Schneider 2023, section 5.4): a diffusion magnitude autoencoder and the
latent text-to-music diffusion model on its latents ("Long").

- `archisound-dmae` (reconstruction): the magnitude diffusion autoencoder. Its encoder (`MagnitudeEncoder`,
  after the thesis's ME1d) takes each channel's STFT magnitude, runs a 1D conv stack over the frames
  (frequency bins as channels) that downsamples in time, and squashes the latent with tanh (the thesis's
  bottleneck: values in [-1, 1] for latent diffusion). Compression: channels * hop * prod(encoder
  factors) / latent_channels waveform values per latent value (64x in both configs, as the thesis). Its
  decoder is a v-diffusion model on the waveform (the ArchiSound network: learned transform + U-Net with
  no attention, section 5.4.2) conditioned on the latent, repeated to the transform's frame rate and
  concatenated to its channels ("injected directly in the U-Net at the right resolution by concatenating
  the channels"). Ours, so that a tiny decoder uses its latent: the v-objective preconditioned for the
  audio's rms, the latent's FiLM of every resblock, and a latent-driven gain on the transform's filters
  (DMAENet). Encoder and decoder train together on the diffusion loss (figure 13).
- `archisound-latent` (text-to-music): a text-conditional v-diffusion U-Net (generators.unet1d; cross-
  attention to the text at every level) on the frozen autoencoder's latents, decoded by the autoencoder's
  diffusion decoder (figure 15). Config `autoencoder`: a `bench train archisound-dmae` checkpoint, or
  "untrained-tiny" (a seeded untrained one, labelled). Like DiscoDiff's codec, the autoencoder is held
  outside the state dict and loaded from its own checkpoint; every sample records its sha256.
Both sample with the ArchiSound v-sampler (generators.archisound.v_sample).
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from bench.core.errors import ConfigError
from bench.core.seeding import pinned_threads
from generators.archisound import RECIPE, ArchisoundGenerator, alpha_sigma, v_sample
from generators.archisound_unet import Transform
from generators.base import (GeneratedAudio, GenerationRequest, GeneratorContext, at_requested_rate, check_request,
                             register_generator, sample_rng, sample_seed)
from generators.text_encoders import build_text_encoder
from generators.trainable import TrainingBatch, checkpoint_metadata, model_for_generator, register_trainable
from generators.unet1d import UNet1d

VERSION = "2"  # 2: the decoder's preconditioning, latent FiLM and latent gain (untrained outputs changed)
DMAE, LATENT = "archisound-dmae", "archisound-latent"
# sigma_data, latent_film, latent_gain: ours, not the thesis's (see DMAENet); without them the tiny decoder
# learns to ignore its latent (docs/generators.md)
_DECODER = {"transform": "learned", "heads": 4, "head_features": 16, "ff_multiplier": 2, "text_conditioning": False,
            "default_steps": 25, "sigma_data": 0.25, "latent_film": True, "latent_gain": True, **RECIPE}
DMAE_SIZES = {
    # tiny: 8 kHz mono, STFT hop 64 and one 2x encoder stage into 2 tanh channels: 64x; ~0.2M parameters
    "tiny": {**_DECODER, "channels": 1, "sample_rate": 8000, "duration_s": 1.0, "lr": 1e-3, "n_fft": 256,
             "hop": 64, "encoder_widths": [64, 64], "encoder_factors": [1, 2], "latent_channels": 2,
             "patch": 16, "transform_width": 32, "emb_dim": 64, "widths": [32, 48, 64, 64], "factors": [1, 2, 2, 2],
             "items": [1, 1, 1, 1], "attentions": [0, 0, 0, 0], "cross_attentions": [0, 0, 0, 0]},
    # paper: 48 kHz stereo, 2^18-sample crops (section 5.7.1); STFT 1024 / hop 256 and 4x in the encoder into
    # 32 tanh channels: 2 * 256 * 4 / 32 = 64x. The thesis states no layout or size for it: ours.
    "paper": {**_DECODER, "channels": 2, "sample_rate": 48000, "duration_s": 2 ** 18 / 48000, "lr": 1e-4,
              "n_fft": 1024, "hop": 256, "encoder_widths": [512, 512, 512], "encoder_factors": [1, 2, 2],
              "latent_channels": 32, "patch": 64, "transform_width": 128, "emb_dim": 512,
              "widths": [256, 256, 512, 512, 1024], "factors": [1, 2, 2, 2, 2], "items": [2, 2, 2, 2, 2],
              "attentions": [0, 0, 0, 0, 0], "cross_attentions": [0, 0, 0, 0, 0], "default_steps": 50},
}
LATENT_SIZES = {
    "tiny": {"autoencoder": "untrained-tiny", "autoencoder_seed": 0, "sample_rate": 8000, "duration_s": 1.0,
             "lr": 1e-3, "text_encoder": "hashed-words", "text_dim": 32, "text_vocab": 1024, "text_max_words": 16,
             "cond_drop": 0.1, "emb_dim": 32, "heads": 2, "head_features": 16, "ff_multiplier": 2,
             "widths": [32, 64], "factors": [1, 2], "items": [1, 1], "attentions": [0, 1],
             "cross_attentions": [1, 1], "default_steps": 25, "default_guidance": 2.0, "decoder_steps": 10,
             **RECIPE},
    # paper ("Long", ~857M, section 1): 2^21-sample crops (~44 s at 48 kHz, section 5.7.1) = 2048 latent
    # frames of 32 channels; T5-base-sized text embeddings. The thesis states the size, not the layout: ours.
    "paper": {"autoencoder": "untrained-paper", "autoencoder_seed": 0, "sample_rate": 48000,
              "duration_s": 2 ** 21 / 48000, "lr": 1e-4, "text_encoder": "hashed-words", "text_dim": 768,
              "text_vocab": 32128, "text_max_words": 64, "cond_drop": 0.1, "emb_dim": 512, "heads": 16,
              "head_features": 64, "ff_multiplier": 4, "widths": [512, 1024, 1024, 1536, 1536],
              "factors": [1, 2, 2, 2, 2], "items": [2, 2, 2, 2, 3], "attentions": [0, 1, 1, 1, 1],
              "cross_attentions": [1, 1, 1, 1, 1], "default_steps": 50, "default_guidance": 5.0,
              "decoder_steps": 50, **RECIPE},
}


def _product(values) -> int:
    out = 1
    for v in values:
        out *= int(v)
    return out


# ------------------------------------------------------------------------------------- autoencoder

class MagnitudeEncoder(nn.Module):
    """Waveform [B, C, N] -> tanh latent [B, latent_channels, N / (hop * prod(factors))]."""

    def __init__(self, channels: int, n_fft: int, hop: int, widths: list[int], factors: list[int], latent: int):
        super().__init__()
        self.n_fft, self.hop = n_fft, hop
        self.register_buffer("window", torch.hann_window(n_fft), persistent=False)
        layers, prev = [], channels * (n_fft // 2 + 1)
        for w, f in zip(widths, factors):
            layers += [nn.Conv1d(prev, w, 2 * f, stride=f, padding=f // 2) if f > 1 else nn.Conv1d(prev, w, 3, padding=1),
                       nn.GroupNorm(min(8, w), w), nn.SiLU(), nn.Conv1d(w, w, 3, padding=1), nn.SiLU()]
            prev = w
        self.net = nn.Sequential(*layers, nn.Conv1d(prev, latent, 3, padding=1))

    def magnitude(self, x: torch.Tensor) -> torch.Tensor:
        b, c, n = x.shape
        spec = torch.stft(x.reshape(b * c, n), self.n_fft, self.hop, window=self.window, center=True,
                          return_complex=True).abs()[..., :n // self.hop]
        return torch.log1p(spec).reshape(b, c * spec.shape[1], spec.shape[2])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.net(self.magnitude(x)))


class DMAENet(nn.Module):
    """Magnitude encoder + latent-conditioned v-diffusion decoder on the waveform (the ArchiSound transform
    and U-Net, no attention, the latent concatenated at the U-Net level of its own resolution).

    Ours, each a config key (a checkpoint whose config lacks one was trained without it and loads as such):
    - `sigma_data`: preconditioning for data of that rms (Karras et al. 2022's c_in / c_skip / c_out written
      for the v-objective): the network sees x_t at unit variance and predicts, at unit scale, what the best
      linear estimate of v (the one a white signal of variance sigma_data^2 allows) misses. 1.0 is the plain
      v-objective. Without it, audio at rms ~0.25 makes v ~ a/s * x_t over most noise levels, and the tiny
      decoder trained as the test trains it denoises worse than predicting silence (docs/generators.md).
    - `latent_film`: the latent, repeated to each level's rate, scales and shifts every resblock (FiLM).
    - `latent_gain`: a per-frame gain on each of the transform's filters, computed from the latent and the
      noise level by a two-layer 1x1 conv, times the transformed input, added to the U-Net's output: a
      latent-driven spectral gain (which of the transform's bands hold the clip at this frame) that needs no
      identity path through the U-Net.
    """

    def __init__(self, config: dict):
        super().__init__()
        c = self.config = dict(config)
        if len(c["encoder_widths"]) != len(c["encoder_factors"]):
            raise ConfigError(f"{DMAE} config: encoder_widths and encoder_factors differ in length")
        self.channels, latent = int(c["channels"]), int(c["latent_channels"])
        self.latent_hop = int(c["hop"]) * _product(c["encoder_factors"])
        self.encoder = MagnitudeEncoder(self.channels, int(c["n_fft"]), int(c["hop"]), c["encoder_widths"],
                                        c["encoder_factors"], latent)
        self.transform = Transform(c["transform"], self.channels, self.channels, int(c["patch"]),
                                   int(c["transform_width"]))
        out = self.transform.features if c["transform"] == "learned" else self.channels * int(c["patch"])
        reductions = [int(c["patch"]) * _product(c["factors"][:i + 1]) for i in range(len(c["factors"]))]
        if self.latent_hop not in reductions:
            raise ConfigError(f"{DMAE} config: no U-Net level runs at the latent's resolution (one latent frame = "
                              f"{self.latent_hop} samples; the levels' frames: {reductions} samples)")
        self.film = bool(c.get("latent_film", False))
        self.unet = UNet1d(self.transform.features, out, c, None, latent, reductions.index(self.latent_hop),
                           film_channels=latent if self.film else 0)
        self.multiple = math.lcm(self.latent_hop, int(c["patch"]) * self.unet.multiple)
        self.sigma_data = float(c.get("sigma_data", 1.0))
        if not self.sigma_data > 0:
            raise ConfigError(f"{DMAE} config: sigma_data must be > 0, got {c.get('sigma_data')!r}")
        self.gain = None
        if c.get("latent_gain", False):  # input: the latent and the noise level (alpha, sigma)
            self.gain = nn.Sequential(nn.Conv1d(latent + 2, 2 * out, 1), nn.SiLU(), nn.Conv1d(2 * out, out, 1))

    @property
    def compression(self) -> float:
        return self.channels * self.latent_hop / int(self.config["latent_channels"])

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x)

    def forward(self, x_t: torch.Tensor, t: torch.Tensor, text=None, latent: torch.Tensor | None = None):
        """v for the noisy waveform given the latent (v_sample's model signature)."""
        alpha, sigma = (v[:, None, None] for v in alpha_sigma(t))
        if self.sigma_data == 1.0:
            return self._network(x_t, t, latent, alpha, sigma)
        q = self.sigma_data ** 2
        d = alpha * alpha * q + sigma * sigma  # the variance of x_t
        skip = alpha * sigma * (1 - q) / d
        return skip * x_t + (q / d).sqrt() * self._network(x_t / d.sqrt(), t, latent, alpha, sigma)

    def _network(self, x, t, latent, alpha, sigma):
        h = self.transform.encode(x)
        out = self.unet(h, t, None, inject=latent, film=latent if self.film else None)
        if self.gain is not None:
            frames = latent.repeat_interleave(h.shape[-1] // latent.shape[-1], -1)
            level = torch.cat([alpha, sigma], 1).expand(-1, -1, h.shape[-1])
            out = out + self.gain(torch.cat([frames, level], 1)) * h
        return self.transform.decode(out)

    def decode(self, latent: torch.Tensor, steps: int, rng: torch.Generator) -> torch.Tensor:
        """latent [1, latent_channels, L] -> waveform [1, C, L * latent_hop] (noise from rng)."""
        noise = torch.randn((1, self.channels, latent.shape[-1] * self.latent_hop), generator=rng)
        return v_sample(self, noise, steps, None, latent=latent)


def v_loss(model, x0: torch.Tensor, rng: torch.Generator, **kwargs) -> torch.Tensor:
    """The v-objective (thesis section 3.3): MSE between the model's v and alpha eps - sigma x0."""
    t = torch.rand(x0.shape[0], generator=rng)
    eps = torch.randn(x0.shape, generator=rng)
    alpha, sigma = (a[:, None, None] for a in alpha_sigma(t))
    return F.mse_loss(model(alpha * x0 + sigma * eps, t, **kwargs), alpha * eps - sigma * x0)


def _crop(x: torch.Tensor, multiple: int, name: str) -> torch.Tensor:
    n = x.shape[-1] - x.shape[-1] % multiple
    if n == 0:
        raise ConfigError(f"{name}: training crops must hold at least {multiple} samples")
    return x[..., :n]


def _sized_config(name: str, sizes: dict, size: str) -> dict:
    """A copy of one size's config (lists and dicts copied too, so callers may edit it)."""
    if size not in sizes:
        raise ConfigError(f"{name}: unknown size {size!r}; sizes: {', '.join(sizes)}")
    return {k: (dict(v) if isinstance(v, dict) else list(v) if isinstance(v, list) else v)
            for k, v in sizes[size].items()}


@register_trainable(DMAE)
class DMAETrainable:
    def default_config(self, size: str = "tiny") -> dict:
        return _sized_config(DMAE, DMAE_SIZES, size)

    def build(self, config: dict, seed: int) -> DMAENet:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return DMAENet(config)

    def training_loss(self, model: DMAENet, batch: TrainingBatch, rng: torch.Generator) -> torch.Tensor:
        x0 = _crop(batch.audio, model.multiple, DMAE)
        return v_loss(model, x0, rng, latent=model.encode(x0))


# ---------------------------------------------------------------------------------- latent model

def load_autoencoder(config: dict) -> tuple[DMAENet, dict]:
    """The frozen autoencoder a latent model runs on, and what records say about it."""
    name = config["autoencoder"]
    if name in ("untrained-tiny", "untrained-paper"):
        trainable = DMAETrainable()
        ae = trainable.build(trainable.default_config(name.removeprefix("untrained-")), int(config["autoencoder_seed"]))
        info = {"checkpoint": name, "sha256": None, "untrained": True}
    else:
        ae, _, loaded = model_for_generator(DMAE, name)
        info = {"checkpoint": name, "sha256": loaded["sha256"], "untrained": False}
    if int(ae.config["sample_rate"]) != int(config["sample_rate"]):
        raise ConfigError(f"{LATENT}: the autoencoder runs at {ae.config['sample_rate']} Hz, the config says "
                          f"sample_rate = {config['sample_rate']}")
    for p in ae.parameters():
        p.requires_grad_(False)
    return ae.eval(), info


class LatentNet(nn.Module):
    """Text-conditional v-diffusion U-Net on the autoencoder's latents; the autoencoder rides along outside
    the state dict (frozen)."""

    def __init__(self, config: dict, autoencoder: DMAENet, autoencoder_info: dict):
        super().__init__()
        self.config = dict(config)
        latent = int(autoencoder.config["latent_channels"])
        self.text = build_text_encoder(config)
        self.unet = UNet1d(latent, latent, config, int(config["text_dim"]))
        self._autoencoder = (autoencoder, autoencoder_info)
        self.multiple = autoencoder.multiple * self.unet.multiple  # waveform samples per latent U-Net unit

    @property
    def autoencoder(self) -> DMAENet:
        return self._autoencoder[0]

    @property
    def autoencoder_info(self) -> dict:
        return self._autoencoder[1]

    def encode_text(self, captions: list[str]):
        return self.text(captions)

    def forward(self, z_t: torch.Tensor, t: torch.Tensor, text=None) -> torch.Tensor:
        return self.unet(z_t, t, text)


@register_trainable(LATENT)
class LatentTrainable:
    def default_config(self, size: str = "tiny") -> dict:
        return _sized_config(LATENT, LATENT_SIZES, size)

    def build(self, config: dict, seed: int) -> LatentNet:
        ae, info = load_autoencoder(config)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return LatentNet(config, ae, info)

    def training_loss(self, model: LatentNet, batch: TrainingBatch, rng: torch.Generator) -> torch.Tensor:
        x0 = _crop(batch.audio, model.multiple, LATENT)
        with torch.no_grad():
            z0 = model.autoencoder.encode(x0)
        drop = torch.rand(len(batch.captions), generator=rng) < float(model.config["cond_drop"])
        text = model.encode_text(["" if d else c for c, d in zip(batch.captions, drop.tolist())])
        return v_loss(model, z0, rng, text=text)


# ------------------------------------------------------------------------------------- generators

class DMAEGenerator(ArchisoundGenerator):
    """Reconstruction: each reference clip encoded to the latent and decoded by the diffusion decoder."""

    def __init__(self, name: str, model, config: dict, info: dict, context: GeneratorContext):
        super().__init__(name, model, config, info, context)
        self.version = f"{VERSION}+{info['label']}"  # this module's version, not the waveform model's

    def _generate(self, request: GenerationRequest) -> list[GeneratedAudio]:
        check_request(self, request)
        steps = request.steps if request.steps is not None else int(self.config["default_steps"])
        n_out = int(round(request.duration_s * self.rate))
        n = -(-n_out // self.model.multiple) * self.model.multiple
        out = []
        for p in request.prompts:
            with torch.inference_mode():
                latent = self.model.encode(self._reference_clip(p.id, n))
            for k in range(request.samples_per_prompt):
                rng = sample_rng(request.seed, p.index, k)
                wave = self.model.decode(latent, steps, rng)[0, :, :n_out].numpy()
                wave, rate_meta = at_requested_rate(wave, self.rate, request, self.context.resampler)
                meta = {"generator": self.name, "generator_version": self.version, **checkpoint_metadata(self.info),
                        "seed": request.seed, "seed_used": sample_seed(request.seed, p.index, k),
                        "prompt_index": p.index, "sample_index": k, "steps": steps, "sampler": "ddim-v",
                        "latent_shape": list(latent.shape[1:]), "compression": self.model.compression,
                        "reference_clip_hash": self.context.reference.clip_hash(self.clips[p.id]), **rate_meta}
                out.append(GeneratedAudio(p.id, k, wave, request.sample_rate, meta))
        return out


class LatentGenerator:
    """Text -> latent (v-sampler, classifier-free guidance) -> the autoencoder's diffusion decoder."""

    max_duration_s = None
    uses_steps = True
    uses_guidance = True
    options = ("decoder_steps",)

    def __init__(self, model: LatentNet, config: dict, info: dict, context: GeneratorContext):
        self.name, self.model, self.config, self.info, self.context = LATENT, model, config, info, context
        self.rate = int(config["sample_rate"])
        self.native_sample_rates = (self.rate,)
        ae = model.autoencoder_info
        self.version = f"{VERSION}+{info['label']}+ae-" + (ae["sha256"][:12] if ae["sha256"] else ae["checkpoint"])

    def generate(self, request: GenerationRequest) -> list[GeneratedAudio]:
        with pinned_threads(1):  # bits independent of the core count, as the other ArchiSound generators
            return self._generate(request)

    def _generate(self, request: GenerationRequest) -> list[GeneratedAudio]:
        check_request(self, request)
        steps = request.steps if request.steps is not None else int(self.config["default_steps"])
        decoder_steps = request.options.get("decoder_steps", int(self.config["decoder_steps"]))
        for name, value in (("steps", steps), ("decoder_steps", decoder_steps)):
            if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 1000:
                raise ConfigError(f"generator {LATENT!r}: {name} must be an integer in [1, 1000], got {value!r}")
        guidance = float(request.guidance if request.guidance is not None else self.config["default_guidance"])
        if not guidance >= 0:
            raise ConfigError(f"generator {LATENT!r}: guidance must be >= 0, got {guidance}")
        ae = self.model.autoencoder
        n_out = int(round(request.duration_s * self.rate))
        n = -(-n_out // self.model.multiple) * self.model.multiple
        shape = (1, int(ae.config["latent_channels"]), n // ae.latent_hop)
        null = self.model.encode_text([""])
        out = []
        for p in request.prompts:
            text = self.model.encode_text([p.text])
            for k in range(request.samples_per_prompt):
                rng = sample_rng(request.seed, p.index, k)
                latent = v_sample(self.model, torch.randn(shape, generator=rng), steps, guidance, text, null)
                wave = ae.decode(latent, decoder_steps, rng)[0, :, :n_out].numpy()
                wave, rate_meta = at_requested_rate(np.asarray(wave), self.rate, request, self.context.resampler)
                meta = {"generator": LATENT, "generator_version": self.version, **checkpoint_metadata(self.info),
                        "autoencoder": self.model.autoencoder_info, "seed": request.seed,
                        "seed_used": sample_seed(request.seed, p.index, k), "prompt_index": p.index,
                        "sample_index": k, "steps": steps, "decoder_steps": decoder_steps, "guidance": guidance,
                        "sampler": "ddim-v", "latent_shape": list(shape[1:]), **rate_meta}
                out.append(GeneratedAudio(p.id, k, wave, request.sample_rate, meta))
        return out


@register_generator(DMAE, "ArchiSound diffusion magnitude autoencoder (thesis 5.4): reference clip -> 64x tanh "
                          "latent -> diffusion decoder (needs a reference set)")
def _dmae(checkpoint: str | None, context: GeneratorContext) -> DMAEGenerator:
    model, config, info = model_for_generator(DMAE, checkpoint)
    return DMAEGenerator(DMAE, model, config, info, context)


@register_generator(LATENT, "ArchiSound latent text-to-music diffusion on the magnitude autoencoder's latents "
                            "(thesis 5.4, 'Long'); untrained tiny without a checkpoint")
def _latent(checkpoint: str | None, context: GeneratorContext) -> LatentGenerator:
    model, config, info = model_for_generator(LATENT, checkpoint)
    return LatentGenerator(model, config, info, context)
