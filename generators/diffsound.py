"""Diffsound (Yang et al. 2023): text -> VQ mel tokens by discrete diffusion -> mel -> vocoder.

Parts (generators.diffsound_modules, laid out as the authors' checkpoints so their weights load key for key):
- `content_codec`: the VQ-VAE on log-mels (SpecVQGAN: ResNet/attention conv encoder, a spatial quantizer
  where every (mel, frame) cell of the downsampled grid is one of K tokens, conv decoder); trained with
  eq. 2 (L1 + codebook + commitment) and, with `adversarial_weight` > 0, eq. 3's VQ-GAN adversarial loss
  (PatchGAN discriminator `content_codec.loss.discriminator`; the paper's lambda_d = 0.8).
- `transformer.transformer`: the discrete diffusion network (token + height/width embeddings, blocks of
  self-attention, cross-attention to the text and an MLP, the time step through AdaLN) predicting
  p(x0 | x_t, text); the mask-and-uniform transition and its posterior live in
  generators.diffsound_diffusion. Loss = L_vlb + aux_weight * L_x0 (eq. 23).
- `transformer.condition_emb`: the text encoder (registry generators.text_encoders; the paper config uses
  `clip-text`, CLIP's text tower; tiny uses `hashed-words`).
- `vocoder`: a small trainable mel vocoder, or Griffin-Lim (config "vocoder": "griffin-lim"), which the
  output metadata names as a phase-reconstruction fallback. The authors' MelGAN is not part of this model.
The tiny config trains all parts jointly (the diffusion loss sees detached tokens) so `bench train
diffsound` gives a working system in minutes; the paper trains them in stages on AudioSet/AudioCaps.
`load_official` reads the authors' published checkpoints into the paper config.

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
from generators.diffsound_modules import (DiffusionNet, DiffusionTransformer, SpecVQGAN, grid_sequence,
                                          sequence_grid)
from generators.mel_audio import MelSpec, MelVocoder, check_vocoder, mel_to_wave, pad_frames, stft_loss
from generators.text_encoders import build_text_encoder
from generators.trainable import TrainingBatch, checkpoint_metadata, model_for_generator, register_trainable

NAME = "diffsound"


def downsample(config: dict) -> int:
    return 2 ** (len(config["vq_ch_mult"]) - 1)


def token_grid(config: dict) -> tuple[int, int]:
    """(mel rows, frame columns) of the token grid of a `duration_s` clip: the paper's 80 x 848 -> 5 x 53."""
    d = downsample(config)
    return config["n_mels"] // d, config["vq_resolution"] // d


class DiffsoundModel(nn.Module):
    def __init__(self, config: dict):
        super().__init__()
        c = config
        self.config = dict(config)
        self.mel = MelSpec(c["sample_rate"], c["n_fft"], c["hop"], c["n_mels"])
        self.grid = token_grid(c)
        self.content_codec = SpecVQGAN(c)
        self.transformer = DiffusionTransformer(build_text_encoder(c), DiffusionNet(c, self.grid))
        if c.get("freeze_text_encoder"):  # the paper's frozen CLIP: no gradient, so the optimizer leaves it
            self.transformer.condition_emb.requires_grad_(False)
        self.vocoder = MelVocoder(c["n_mels"], c["hop"], c["vocoder_width"]) if c["vocoder"] == "learned" else None
        self.schedule = MaskUniformSchedule(c["codebook_size"], c["timesteps"], c["final_mask_rate"])

    def frames(self, n_samples: int) -> int:
        """Mel frames for n samples, rounded down to a multiple of the VQ downsampling (the authors crop
        their 860-frame mels to 848) and at most the trained `vq_resolution`."""
        d = downsample(self.config)
        return max(d, min(self.config["vq_resolution"], (n_samples // self.config["hop"] + 1) // d * d))

    def logmel(self, wave: torch.Tensor) -> torch.Tensor:
        return pad_frames(self.mel(wave), self.frames(wave.shape[-1]))

    def encode_text(self, captions: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        return self.transformer.condition_emb(captions)

    def p_x0(self, x_t, t, text, pad) -> torch.Tensor:
        """log p(x0 | x_t) [B, N, K]; t in 1..T (the network's step embedding is 0-based, as the authors')."""
        return self.transformer.transformer(x_t, t - 1, text, pad).float().log_softmax(-1)


# The paper's VQ-VAE and transformer (section V-B) with the authors' checkpoint layout (Diffsound/configs/
# caps.yaml in yangdongchao/Text-to-sound-Synthesis): 22.05 kHz, 1024-point window, hop 256, 80 mels; 860
# frames cropped to 848 -> 5 x 53 = 265 tokens, K = 256 codes of dim 256; 19 layers, 16 heads, 1024-d; T = 100.
PAPER = {"sample_rate": 22050, "duration_s": 10.0, "n_fft": 1024, "hop": 256, "n_mels": 80,
         "vq_ch": 128, "vq_ch_mult": [1, 1, 2, 2, 4], "vq_res_blocks": 2, "vq_attn_resolutions": [53],
         "vq_resolution": 848, "z_channels": 256, "codebook_size": 256, "code_dim": 256,
         "adversarial_weight": 0.8, "disc_channels": 64, "disc_layers": 3,
         "dim": 1024, "layers": 19, "heads": 16, "mlp_ratio": 4, "timesteps": 100, "final_mask_rate": 0.9,
         "aux_weight": 1e-4, "text_encoder": "clip-text", "text_dim": 512, "text_vocab": 49408,
         "text_max_words": 77, "text_layers": 12, "text_heads": 8, "freeze_text_encoder": True,
         "vocoder": "griffin-lim", "vocoder_width": 512,
         # section V-B: AdamW (0.9, 0.94), base learning rate 3e-6; the authors' weight decay 4.5e-2 and
         # learning-rate schedule (Diffsound/configs/caps.yaml): warm up to 4.5e-4 in 1000 steps, then halve
         # after 25000 steps without a 10% better loss, down to 1e-6
         "lr": 3e-6, "optimizer": {"name": "adamw", "betas": [0.9, 0.94], "weight_decay": 4.5e-2},
         "lr_schedule": {"name": "warmup-plateau", "warmup_steps": 1000, "warmup_lr": 4.5e-4, "factor": 0.5,
                         "patience": 25000, "min_lr": 1e-6, "threshold": 0.1},
         "max_duration_s": 10.0}
TINY = {"sample_rate": 16000, "duration_s": 1.0, "n_fft": 512, "hop": 256, "n_mels": 32,
        "vq_ch": 32, "vq_ch_mult": [1, 1, 2], "vq_res_blocks": 1, "vq_attn_resolutions": [15],
        "vq_resolution": 60, "z_channels": 32, "codebook_size": 64, "code_dim": 32,
        "adversarial_weight": 0.0, "disc_channels": 16, "disc_layers": 2,
        "dim": 64, "layers": 2, "heads": 2, "mlp_ratio": 4, "timesteps": 20, "final_mask_rate": 0.9,
        "aux_weight": 1.0, "text_encoder": "hashed-words", "text_dim": 64, "text_vocab": 1024,
        "text_max_words": 16, "freeze_text_encoder": False, "vocoder": "learned", "vocoder_width": 32,
        "max_duration_s": 1.0,
        # the paper's optimizer and the authors' schedule, shortened for minutes of CPU training
        "lr": 2e-4, "optimizer": {"name": "adamw", "betas": [0.9, 0.94], "weight_decay": 4.5e-2},
        "lr_schedule": {"name": "warmup-plateau", "warmup_steps": 5, "warmup_lr": 2e-3, "factor": 0.5,
                        "patience": 50, "min_lr": 1e-5, "threshold": 0.1}}


@register_trainable(NAME)
class DiffsoundTrainable:
    def default_config(self, size: str = "tiny") -> dict:
        if size == "tiny":  # trains on the built-in synthetic set in minutes on 2 CPU cores
            return dict(TINY)
        if size == "paper":
            return {k: (dict(v) if isinstance(v, dict) else v) for k, v in PAPER.items()}
        raise ConfigError(f"diffsound: unknown size {size!r}; known: tiny, paper")

    def build(self, config: dict, seed: int) -> nn.Module:
        check_config(config)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return DiffsoundModel(config)

    def training_loss(self, model: DiffsoundModel, batch: TrainingBatch, rng: torch.Generator) -> torch.Tensor:
        wave = batch.audio.mean(1)  # mono [B, N]
        mel = model.logmel(wave)
        vq_loss, tokens = model.content_codec.loss_terms(mel, model.config["adversarial_weight"])
        x0 = grid_sequence(tokens.detach())
        sched = model.schedule
        t = torch.randint(1, sched.T + 1, (x0.shape[0],), generator=rng)
        x_t = sched.q_sample(x0, t, rng)
        text, pad = model.encode_text(batch.captions)
        log_p0 = model.p_x0(x_t, t, text, pad)  # [B, N, K]
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
    d = downsample(config)
    if config["n_mels"] % d or config["vq_resolution"] % d:
        raise ConfigError(f"diffsound config: n_mels={config['n_mels']} and vq_resolution={config['vq_resolution']} "
                          f"must be multiples of the VQ downsampling {d} (2^(len(vq_ch_mult) - 1))")
    if config["vq_ch"] % 32:
        raise ConfigError(f"diffsound config vq_ch={config['vq_ch']} must be a multiple of 32 (GroupNorm(32))")
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
        grid = (self.model.grid[0], self.model.frames(n) // downsample(self.config))
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
                    probs = self.model.p_x0(x, torch.tensor([t]), text, pad).exp().double()
                    post = self.model.schedule.posterior(probs, x, s, t)
                    x = torch.multinomial(post[0], 1, generator=rng)[:, 0][None]
                x = x.clamp_max(self.model.schedule.K - 1)  # x_0 holds no mask (posterior at s=0 excludes it)
                mel = self.model.content_codec.decode(sequence_grid(x, grid))
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
    from generators import diffsound_official

    if checkpoint is not None and diffsound_official.is_official(checkpoint):
        trainable = DiffsoundTrainable()
        config = trainable.default_config("paper")
        model = trainable.build(config, 0)
        loaded = diffsound_official.load_official(model, checkpoint)
        info = {"untrained": False, "label": f"official-{loaded['sha256'][:12]}", "checkpoint": str(checkpoint),
                "sha256": loaded["sha256"], "step": None, "official": loaded}
        return DiffsoundGenerator(model.eval(), config, info, context)
    model, config, info = model_for_generator(NAME, checkpoint)
    return DiffsoundGenerator(model, config, info, context)
