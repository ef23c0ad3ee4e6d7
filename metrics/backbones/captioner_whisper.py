"""Published audio captioners: Whisper fine-tuned on AudioSet, AudioCaps and Clotho (MU-NLPC).

Checkpoints: `MU-NLPC/whisper-small-audio-captioning` and `MU-NLPC/whisper-tiny-audio-captioning` on the
Hugging Face hub (Kadlčík et al., DCASE 2023 technical report, arXiv:2305.09690; code github.com/prompteus/audio-captioning; license CC BY-NC 4.0). Their
model class `WhisperForAudioCaptioning` subclasses `WhisperForConditionalGeneration` without adding
weights: it only changes `generate` so that the decoder starts from Whisper's task tokens followed by a
"style" prefix. So the plain transformers class loads the weights unchanged, and we build that decoder
prompt ourselves:
    <|startoftranscript|> <|en|> <|transcribe|> <|notimestamps|> + tokens of "audiocaps > caption: "
(the model knows "audiocaps > caption: ", "clotho > caption: " and "audioset > keywords: "; the
AudioCaps style matches the prompts text-to-audio models are evaluated on), then run transformers'
generic GenerationMixin.generate with the checkpoint's generation config (its token suppression lists
included, as their `generate` does) and our decoding settings. The caption is the decoded text after
the prompt.

Weights come from the Hugging Face cache (HF_HOME), downloaded on first use unless offline; the
resolved commit and the sha256 of the weight files are recorded.
"""
from __future__ import annotations

import copy
import hashlib
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from bench.core import weights as weights_registry
from bench.core.errors import CheckpointError
from metrics.backbones import captioner
from metrics.backbones.base import Backbone, Needs, WeightsChoice, declare_needs, pick_device, register_backbone
from metrics import coco_caption_scores  # noqa: F401 (registers the SPICE CoreNLP jars' weights cards)

SAMPLE_RATE = 16000
MAX_SECONDS = 30  # Whisper's encoder sees 30 s: longer clips are cut by the feature extractor
N_MELS = 80
N_FRAMES = 3000
TASK_TOKENS = ("<|en|>", "<|transcribe|>", "<|notimestamps|>")
CITATION = ("Kadlčík, Hájek, Kieslich, Winiarski: A Whisper transformer for audio captioning trained with "
            "synthetic captions and transfer learning, DCASE 2023 technical report, arXiv:2305.09690")


@dataclass(frozen=True)
class Decoding:
    style: str = "audiocaps > caption: "
    num_beams: int = 4  # 1 = greedy
    max_length: int = 100  # total decoder length, prompt included (the model card's max_length)

    def to_dict(self) -> dict:
        return {**asdict(self), "do_sample": False, "length_penalty": 1.0,
                "mode": "greedy" if self.num_beams == 1 else f"beam search ({self.num_beams} beams)"}


@dataclass(frozen=True)
class WhisperCaptionerSpec:
    backbone: str
    repo: str
    decoding: Decoding = Decoding()


SPECS = (WhisperCaptionerSpec("whisper-captioner-small", "MU-NLPC/whisper-small-audio-captioning"),
         WhisperCaptionerSpec("whisper-captioner-tiny", "MU-NLPC/whisper-tiny-audio-captioning"))
_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")


def log_mel(samples: np.ndarray) -> np.ndarray:
    """Whisper's log-mel input [1, 80, 3000] of a 16 kHz mono signal (first 30 s, zero-padded)."""
    fe = _feature_extractor()
    x = np.asarray(samples, np.float32)[:MAX_SECONDS * SAMPLE_RATE]
    return fe(x, sampling_rate=SAMPLE_RATE, return_tensors="np").input_features.astype(np.float32)


def _feature_extractor():
    # WhisperFeatureExtractor's defaults are the small/tiny checkpoints' preprocessor_config (80 mels,
    # n_fft 400, hop 160, 30 s): the protocol must not depend on which checkpoint is cached.
    global _FE
    if _FE is None:
        tf = _transformers()
        _FE = tf.WhisperFeatureExtractor(feature_size=N_MELS, sampling_rate=SAMPLE_RATE)
    return _FE


_FE = None


def _transformers():
    from metrics.backbones.clap import import_transformers_clap  # transformers behind the torchvision shim

    return import_transformers_clap()


def _missing(repo: str, reason: str) -> str:
    from huggingface_hub import constants

    return (f"audio captioner {repo} could not be loaded from the Hugging Face cache ({constants.HF_HUB_CACHE}): "
            f"{reason}. Fetch it once with network access: `hf download {repo}` (or python -c \"import "
            f"transformers as t; t.WhisperForConditionalGeneration.from_pretrained('{repo}'); "
            f"t.WhisperTokenizer.from_pretrained('{repo}')\"), or point HF_HOME at a cache that has it.")


def _snapshot_files(repo: str) -> tuple[str | None, dict[str, str]]:
    """(commit of the cached snapshot, {weight file: sha256})."""
    from huggingface_hub import try_to_load_from_cache

    commit, hashes = None, {}
    config = try_to_load_from_cache(repo, "config.json")
    if isinstance(config, str):
        commit = Path(config).parent.name
    for name in _WEIGHT_FILES:
        path = try_to_load_from_cache(repo, name)
        if isinstance(path, str) and Path(path).is_file():
            h = hashlib.sha256()
            with open(path, "rb") as f:
                for block in iter(lambda: f.read(1 << 20), b""):
                    h.update(block)
            hashes[name] = h.hexdigest()
    return commit, hashes


class WhisperCaptioner:
    """A loaded checkpoint: batched caption generation from log-mel inputs."""

    def __init__(self, spec: WhisperCaptionerSpec, allow_download: bool, device: str = "cpu"):
        import torch

        tf = _transformers()
        try:
            self.model = tf.WhisperForConditionalGeneration.from_pretrained(
                spec.repo, local_files_only=not allow_download).to(device).eval()
            self.tokenizer = tf.WhisperTokenizer.from_pretrained(spec.repo, local_files_only=not allow_download)
        except (OSError, ValueError) as exc:
            raise CheckpointError(_missing(spec.repo, f"{type(exc).__name__}: {str(exc)[:300]}")) from exc
        if self.model.config.num_mel_bins != N_MELS:
            raise CheckpointError(f"{spec.repo}: the checkpoint takes {self.model.config.num_mel_bins} mel bins; "
                                  f"this captioner's protocol feeds {N_MELS}")
        self.spec, self.device, self.torch = spec, device, torch
        task = self.tokenizer.convert_tokens_to_ids(list(TASK_TOKENS))
        unknown = [t for t, i in zip(TASK_TOKENS, task) if i is None or i == self.tokenizer.unk_token_id]
        if unknown:
            raise CheckpointError(f"{spec.repo}: the tokenizer lacks Whisper's task tokens {unknown}")
        style = self.tokenizer(spec.decoding.style, add_special_tokens=False).input_ids
        self.prompt = [self.model.config.decoder_start_token_id, *task, *style]

    def generation_config(self, decoding: Decoding):
        gc = copy.deepcopy(self.model.generation_config)
        gc.forced_decoder_ids = None  # the prompt is given as decoder_input_ids instead
        gc.num_beams, gc.max_length, gc.do_sample = decoding.num_beams, decoding.max_length, False
        gc.max_new_tokens = None
        gc.length_penalty, gc.num_return_sequences = 1.0, 1
        gc.eos_token_id = self.model.config.eos_token_id
        gc.pad_token_id = self.model.config.pad_token_id
        return gc

    def generate(self, features: np.ndarray, decoding: Decoding | None = None) -> list[list[int]]:
        """Generated token ids (after the prompt, without the end token) for a batch [B, 80, 3000]."""
        tf, torch = _transformers(), self.torch
        decoding = decoding or self.spec.decoding
        x = torch.from_numpy(np.ascontiguousarray(features, np.float32)).to(self.device)
        prompt = torch.tensor([self.prompt] * len(x), device=self.device)
        with torch.inference_mode():
            out = tf.GenerationMixin.generate(self.model, input_features=x, decoder_input_ids=prompt,
                                              decoder_attention_mask=torch.ones_like(prompt),
                                              generation_config=self.generation_config(decoding))
        special = set(self.tokenizer.all_special_ids)
        seqs = []
        for row in out[:, len(self.prompt):].tolist():
            ids = []
            for t in row:
                if t == self.model.config.eos_token_id:
                    break
                if t not in special:
                    ids.append(t)
            seqs.append(ids)
        return seqs

    def decode(self, rows: np.ndarray) -> list[str]:
        return [self.tokenizer.decode(ids, skip_special_tokens=True).strip() for ids in captioner.unpack(rows)]


def build(spec: WhisperCaptionerSpec, choice: WeightsChoice) -> Backbone:
    if choice.mode == "untrained":
        raise captioner.no_untrained(spec.backbone, f"fetch {spec.repo} into the Hugging Face cache "
                                     "(`hf download ...`) and use --weights pretrained")
    allow = choice.allow_download if choice.allow_download is not None else not weights_registry.offline()
    model = WhisperCaptioner(spec, allow, pick_device())
    commit, hashes = _snapshot_files(spec.repo)
    if not hashes:
        raise CheckpointError(_missing(spec.repo, f"no weight file ({', '.join(_WEIGHT_FILES)}) in the cached snapshot"))
    file = next(iter(hashes))
    provenance = {"weights": "pretrained", "backbone": spec.backbone, "name": spec.repo, "file": file,
                  "sha256": hashes[file], "source": "huggingface cache", "revision": commit,
                  "url": f"https://huggingface.co/{spec.repo}", "hash_published": False,
                  "citation": CITATION, "license": "CC BY-NC 4.0",
                  "runtime": "transformers.WhisperForConditionalGeneration + GenerationMixin.generate",
                  "decoding": spec.decoding.to_dict(), "prompt_token_ids": model.prompt}

    def embed(batch: np.ndarray) -> dict[str, np.ndarray]:
        return {captioner.OUTPUT: captioner.pack(model.generate(batch))}

    return Backbone(spec.backbone, {captioner.OUTPUT: captioner.TOKEN_SLOTS}, provenance, embed,
                    device=model.device, decode=model.decode)


for _spec in SPECS:
    register_backbone(_spec.backbone)(lambda choice, spec=_spec: build(spec, choice))
    declare_needs(_spec.backbone, lambda choice, spec=_spec: Needs(hf_files=((spec.repo, "config.json"),)))
