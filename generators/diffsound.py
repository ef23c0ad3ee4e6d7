"""Diffsound (Yang et al. 2023): text -> VQ mel tokens by discrete diffusion -> mel -> vocoder.

Parts (each its own nn.Module inside one trainable model):
- VQ-VAE on log-mel spectrograms: conv encoder, a spatial quantizer (every (mel, frame) cell of the
  downsampled grid is one token of a K-entry codebook; straight-through gradients, codebook and
  commitment losses), conv decoder.
- Discrete diffusion decoder: a transformer over the token grid (sinusoidal 2-D positions, time
  embedding, cross-attention to the text) predicting p(x0 | x_t, text); the mask-and-uniform transition
  and its posterior live in generators.diffsound_diffusion. Loss = L_vlb + aux_weight * L_x0 (eq. 23).
- Text conditioning through the pluggable encoder registry (generators.text_encoders).
- Vocoder: a small trainable mel vocoder, or Griffin-Lim (config "vocoder": "griffin-lim"), which the
  output metadata names as a phase-reconstruction fallback.
The tiny config trains all parts jointly (the diffusion loss sees detached tokens) so `bench train
diffsound` gives a working system in minutes; the paper trains them in stages on AudioSet/AudioCaps.

Sampling: Algorithm 2. `steps` or option `time_stride` choose the stride Delta_t (steps = ceil(T/stride)).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from bench.core.errors import ConfigError
from generators.base import (GeneratedAudio, GenerationRequest, GeneratorContext, at_requested_rate,
                             check_request, register_generator, sample_rng)
from generators.diffsound_diffusion import MaskUniformSchedule, steps_for_stride
from generators.mel_audio import (MelSpec, MelVocoder, check_vocoder, grid_positions, mel_to_wave, pad_frames,
                                  stft_loss)
from generators.text_encoders import build_text_encoder, sinusoid
from generators.trainable import TrainingBatch, checkpoint_metadata, model_for_generator, register_trainable

NAME = "diffsound"


class VQVAE(nn.Module):
    def __init__(self, n_mels: int, channels: int, codebook_size: int, code_dim: int, downsample: int):
        super().__init__()
        layers, ch = [nn.Conv2d(1, channels, 3, padding=1)], channels
        for _ in range(int(math.log2(downsample))):
            layers += [nn.GELU(), nn.Conv2d(ch, ch, 4, stride=2, padding=1)]
        self.encoder = nn.Sequential(*layers, nn.GELU(), nn.Conv2d(ch, code_dim, 1))
        self.codebook = nn.Embedding(codebook_size, code_dim)
        nn.init.uniform_(self.codebook.weight, -1.0 / codebook_size, 1.0 / codebook_size)
        layers = [nn.Conv2d(code_dim, ch, 3, padding=1)]
        for _ in range(int(math.log2(downsample))):
            layers += [nn.GELU(), nn.ConvTranspose2d(ch, ch, 4, stride=2, padding=1)]
        self.decoder = nn.Sequential(*layers, nn.GELU(), nn.Conv2d(ch, 1, 3, padding=1))

    def quantize(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """z [B, D, F, T] -> (token grid [B, F, T], quantized [B, D, F, T]); nearest codebook entry per cell."""
        flat = z.permute(0, 2, 3, 1).reshape(-1, z.shape[1])
        dist = (flat.pow(2).sum(1, keepdim=True) - 2 * flat @ self.codebook.weight.T
                + self.codebook.weight.pow(2).sum(1))
        tokens = dist.argmin(1).view(z.shape[0], z.shape[2], z.shape[3])
        return tokens, self.lookup(tokens)

    def lookup(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.codebook(tokens).permute(0, 3, 1, 2)

    def encode(self, mel: torch.Tensor) -> torch.Tensor:
        return self.quantize(self.encoder(mel[:, None]))[0]

    def decode(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.lookup(tokens))[:, 0]

    def loss(self, mel: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        z = self.encoder(mel[:, None])
        tokens, q = self.quantize(z)
        recon = self.decoder(z + (q - z).detach())[:, 0]  # straight-through estimator
        vq = F.mse_loss(q, z.detach()) + 0.25 * F.mse_loss(z, q.detach())
        return F.l1_loss(recon, mel) + vq, tokens


class DiffusionTransformer(nn.Module):
    """p(x0 | x_t, text) over a flattened token grid; input vocabulary K tokens + [MASK]."""

    def __init__(self, codebook_size: int, dim: int, layers: int, heads: int):
        super().__init__()
        self.dim = dim
        self.embed = nn.Embedding(codebook_size + 1, dim)
        self.time = nn.Sequential(nn.Linear(dim, dim), nn.GELU(), nn.Linear(dim, dim))
        layer = nn.TransformerDecoderLayer(dim, heads, 4 * dim, dropout=0.0, batch_first=True, norm_first=True)
        self.blocks = nn.TransformerDecoder(layer, layers)
        self.out = nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, codebook_size))

    def forward(self, x_t: torch.Tensor, grid: tuple[int, int], t: torch.Tensor, text: torch.Tensor,
                text_pad: torch.Tensor) -> torch.Tensor:
        pos = grid_positions(*grid, self.dim).to(x_t.device)
        h = self.embed(x_t) + pos + self.time(sinusoid(t, self.dim).to(x_t.device))[:, None]
        return self.out(self.blocks(h, text, memory_key_padding_mask=text_pad))  # logits [B, N, K]


class DiffsoundModel(nn.Module):
    def __init__(self, config: dict):
        super().__init__()
        c = config
        self.config = dict(config)
        self.mel = MelSpec(c["sample_rate"], c["n_fft"], c["hop"], c["n_mels"])
        self.vqvae = VQVAE(c["n_mels"], c["vq_channels"], c["codebook_size"], c["code_dim"], c["downsample"])
        self.text = build_text_encoder(c)
        self.text_proj = nn.Linear(c["text_dim"], c["dim"])
        self.denoiser = DiffusionTransformer(c["codebook_size"], c["dim"], c["layers"], c["heads"])
        self.vocoder = MelVocoder(c["n_mels"], c["hop"], c["vocoder_width"]) if c["vocoder"] == "learned" else None
        self.schedule = MaskUniformSchedule(c["codebook_size"], c["timesteps"], c["final_mask_rate"])

    def frames(self, n_samples: int) -> int:
        """Mel frames for n samples, rounded up to a multiple of the VQ downsampling."""
        d = self.config["downsample"]
        return math.ceil((n_samples // self.config["hop"] + 1) / d) * d

    def logmel(self, wave: torch.Tensor) -> torch.Tensor:
        return pad_frames(self.mel(wave), self.frames(wave.shape[-1]))

    def encode_text(self, captions: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        h, pad = self.text(captions)
        return self.text_proj(h), pad

    def p_x0(self, x_t, grid, t, text, pad) -> torch.Tensor:
        return self.denoiser(x_t, grid, t, text, pad).float().log_softmax(-1)


@register_trainable(NAME)
class DiffsoundTrainable:
    def default_config(self, size: str = "tiny") -> dict:
        if size == "tiny":  # trains on the built-in synthetic set in minutes on 2 CPU cores
            return {"sample_rate": 16000, "duration_s": 1.0, "n_fft": 512, "hop": 256, "n_mels": 32,
                    "vq_channels": 32, "codebook_size": 64, "code_dim": 32, "downsample": 4,
                    "dim": 64, "layers": 2, "heads": 2, "timesteps": 20, "final_mask_rate": 0.9,
                    "aux_weight": 1.0, "text_encoder": "hashed-words", "text_dim": 64, "text_vocab": 1024,
                    "text_max_words": 16, "vocoder": "learned", "vocoder_width": 32, "lr": 2e-3,
                    "max_duration_s": 10.0}
        if size == "paper":  # Section V: 22.05 kHz, 80 mels, 860x80 -> 53x5 tokens, K=256, T=100
            return {"sample_rate": 22050, "duration_s": 10.0, "n_fft": 1024, "hop": 256, "n_mels": 80,
                    "vq_channels": 128, "codebook_size": 256, "code_dim": 256, "downsample": 16,
                    "dim": 512, "layers": 12, "heads": 8, "timesteps": 100, "final_mask_rate": 0.9,
                    "aux_weight": 1e-4, "text_encoder": "hashed-words", "text_dim": 512, "text_vocab": 49408,
                    "text_max_words": 77, "vocoder": "learned", "vocoder_width": 512, "lr": 3e-6,
                    "max_duration_s": 10.0}
        raise ConfigError(f"diffsound: unknown size {size!r}; known: tiny, paper")

    def build(self, config: dict, seed: int) -> nn.Module:
        check_config(config)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return DiffsoundModel(config)

    def training_loss(self, model: DiffsoundModel, batch: TrainingBatch, rng: torch.Generator) -> torch.Tensor:
        wave = batch.audio.mean(1)  # mono [B, N]
        mel = model.logmel(wave)
        vq_loss, tokens = model.vqvae.loss(mel)
        x0 = tokens.detach().flatten(1)
        grid = tuple(tokens.shape[1:])
        sched = model.schedule
        t = torch.randint(1, sched.T + 1, (x0.shape[0],), generator=rng)
        x_t = sched.q_sample(x0, t, rng)
        text, pad = model.encode_text(batch.captions)
        log_p0 = model.p_x0(x_t, grid, t, text, pad)  # [B, N, K]
        # L_vlb: KL(q(x_{t-1} | x_t, x0) || p(x_{t-1} | x_t)) per position (at t = 1 it is -log p(x0))
        vlb = []
        for i in range(x0.shape[0]):
            s, ti = int(t[i]) - 1, int(t[i])
            q = sched.posterior(F.one_hot(x0[i:i + 1], sched.K).float(), x_t[i:i + 1], s, ti)
            p = sched.posterior(log_p0[i:i + 1].exp(), x_t[i:i + 1], s, ti)
            vlb.append((q * (q.clamp_min(1e-12).log() - p.clamp_min(1e-12).log())).sum(-1).mean())
        x0_loss = F.nll_loss(log_p0.transpose(1, 2), x0)
        loss = vq_loss + torch.stack(vlb).mean() + model.config["aux_weight"] * x0_loss
        if model.vocoder is not None:
            n = mel.shape[-1] * model.config["hop"]
            target = F.pad(wave, (0, max(0, n - wave.shape[-1])))[:, :n]
            loss = loss + stft_loss(model.vocoder(mel), target)
        return loss


def check_config(config: dict) -> None:
    check_vocoder(NAME, config)
    d = config["downsample"]
    if d < 1 or d & (d - 1) or config["n_mels"] % d:
        raise ConfigError(f"diffsound config downsample={d} must be a power of 2 dividing n_mels={config['n_mels']}")
    if not 0 <= config["final_mask_rate"] <= 1:
        raise ConfigError(f"diffsound config final_mask_rate={config['final_mask_rate']} must be in [0, 1]")


class DiffsoundGenerator:
    name = NAME
    native_sample_rates: tuple[int, ...]
    uses_steps = True
    uses_guidance = False  # Diffsound samples without classifier-free guidance
    options = ("time_stride",)

    def __init__(self, model: DiffsoundModel, config: dict, info: dict, context: GeneratorContext):
        self.model, self.config, self.info, self.context = model, config, info, context
        self.native_sample_rates = (int(config["sample_rate"]),)
        self.max_duration_s = float(config["max_duration_s"])
        self.version = info["label"]  # "untrained-tiny-seed0" or "stepN-<sha256 prefix>"
        self.checkpoint_sha256 = info["sha256"]

    def _stride(self, request: GenerationRequest) -> int:
        T = self.model.schedule.T
        stride = request.options.get("time_stride")
        if stride is not None:
            if isinstance(stride, bool) or not isinstance(stride, int) or not 1 <= stride <= T:
                raise ConfigError(f"diffsound: option time_stride must be an integer in [1, T={T}], got {stride!r}")
            if request.steps is not None and request.steps != steps_for_stride(T, stride):
                raise ConfigError(f"diffsound: steps={request.steps} contradicts time_stride={stride} "
                                  f"(T={T} gives {steps_for_stride(T, stride)} steps); give one of them")
            return stride
        if request.steps is None:
            return 1
        if request.steps > T:
            raise ConfigError(f"diffsound: steps={request.steps} exceeds the model's T={T} diffusion steps")
        return math.ceil(T / request.steps)

    @torch.no_grad()
    def generate(self, request: GenerationRequest) -> list[GeneratedAudio]:
        check_request(self, request)
        stride = self._stride(request)
        chain = self.model.schedule.stride_chain(stride)
        rate = self.native_sample_rates[0]
        n = int(round(request.duration_s * rate))
        frames = self.model.frames(n)
        grid = (self.config["n_mels"] // self.config["downsample"], frames // self.config["downsample"])
        out = []
        for p in request.prompts:
            if not p.text.strip():
                raise ConfigError(f"diffsound: prompt {p.id!r} has empty text; give every prompt a caption")
        for p in request.prompts:
            text, pad = self.model.encode_text([p.text])
            for k in range(request.samples_per_prompt):
                rng = sample_rng(request.seed, p.index, k)
                x = self.model.schedule.sample_prior((1, grid[0] * grid[1]), rng)
                for t, s in chain:  # Algorithm 2: x_t -> x_{t - stride}
                    probs = self.model.p_x0(x, grid, torch.tensor([t]), text, pad).exp().double()
                    post = self.model.schedule.posterior(probs, x, s, t)
                    x = torch.multinomial(post[0], 1, generator=rng)[:, 0][None]
                x = x.clamp_max(self.model.schedule.K - 1)  # x_0 holds no mask (posterior at s=0 excludes it)
                mel = self.model.vqvae.decode(x.view(1, *grid))
                wave, vocoder = mel_to_wave(mel, n, self.model.mel, self.model.vocoder)
                wave, rate_meta = at_requested_rate(wave, rate, request, self.context.resampler)
                meta = {"generator": NAME, "generator_version": self.version, **checkpoint_metadata(self.info),
                        "seed": request.seed, "prompt_index": p.index,
                        "sample_index": k, "steps": len(chain), "timesteps": self.model.schedule.T,
                        "time_stride": stride, "final_mask_rate": self.model.schedule.final_mask_rate,
                        "guidance": None, "vocoder": vocoder, "text_encoder": self.config["text_encoder"],
                        **rate_meta}
                out.append(GeneratedAudio(p.id, k, wave, request.sample_rate, meta))
        return out


@register_generator(NAME, "Diffsound: VQ-VAE mel tokens + mask-and-uniform discrete diffusion (bench train "
                          "diffsound; tiny untrained without a checkpoint)")
def _diffsound(checkpoint: str | None, context: GeneratorContext) -> DiffsoundGenerator:
    model, config, info = model_for_generator(NAME, checkpoint)
    return DiffsoundGenerator(model, config, info, context)
