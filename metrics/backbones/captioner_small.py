"""A small audio captioner trained here (`bench train-evaluator --task captioning`), as a backbone.

For suites with no network: it learns the captions of whatever captioned set it is trained on (the
built-in synthetic set in the quickstart) in minutes on a CPU, so caption metrics have a captioner that
has seen its data. It is not a substitute for a published captioner on real audio.

- frontend: mono (mean), 16 kHz (soxr HQ), zero-padded or cut to 10 s, log-mel: 1024-point periodic Hann
  STFT, hop 320 (20 ms), 64 Slaney mel bands 50-8000 Hz, log(mel + 1e-6), centred, 501 frames;
- encoder: two strided 1-D convolutions over time (x4 fewer frames), GELU;
- decoder: word embeddings -> GRU (initial state from the mean-pooled encoder) -> dot-product attention
  over encoder frames -> vocabulary logits (Luong-style attention);
- vocabulary: lower-cased words ([a-z0-9]+) of the training captions, plus <pad> <bos> <eos> <unk>;
- decoding: greedy, at most 40 words (recorded in the provenance).
Checkpoints hold tensors only (config, vocabulary and training card as JSON bytes), loaded with
torch.load(weights_only=True).
"""
from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from bench.core.checkpoints import load_checkpoint
from bench.core.errors import CheckpointError
from metrics.backbones import captioner
from metrics.backbones.base import Backbone, WeightsChoice, register_backbone
from metrics.backbones.mel_inception import mel_filterbank

BACKBONE = "small-captioner"
SAMPLE_RATE = 16000
CLIP_SAMPLES = 10 * SAMPLE_RATE
N_FFT, HOP, N_MELS = 1024, 320, 64
N_FRAMES = CLIP_SAMPLES // HOP + 1
SPECIALS = ("<pad>", "<bos>", "<eos>", "<unk>")
PAD, BOS, EOS, UNK = range(4)
MAX_WORDS = 40
_MEL = mel_filterbank(SAMPLE_RATE, N_FFT, N_MELS, 50.0, 8000.0)
_WINDOW = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(N_FFT) / N_FFT)


def log_mel(samples: np.ndarray) -> np.ndarray:
    """float32 [1, 64, 501] from a 16 kHz mono signal (padded or cut to 10 s here)."""
    x = np.zeros(CLIP_SAMPLES, np.float64)
    s = np.asarray(samples, np.float64)[:CLIP_SAMPLES]
    x[:len(s)] = s
    x = np.pad(x, N_FFT // 2, mode="reflect")
    frames = np.lib.stride_tricks.sliding_window_view(x, N_FFT)[::HOP]
    power = np.abs(np.fft.rfft(frames * _WINDOW, axis=-1)) ** 2
    return np.log(power @ _MEL.T + 1e-6).T[None].astype(np.float32)


def words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9]+", text.lower())


@dataclass(frozen=True)
class CaptionerConfig:
    name: str = "tiny"
    width: int = 96
    max_words: int = MAX_WORDS

    def to_dict(self) -> dict:
        return asdict(self)


CONFIGS = {"tiny": CaptionerConfig("tiny", 96), "small": CaptionerConfig("small", 256)}


class SmallCaptioner(nn.Module):
    def __init__(self, config: CaptionerConfig, vocab_size: int):
        super().__init__()
        w = config.width
        self.config = config
        self.conv1 = nn.Conv1d(N_MELS, w, 5, stride=2, padding=2)
        self.conv2 = nn.Conv1d(w, w, 5, stride=2, padding=2)
        self.init_h = nn.Linear(w, w)
        self.embed = nn.Embedding(vocab_size, w, padding_idx=PAD)
        self.gru = nn.GRU(w, w, batch_first=True)
        self.combine = nn.Linear(2 * w, w)
        self.out = nn.Linear(w, vocab_size)

    def encode(self, mel: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """[B, 64, T] (already standardised) -> (frames [B, T', w], initial state [1, B, w])."""
        h = F.gelu(self.conv2(F.gelu(self.conv1(mel))))
        frames = h.transpose(1, 2)
        return frames, torch.tanh(self.init_h(frames.mean(1)))[None]

    def step_logits(self, outputs: torch.Tensor, frames: torch.Tensor) -> torch.Tensor:
        attn = torch.softmax(outputs @ frames.transpose(1, 2) / frames.shape[-1] ** 0.5, dim=-1)
        return self.out(torch.tanh(self.combine(torch.cat([outputs, attn @ frames], -1))))

    def forward(self, mel: torch.Tensor, inputs: torch.Tensor) -> torch.Tensor:
        """Teacher-forced logits [B, L, V] for input tokens [B, L] (starting with <bos>)."""
        frames, h0 = self.encode(mel)
        outputs, _ = self.gru(self.embed(inputs), h0)
        return self.step_logits(outputs, frames)

    @torch.inference_mode()
    def greedy(self, mel: torch.Tensor) -> list[list[int]]:
        frames, h = self.encode(mel)
        token = torch.full((len(mel), 1), BOS, dtype=torch.long)
        done = torch.zeros(len(mel), dtype=torch.bool)
        seqs = [[] for _ in range(len(mel))]
        for _ in range(self.config.max_words):
            out, h = self.gru(self.embed(token), h)
            token = self.step_logits(out, frames).argmax(-1)
            for i, t in enumerate(token[:, 0].tolist()):
                if not done[i]:
                    if t == EOS:
                        done[i] = True
                    else:
                        seqs[i].append(t)
            if bool(done.all()):
                break
        return seqs


# ----------------------------------------------------------------------------------------- checkpoint

def checkpoint_tensors(model: SmallCaptioner, vocab: list[str], mean: np.ndarray, std: np.ndarray,
                       card: dict) -> dict:
    meta = {"config": model.config.to_dict(), "vocab": vocab, "card": card}
    return {**{f"model.{k}": v.detach().clone() for k, v in model.state_dict().items()},
            "norm.mean": torch.as_tensor(mean, dtype=torch.float32), "norm.std": torch.as_tensor(std, dtype=torch.float32),
            "meta": torch.frombuffer(bytearray(json.dumps(meta, sort_keys=True).encode()), dtype=torch.uint8)}


@dataclass
class LoadedCaptioner:
    model: SmallCaptioner
    vocab: list[str]
    mean: torch.Tensor
    std: torch.Tensor
    card: dict

    def normalise(self, mel: np.ndarray) -> torch.Tensor:
        return (torch.from_numpy(np.ascontiguousarray(mel, np.float32)) - self.mean[:, None]) / self.std[:, None]

    def decode(self, rows: np.ndarray) -> list[str]:
        return [" ".join(self.vocab[t] for t in ids if 0 <= t < len(self.vocab) and t >= len(SPECIALS))
                for ids in captioner.unpack(rows)]


def load(path: Path) -> LoadedCaptioner:
    fix = "retrain it with `bench train-evaluator --task captioning`"
    state = load_checkpoint(path, "small-captioner checkpoint", fix)
    try:
        meta = json.loads(bytes(state["meta"].tolist()).decode())
        config = CaptionerConfig(**meta["config"])
        model = SmallCaptioner(config, len(meta["vocab"]))
        model.load_state_dict({k[len("model."):]: v for k, v in state.items() if k.startswith("model.")})
    except (OSError, RuntimeError, KeyError, ValueError, TypeError, AttributeError, IndexError) as exc:
        raise CheckpointError(f"{path}: not a small-captioner checkpoint written by `bench train-evaluator "
                              f"--task captioning` ({type(exc).__name__}: {str(exc)[:200]})") from exc
    return LoadedCaptioner(model.eval(), list(meta["vocab"]), state["norm.mean"], state["norm.std"], meta["card"])


def build(choice: WeightsChoice) -> Backbone:
    from bench.core.weights import sha256_file

    path = choice.trained_file(BACKBONE) or choice.local_file(BACKBONE)
    if path is None:
        raise captioner.no_untrained(BACKBONE, "train one with `bench train-evaluator --task captioning --data "
                                     "CAPTIONED_SET --out DIR` and pass --checkpoint small-captioner=DIR/"
                                     "small-captioner.pt")
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"--checkpoint {BACKBONE}={path}: no such file")
    loaded = load(path)
    provenance = {"weights": "trained", "backbone": BACKBONE, "file": path.name, "sha256": sha256_file(path),
                  "source": "trained here", "training": loaded.card.get("training", {}),
                  "decoding": {"mode": "greedy", "max_words": loaded.model.config.max_words}}

    def embed(batch: np.ndarray) -> dict[str, np.ndarray]:
        return {captioner.OUTPUT: captioner.pack(loaded.model.greedy(loaded.normalise(batch)))}

    return Backbone(BACKBONE, {captioner.OUTPUT: captioner.TOKEN_SLOTS}, provenance, embed, decode=loaded.decode)


register_backbone(BACKBONE)(build)
