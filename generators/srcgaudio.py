"""SRC-gAudio (sampling-rate-controlled audio generation): one latent diffusion model, the rate is a condition.

As in the paper: audio at rate r -> log-mel with that rate's configuration (16k: n_fft 1024 / hop 160,
24k: 2048/240, 32k: 2048/320, 48k: 2048/480, all 64 mels and 100 frames per second, so every rate
shares one latent grid) -> a VAE-style mel autoencoder -> latents. The denoiser is conditioned on the
text tokens concatenated with a time-step token and a sampling-rate token (learned rate embedding);
classifier-free guidance uses the null text "" with the SAME rate. A vocoder per rate turns mels back
into audio (small trainable ones; or Griffin-Lim, labelled as a phase-reconstruction fallback).

Generation: the request's sample_rate picks the rate condition, the mel configuration and the vocoder;
a rate the model was not trained with is an error, not a resample. DDIM with `steps` (default 200 as
in the paper), guidance (default 3.0), option eta. Per-sample CPU generators; one sample at a time.
The tiny config is trainable on the built-in synthetic set with `bench train srcgaudio`.
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from bench.core.errors import ConfigError
from generators.base import (GeneratedAudio, GenerationRequest, GeneratorContext, check_request,
                             register_generator, sample_rng)
from generators.mel_audio import (MelSpec, MelVocoder, check_vocoder, grid_positions, mel_to_wave, pad_frames,
                                  stft_loss)
from generators.srcgaudio_unet import SDUNet
from generators.text_encoders import build_text_encoder, sinusoid
from generators.trainable import TrainingBatch, checkpoint_metadata, model_for_generator, register_trainable

NAME = "srcgaudio"
# the paper's (n_fft, hop, n_mels) per rate, Section III-A
MEL_CONFIGS = {16000: (1024, 160, 64), 24000: (2048, 240, 64), 32000: (2048, 320, 64), 48000: (2048, 480, 64)}
FRAMES_PER_SECOND = 100


class MelVAE(nn.Module):
    """Log-mel [B, n_mels, frames] <-> latent [B, C, n_mels/4, frames/4] (Gaussian posterior, KL-regularized)."""

    def __init__(self, channels: int, latent_channels: int):
        super().__init__()
        self.encoder = nn.Sequential(
            nn.Conv2d(1, channels, 3, padding=1), nn.SiLU(), nn.Conv2d(channels, channels, 4, 2, 1), nn.SiLU(),
            nn.Conv2d(channels, channels, 4, 2, 1), nn.SiLU(), nn.Conv2d(channels, 2 * latent_channels, 1))
        self.decoder = nn.Sequential(
            nn.Conv2d(latent_channels, channels, 3, padding=1), nn.SiLU(), nn.ConvTranspose2d(channels, channels, 4, 2, 1),
            nn.SiLU(), nn.ConvTranspose2d(channels, channels, 4, 2, 1), nn.SiLU(), nn.Conv2d(channels, 1, 3, padding=1))

    def posterior(self, mel: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mean, logvar = self.encoder(mel[:, None]).chunk(2, dim=1)
        return mean, logvar.clamp(-20, 10)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(z)[:, 0]


class LatentDenoiser(nn.Module):
    """epsilon(z_t, t | concat(text tokens, time token, rate token)) over the flattened latent grid."""

    def __init__(self, latent_channels: int, dim: int, layers: int, heads: int, n_rates: int):
        super().__init__()
        self.dim = dim
        self.inp = nn.Linear(latent_channels, dim)
        self.time = nn.Sequential(nn.Linear(dim, dim), nn.SiLU(), nn.Linear(dim, dim))
        self.rate = nn.Embedding(n_rates, dim)
        layer = nn.TransformerDecoderLayer(dim, heads, 4 * dim, dropout=0.0, batch_first=True, norm_first=True)
        self.blocks = nn.TransformerDecoder(layer, layers)
        self.out = nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, latent_channels))

    def forward(self, z: torch.Tensor, t: torch.Tensor, rate_id: torch.Tensor, text: torch.Tensor,
                text_pad: torch.Tensor) -> torch.Tensor:
        b, c, f, n = z.shape
        pos = grid_positions(f, n, self.dim)
        temb = self.time(sinusoid(t, self.dim))
        remb = self.rate(rate_id)
        # the paper's condition: time and rate embeddings concatenated with the text embedding
        memory = torch.cat([text, temb[:, None], remb[:, None]], dim=1)
        pad = torch.cat([text_pad, torch.zeros(b, 2, dtype=torch.bool)], dim=1)
        h = self.inp(z.flatten(2).transpose(1, 2)) + pos + temb[:, None]
        h = self.blocks(h, memory, memory_key_padding_mask=pad)
        return self.out(h).transpose(1, 2).reshape(b, c, f, n)


class SRCgAudioModel(nn.Module):
    def __init__(self, config: dict):
        super().__init__()
        c = self.config = dict(config)
        self.rates = [int(r) for r in c["rates"]]
        self.mels = nn.ModuleDict({str(r): MelSpec(r, *MEL_CONFIGS[r][:2], MEL_CONFIGS[r][2], 0.0, r / 2)
                                   for r in self.rates})
        self.vae = MelVAE(c["vae_channels"], c["latent_channels"])
        self.text = build_text_encoder(c)
        kind = c.get("denoiser", "transformer")  # checkpoints from before the U-Net: the transformer
        if kind == "unet":
            self.text_proj = nn.Linear(c["text_dim"], c["context_dim"])
            self.denoiser = SDUNet(c["latent_channels"], len(self.rates), c)
        elif kind == "transformer":
            self.text_proj = nn.Linear(c["text_dim"], c["dim"])
            self.denoiser = LatentDenoiser(c["latent_channels"], c["dim"], c["layers"], c["heads"], len(self.rates))
        else:
            raise ConfigError(f"srcgaudio config denoiser must be 'unet' or 'transformer', got {kind!r}")
        self.vocoders = nn.ModuleDict({str(r): MelVocoder(MEL_CONFIGS[r][2], MEL_CONFIGS[r][1], c["vocoder_width"])
                                       for r in self.rates}) if c["vocoder"] == "learned" else None
        betas = torch.linspace(c["beta_start"] ** 0.5, c["beta_end"] ** 0.5, c["timesteps"], dtype=torch.float64) ** 2
        self.register_buffer("alphas_cumprod", torch.cumprod(1 - betas, 0).float(), persistent=False)

    def frames(self, seconds: float) -> int:
        return math.ceil((int(round(seconds * FRAMES_PER_SECOND)) + 1) / 4) * 4

    def logmel(self, wave: torch.Tensor, rate: int) -> torch.Tensor:
        return pad_frames(self.mels[str(rate)](wave), self.frames(wave.shape[-1] / rate))

    def encode_text(self, captions: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        h, pad = self.text(captions)
        return self.text_proj(h), pad


def _resample(wave: torch.Tensor, rate_in: int, rate_out: int) -> torch.Tensor:
    if rate_in == rate_out:
        return wave
    from bench.core.resample import resample

    out = resample(wave.numpy()[None], rate_in, rate_out, "soxr-vhq")[0]
    return torch.from_numpy(np.ascontiguousarray(out, np.float32))


_COMMON = {"sample_rate": 48000, "duration_s": 1.0, "rates": [16000, 24000, 32000, 48000], "vae_channels": 32,
           "latent_channels": 4, "kl_weight": 1e-4, "timesteps": 1000, "beta_start": 0.0015, "beta_end": 0.0195,
           "uncond_prob": 0.1, "text_encoder": "hashed-words", "text_dim": 64, "text_vocab": 1024,
           "text_max_words": 16, "vocoder": "learned", "vocoder_width": 32, "lr": 2e-3, "max_duration_s": 10.0}
SIZES = {
    # tiny: a 2-layer transformer denoiser over the flattened latent grid; trains on a CPU in minutes.
    "tiny": {"dim": 64, "layers": 2, "heads": 2},
    # tiny-unet: the paper's Stable-Diffusion-style U-Net layout at a size a CPU trains.
    "tiny-unet": {"denoiser": "unet", "unet_channels": [32, 64, 64, 128], "cross_attention_levels": [1, 1, 1, 0],
                  "head_features": 16, "layers_per_block": 1, "context_dim": 64},
    # paper (section III-B): the Stable Diffusion U-Net with encoder channels 320/640/640/1280, heads
    # 5/10/10/20 (64 features each), on AudioLDM's VAE latents (8 channels, mels / 4) with FLAN-T5-large's
    # 1024-d tokens: the LDM of 561M. Attention sits where Stable Diffusion puts it (the three outer encoder
    # levels, the three outer decoder levels, and the middle block at 1280 with 20 heads): that layout
    # counts 560.4M; the text's "last three encoder blocks" read literally (320 without, 1280 with) would
    # count 724M. The VAE and vocoders here are this module's own (the paper's: AudioLDM's, HiFi-GAN).
    "paper": {"denoiser": "unet", "unet_channels": [320, 640, 640, 1280], "cross_attention_levels": [1, 1, 1, 0],
              "head_features": 64, "layers_per_block": 2, "context_dim": 1024, "latent_channels": 8,
              "vae_channels": 128, "text_dim": 1024, "text_max_words": 128, "vocoder_width": 256,
              "duration_s": 10.0, "lr": 3e-5},
}


@register_trainable(NAME)
class SRCgAudioTrainable:
    # what `bench train --init-from` may change (section II-C: pre-train at a fixed low rate, then fine-tune
    # on all rates): the rate set grows, the rest of the architecture stays
    fine_tune_keys = ("rates", "sample_rate", "duration_s", "lr", "uncond_prob", "kl_weight", "max_duration_s")

    def warm_start_state(self, old_config: dict, old_state: dict, config: dict, fresh_state: dict) -> dict:
        """A pre-trained state on a (possibly larger) rate set: old rates keep their rate embedding rows and
        vocoders; new rates get the freshly seeded ones. Dropping a trained rate is refused."""
        old_rates, rates = [int(r) for r in old_config["rates"]], [int(r) for r in config["rates"]]
        dropped = sorted(set(old_rates) - set(rates))
        if dropped:
            raise ConfigError(f"srcgaudio fine-tune: rates {dropped} of the pre-trained model are missing from "
                              f"the new rate set {rates}; a fine-tune extends the rate set")
        state = {k: v for k, v in old_state.items() if not k.startswith("vocoders.")}
        for key in [k for k in fresh_state if k.endswith(".rate.weight")]:  # the rate embedding (nn.Embedding `rate`)
            rows = fresh_state[key].clone()
            for i, rate in enumerate(old_rates):
                rows[rates.index(rate)] = old_state[key][i]
            state[key] = rows
        for key, value in fresh_state.items():
            if key.startswith("vocoders."):
                rate = int(key.split(".")[1])
                state[key] = old_state[key] if rate in old_rates else value
        return state

    def default_config(self, size: str = "tiny") -> dict:
        if size not in SIZES:
            raise ConfigError(f"srcgaudio: unknown size {size!r}; known: {', '.join(SIZES)}")
        return {**_COMMON, **SIZES[size]}

    def build(self, config: dict, seed: int) -> nn.Module:
        check_config(config)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return SRCgAudioModel(config)

    def training_loss(self, model: SRCgAudioModel, batch: TrainingBatch, rng: torch.Generator) -> torch.Tensor:
        c, source_rate = model.config, int(model.config["sample_rate"])
        rate_ids = torch.randint(len(model.rates), (batch.audio.shape[0],), generator=rng)
        waves = [_resample(batch.audio[i].mean(0), source_rate, model.rates[int(r)]) for i, r in enumerate(rate_ids)]
        mel = torch.stack([model.logmel(w, model.rates[int(r)]) for w, r in zip(waves, rate_ids)])
        mean, logvar = model.vae.posterior(mel)
        z = mean + torch.randn(mean.shape, generator=rng) * (0.5 * logvar).exp()
        kl = 0.5 * (mean.pow(2) + logvar.exp() - 1 - logvar).mean()
        loss = F.l1_loss(model.vae.decode(z), mel) + c["kl_weight"] * kl
        # diffusion on detached latents; drop the text (keep the rate) for classifier-free guidance
        z0 = mean.detach()
        t = torch.randint(c["timesteps"], (z0.shape[0],), generator=rng)
        noise = torch.randn(z0.shape, generator=rng)
        a = model.alphas_cumprod[t].view(-1, 1, 1, 1)
        z_t = a.sqrt() * z0 + (1 - a).sqrt() * noise
        drop = torch.rand(len(batch.captions), generator=rng) < c["uncond_prob"]
        text, pad = model.encode_text(["" if d else cap for d, cap in zip(drop.tolist(), batch.captions)])
        loss = loss + F.mse_loss(model.denoiser(z_t, t, rate_ids, text, pad), noise)
        if model.vocoders is not None:  # each rate's vocoder learns from the clips drawn at its rate
            for i, r in enumerate(rate_ids.tolist()):
                rate = model.rates[r]
                pred = model.vocoders[str(rate)](mel[i:i + 1])
                target = F.pad(waves[i], (0, max(0, pred.shape[-1] - waves[i].shape[-1])))[:pred.shape[-1]]
                loss = loss + stft_loss(pred, target[None]) / len(rate_ids)
        return loss


def check_config(config: dict) -> None:
    unknown = [r for r in config["rates"] if int(r) not in MEL_CONFIGS]
    if unknown:
        raise ConfigError(f"srcgaudio config rates: {unknown} has no mel configuration; the paper's rates are "
                          f"{sorted(MEL_CONFIGS)}")
    check_vocoder(NAME, config)


class SRCgAudioGenerator:
    name = NAME
    uses_steps = True
    uses_guidance = True
    default_steps = 200  # the paper's DDIM steps
    default_guidance = 3.0

    def __init__(self, model: SRCgAudioModel, config: dict, info: dict, context: GeneratorContext):
        self.model, self.config, self.info, self.context = model, config, info, context
        self.native_sample_rates = tuple(model.rates)
        self.max_duration_s = float(config["max_duration_s"])
        self.version = info["label"]
        self.checkpoint_sha256 = info["sha256"]

    def _ddim_timesteps(self, steps: int) -> list[int]:
        T = self.config["timesteps"]
        if steps > T:
            raise ConfigError(f"srcgaudio: steps={steps} exceeds the model's {T} diffusion steps")
        return list(range(0, T, T // steps))[:steps][::-1]

    @torch.no_grad()
    def generate(self, request: GenerationRequest) -> list[GeneratedAudio]:
        check_request(self, request)
        rate = request.sample_rate
        if rate not in self.native_sample_rates:
            raise ConfigError(f"srcgaudio: sample_rate {rate} Hz is not one this model was trained to generate "
                              f"({', '.join(map(str, self.native_sample_rates))} Hz); the rate is a generation "
                              "condition here, not a resampling step")
        unknown = set(request.options) - {"eta"}
        if unknown:
            raise ConfigError(f"srcgaudio: unknown option(s) {sorted(unknown)}; known: ['eta']")
        eta = float(request.options.get("eta", 0.0))
        empty = [p.id for p in request.prompts if not p.text.strip()]
        if empty:
            raise ConfigError(f"srcgaudio: prompt {empty[0]!r} has empty text; give every prompt a caption")
        steps = request.steps or self.default_steps
        guidance = self.default_guidance if request.guidance is None else float(request.guidance)
        timesteps = self._ddim_timesteps(steps)
        m = self.model
        rate_id = torch.tensor([m.rates.index(rate)])
        n = int(round(request.duration_s * rate))
        shape = (1, self.config["latent_channels"], MEL_CONFIGS[rate][2] // 4, m.frames(request.duration_s) // 4)
        null_text, null_pad = m.encode_text([""])
        out = []
        for p in request.prompts:
            text, pad = m.encode_text([p.text])
            for k in range(request.samples_per_prompt):
                rng = sample_rng(request.seed, p.index, k)
                z = torch.randn(shape, generator=rng)
                for i, t in enumerate(timesteps):
                    tt = torch.tensor([t])
                    eps = m.denoiser(z, tt, rate_id, text, pad)
                    if guidance != 1.0:  # CFG: null text, same rate
                        eps_u = m.denoiser(z, tt, rate_id, null_text, null_pad)
                        eps = eps_u + guidance * (eps - eps_u)
                    a_t = m.alphas_cumprod[t]
                    a_s = m.alphas_cumprod[timesteps[i + 1]] if i + 1 < len(timesteps) else torch.tensor(1.0)
                    z0 = (z - (1 - a_t).sqrt() * eps) / a_t.sqrt()
                    sigma = eta * ((1 - a_s) / (1 - a_t) * (1 - a_t / a_s)).sqrt()
                    z = a_s.sqrt() * z0 + (1 - a_s - sigma ** 2).clamp_min(0).sqrt() * eps
                    if eta > 0:
                        z = z + sigma * torch.randn(shape, generator=rng)
                mel = m.vae.decode(z)
                vocoder_net = m.vocoders[str(rate)] if m.vocoders is not None else None
                wave, vocoder = mel_to_wave(mel, n, m.mels[str(rate)], vocoder_net, f"learned mel vocoder ({rate} Hz)")
                n_fft, hop, n_mels = MEL_CONFIGS[rate]
                meta = {"generator": NAME, "generator_version": self.version, **checkpoint_metadata(self.info),
                        "seed": request.seed, "prompt_index": p.index,
                        "sample_index": k, "steps": steps, "guidance": guidance, "eta": eta,
                        "rate_condition": rate, "mel_config": {"n_fft": n_fft, "hop": hop, "n_mels": n_mels},
                        "vocoder": vocoder, "text_encoder": self.config["text_encoder"],
                        "denoiser": self.config.get("denoiser", "transformer"),
                        "native_sample_rate": rate, "output_sample_rate": rate, "resampler": None}
                out.append(GeneratedAudio(p.id, k, wave, rate, meta))
        return out


@register_generator(NAME, "SRC-gAudio: latent diffusion with the sampling rate (16/24/32/48 kHz) as a condition "
                          "(bench train srcgaudio; tiny untrained without a checkpoint)")
def _srcgaudio(checkpoint: str | None, context: GeneratorContext) -> SRCgAudioGenerator:
    model, config, info = model_for_generator(NAME, checkpoint)
    return SRCgAudioGenerator(model, config, info, context)
