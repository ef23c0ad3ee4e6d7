"""Caption-based relevance (Diffsound section V-B): caption every generated clip, score the caption against
the clip's prompt and its manifest `references` with the COCO caption metrics (docs/protocols.md#caption-metrics).

Metrics: caption-{cider-d, spice, spider, bleu4, meteor, rouge-l}@CAPTIONER, where CAPTIONER is a
published Whisper captioner (`whisper-small`, `whisper-tiny`, metrics.backbones.captioner_whisper) or the
small captioner trained here (`trained`, metrics.backbones.captioner_small). Captions are cached per clip
like embeddings; scoring runs pycocoevalcap (metrics.coco_caption_scores). The value is the corpus score; each
clip's score and caption are in `per_clip`. SPIDEr = (CIDEr-D + SPICE) / 2 and is unavailable, never
CIDEr-D alone, when SPICE cannot run.
"""
from __future__ import annotations

import hashlib
import json

import numpy as np

from bench.core.audio import to_mono
from bench.core.errors import BenchError, ConfigError
from bench.core.resample import resample
from metrics import coco_caption_scores
from metrics.backbones import captioner
from metrics.backbones import captioner_small as small
from metrics.backbones import captioner_whisper as whisper
from metrics.backbones.base import load_backbone
from metrics.bootstrap import mean_interval
from metrics.protocols import EmbeddingProtocol
from metrics.registry import MetricDef, register_metric

LINEAGE = "Diffsound (Yang et al., 2023) section V-B 'audio caption loss'; COCO caption metrics via pycocoevalcap 1.2"
_SCORE_STEPS = ("references of each clip: its prompt (manifest 'caption') plus its manifest 'references'",
                "captions and references PTB-tokenized (Stanford CoreNLP 3.4.1 PTBTokenizer -preserveLines "
                "-lowerCase, COCO punctuation dropped), then pycocoevalcap 1.2's scorer")


def _whisper_prepare(waveform: np.ndarray, rate: int) -> np.ndarray:
    x = resample(to_mono(waveform, "mean"), rate, whisper.SAMPLE_RATE, "soxr-hq")[0]
    return whisper.log_mel(x)


def _small_prepare(waveform: np.ndarray, rate: int) -> np.ndarray:
    x = resample(to_mono(waveform, "mean"), rate, small.SAMPLE_RATE, "soxr-hq")[0]
    return small.log_mel(x)


def _whisper_protocol(spec: whisper.WhisperCaptionerSpec, size: str) -> EmbeddingProtocol:
    d = spec.decoding
    return EmbeddingProtocol(
        id=f"whisper-caption@{size}", version=1, backbone=spec.backbone, sample_rate=whisper.SAMPLE_RATE,
        resampler="soxr-hq", channels="mean of channels",
        steps=("mono (mean of channels), resample to 16 kHz with soxr HQ (librosa.load(sr=16000), as the model card)",
               "first 30 s, zero-padded to 30 s; Whisper log-mel (80 bands, n_fft 400, hop 160) by "
               "transformers.WhisperFeatureExtractor",
               f"{spec.repo}: decoder prompt <|startoftranscript|><|en|><|transcribe|><|notimestamps|> + "
               f"{d.style!r} (the authors' WhisperForAudioCaptioning.generate)",
               f"{d.to_dict()['mode']}, max_length {d.max_length} tokens with the prompt, checkpoint's token "
               "suppression lists; caption = decoded text after the prompt",
               *_SCORE_STEPS),
        prepare=_whisper_prepare)


PROTOCOLS = {
    "whisper-small": _whisper_protocol(whisper.SPECS[0], "small"),
    "whisper-tiny": _whisper_protocol(whisper.SPECS[1], "tiny"),
    "trained": EmbeddingProtocol(
        id="small-captioner@trained", version=1, backbone=small.BACKBONE, sample_rate=small.SAMPLE_RATE,
        resampler="soxr-hq", channels="mean of channels",
        steps=("mono (mean of channels), resample to 16 kHz with soxr HQ",
               "zero-pad or cut to 10 s; log-mel 64 bands 50-8000 Hz, n_fft 1024, hop 320, log(mel + 1e-6); "
               "standardised per band with the training set's statistics",
               "small captioner trained by `bench train-evaluator --task captioning`, greedy decoding, <= 40 words",
               *_SCORE_STEPS),
        prepare=_small_prepare),
}


def reference_lists(generated) -> list[list[str]]:
    """Per clip: its prompt followed by its extra reference captions."""
    missing = [cid for cid, c in zip(generated.clip_ids, generated.captions) if not c]
    if missing:
        raise ConfigError(f"{generated.set_info.get('source')}: {len(missing)} clip(s) have no caption (first: "
                          f"{missing[0]!r}); caption metrics score each clip's generated caption against its prompt: "
                          "give a manifest with a 'caption' (and optionally 'references') per clip")
    extra = generated.references or [()] * len(generated.clip_ids)
    return [[prompt, *refs] for prompt, refs in zip(generated.captions, extra)]


def _mean_ci(values: np.ndarray, options) -> dict | None:
    if options.bootstrap <= 0 or not np.isfinite(values).all():
        return None
    return mean_interval(values, options.bootstrap, options.bootstrap_seed,
                         "the population mean of the per-clip scores (clips resampled; CIDEr-D's IDF held fixed)",
                         options.ci_level).to_dict()


def caption_texts(generated, backbone_name: str, options) -> tuple[list[str], dict]:
    backbone = load_backbone(backbone_name, options.weights)
    return captioner.captions(backbone, generated.per_clip(captioner.OUTPUT)), backbone.provenance


def _scorer(name: str, backbone_name: str):
    parts = ("cider-d", "spice") if name == "spider" else (name,)

    def compute(generated, reference, options) -> dict:
        refs = reference_lists(generated)
        caps, _ = caption_texts(generated, backbone_name, options)
        try:
            scores = coco_caption_scores.coco_scores(caps, refs, parts, cache_root=options.root,
                                                allow_download=options.weights.allow_download)
        except coco_caption_scores.SpiceUnavailable as exc:
            if name == "spider":
                raise BenchError(f"SPIDEr is unavailable: it is the mean of CIDEr-D and SPICE, and SPICE cannot run. "
                                 f"{exc}") from exc
            raise
        if name == "spider":
            c, s = scores["cider-d"], scores["spice"]
            per = (np.array(c.per_clip) + np.array(s.per_clip)) / 2
            value = (c.corpus + s.corpus) / 2
            details = {"cider-d": c.corpus, "spice": s.corpus, "corpus": "(CIDEr-D + SPICE) / 2",
                       "spice_details": s.details}
        else:
            sc = scores[name]
            per, value, details = np.array(sc.per_clip, np.float64), sc.corpus, dict(sc.details)
        mean_based = name not in ("bleu4", "meteor")
        details["references"] = {"per_clip": float(np.mean([len(r) for r in refs])),
                                 "sha256": hashlib.sha256(json.dumps(refs).encode()).hexdigest()}
        details["ci"] = ("bootstrap over clips of the mean per-clip score (CIDEr-D's IDF held fixed)"
                         if mean_based else "none: the corpus score is not a mean of per-clip scores")
        return {"value": float(value), "ci": _mean_ci(per, options) if mean_based else None,
                "details": details,
                "per_clip": [{"id": cid, "value": float(v), "caption": cap}
                             for cid, v, cap in zip(generated.clip_ids, per, caps)]}

    return compute


_SUMMARIES = {
    "cider-d": "CIDEr-D (n=4, sigma 6, x10) of each clip's caption vs its prompt + references",
    "spice": "SPICE F-score (scene graphs; needs the Stanford CoreNLP 3.6.0 jars) of caption vs references",
    "spider": "SPIDEr = (CIDEr-D + SPICE) / 2 of caption vs references",
    "bleu4": "corpus BLEU-4 of the captions vs prompt + references",
    "meteor": "METEOR 1.5 of the captions vs prompt + references",
    "rouge-l": "ROUGE-L of each clip's caption vs its prompt + references",
}

for _preset, _protocol in PROTOCOLS.items():
    for _name in ("cider-d", "spice", "spider", "bleu4", "meteor", "rouge-l"):
        register_metric(MetricDef(
            name=f"caption-{_name}", preset=_preset, version=1, direction="higher", protocol=_protocol,
            summary=f"{_SUMMARIES[_name]} ({_protocol.backbone} captions)", lineage=LINEAGE,
            compute=_scorer(_name, _protocol.backbone), kind="caption", output=captioner.OUTPUT, min_items=1,
            precision=4))
