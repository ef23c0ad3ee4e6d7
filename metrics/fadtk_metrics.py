"""FAD on fadtk's embedding models (docs/protocols.md#fadtk-fad), each as fadtk 1.1.0 feeds it.

fadtk (microsoft/fadtk, fadtk/fad.py `FrechetAudioDistance.load_audio`) reads every file the same way
before its model sees it: mean of the channels, resampled to the model's rate with torchaudio's Resample
(Kaiser-windowed sinc, "kaiser_best" settings: our "sinc-kaiser-best"), written as a 16-bit PCM WAV
(torchaudio.save, soundfile backend) and read back as int16 / 32768. `fadtk_audio` does exactly that,
with soundfile itself doing the int16 conversion in memory. Then each model's loader
(fadtk/model_loader.py) cuts and feeds the audio its own way: the `_<model>` functions below, one per
loader. Every embedding row (frame or window) of every clip goes into one Gaussian per set; the kernel is
metrics.frechet (the KAD and FAD-inf variants come from metrics.distance_variants).
"""
from __future__ import annotations

import io

import numpy as np
import soundfile as sf

from bench.core.audio import to_mono
from bench.core.resample import resample
from metrics.backbones import clap, dac_latents, encodec, mert
from metrics.frechet import frechet_metric
from metrics.loudness import integrated_loudness
from metrics.protocols import EmbeddingProtocol
from metrics.registry import MetricDef, register_metric

RESAMPLER = "sinc-kaiser-best"
LINEAGE = "fadtk 1.1.0 (Gui et al., ICASSP 2024: 'Adapting Frechet Audio Distance for generative music evaluation')"
_READ = ("mono: mean of the channels", "resample to {rate} Hz: Kaiser-windowed sinc, torchaudio's kaiser_best "
         "settings (width 64, rolloff 0.9476, beta 14.77), as fadtk's load_audio",
         "16-bit PCM WAV round trip as fadtk's converted file (soundfile's conversion, clipped), read as "
         "int16 / 32768")


def fadtk_audio(waveform: np.ndarray, rate: int, target_rate: int) -> np.ndarray:
    """[n] float32: what fadtk's models read of a clip (fadtk/fad.py load_audio + ModelLoader.load_wav)."""
    x = resample(to_mono(waveform, "mean"), rate, target_rate, RESAMPLER)[0]
    buffer = io.BytesIO()
    sf.write(buffer, x, target_rate, subtype="PCM_16", format="WAV")
    buffer.seek(0)
    ints, _ = sf.read(buffer, dtype="int16")
    return (ints / 32768.0).astype(np.float32)


def _read_steps(rate: int) -> tuple[str, ...]:
    return tuple(step.format(rate=rate) for step in _READ)


# ---- LAION-CLAP (model_loader.py CLAPLaionModel) ---------------------------------------------------
CLAP_CHUNK_S, CLAP_HOP_S = 10, 1


def _clap(waveform: np.ndarray, rate: int) -> np.ndarray:
    """10 s chunks starting every 1 s over the whole clip (the last ones mostly zero padding), after
    laion_clap's int16 quantisation (clip to [-1, 1], x * 32767 truncated, / 32767) in float64."""
    x = fadtk_audio(waveform, rate, clap.SAMPLE_RATE).astype(np.float64)
    x = (np.clip(x, -1.0, 1.0) * 32767.0).astype(np.int16) / 32767.0
    chunk, hop = CLAP_CHUNK_S * clap.SAMPLE_RATE, CLAP_HOP_S * clap.SAMPLE_RATE
    out = np.zeros((-(-len(x) // hop), chunk), np.float32)
    for i, start in enumerate(range(0, len(x), hop)):
        piece = x[start:start + chunk]
        out[i, :len(piece)] = piece
    return out


def _clap_protocol(backbone: str, checkpoint: str, model: str) -> EmbeddingProtocol:
    return EmbeddingProtocol(
        id=f"{backbone}@fadtk", version=1, backbone=backbone, sample_rate=clap.SAMPLE_RATE, resampler=RESAMPLER,
        channels="mean of channels",
        steps=(*_read_steps(clap.SAMPLE_RATE),
               "laion_clap's int16 quantisation: clip to [-1, 1], x * 32767 truncated to int16, / 32767",
               f"{CLAP_CHUNK_S} s chunks starting every {CLAP_HOP_S} s until the end of the clip, each zero-padded "
               f"to {CLAP_CHUNK_S} s (a 10 s clip gives 10 chunks)",
               "each chunk exactly 10 s: no crop or repeat-pad inside laion_clap; log-mel inside the model with the "
               "checkpoint's own constants (STFT 1024 / hop 480, 64 mel bands 50-14000 Hz)",
               f"{model}, no fusion ({checkpoint}): one L2-normalised 512-d embedding per chunk"),
        prepare=_clap)


CLAP_AUDIO = _clap_protocol("clap-630k-audioset", "630k-audioset-best.pt", "HTSAT-tiny")
CLAP_MUSIC = _clap_protocol("clap-music-audioset", "music_audioset_epoch_15_esc_90.14.pt", "HTSAT-base")


# ---- EnCodec (model_loader.py EncodecEmbModel) ------------------------------------------------------
ENCODEC_MAX_S = 180  # fadtk's load_wav cuts files longer than 3 minutes


def _encodec(waveform: np.ndarray, rate: int, spec: encodec.EncodecSpec) -> list[np.ndarray]:
    x = fadtk_audio(waveform, rate, spec.sample_rate)[:ENCODEC_MAX_S * spec.sample_rate]
    # encodec's convert_audio: a mono file becomes as many identical channels as the model takes
    x = np.repeat(x[None], spec.channels, axis=0)
    if spec.segment_s is None:  # 24 kHz: the whole clip in one pass
        return [x] if x.shape[1] else []
    step = int(spec.segment_s * spec.sample_rate)  # 48 kHz: 1 s segments, no overlap (fadtk's stride)
    return [x[:, start:start + step] for start in range(0, x.shape[1], step)]


def _encodec_protocol(spec: encodec.EncodecSpec) -> EmbeddingProtocol:
    whole = ("the whole clip in one encoder pass" if spec.segment_s is None else
             f"{spec.segment_s:g} s segments one after another (stride = segment length, not the model's 1% "
             "overlap), the last one shorter, each encoded on its own")
    channels = "mono" if spec.channels == 1 else "the mono signal copied to both channels (encodec's convert_audio)"
    return EmbeddingProtocol(
        id=f"{spec.backbone}@fadtk", version=1, backbone=spec.backbone, sample_rate=spec.sample_rate,
        resampler=RESAMPLER, channels=f"mean of channels, then {channels}",
        steps=(*_read_steps(spec.sample_rate), channels, f"cut to the first {ENCODEC_MAX_S} s", whole,
               "the encoder's output (before the quantizer and without the model's own normalisation, as "
               "fadtk calls model.encoder directly): one 128-d row per frame (75 frames per second at 24 kHz, "
               "150 at 48 kHz)"),
        prepare=lambda waveform, rate: _encodec(waveform, rate, spec))


ENCODEC_24K = _encodec_protocol(encodec.SPECS["encodec-24khz"])
ENCODEC_48K = _encodec_protocol(encodec.SPECS["encodec-48khz"])


# ---- DAC (model_loader.py DACModel) -------------------------------------------------------------------
DAC_LOUDNESS = -16.0  # LUFS, audio.normalize(-16)
DAC_WINDOW = (int(5.0 * dac_latents.SAMPLE_RATE) // 4) * 4  # 5 s, "divisible by 4 in # of samples": 220500
DAC_HOP = DAC_WINDOW // 2  # overlap_hop_ratio 0.5


def _dac(waveform: np.ndarray, rate: int) -> np.ndarray:
    """audiotools' normalize(-16) and ensure_max_of_audio(), zero-padded to whole 5 s windows, then
    collect_windows(5 s, 2.5 s): 2.5 s of zeros on each side, every full 5 s window at a 2.5 s hop."""
    x = fadtk_audio(waveform, rate, dac_latents.SAMPLE_RATE).astype(np.float64)
    if not len(x):
        return np.zeros((0, 1, DAC_WINDOW), np.float32)
    x = x * np.exp((DAC_LOUDNESS - integrated_loudness(x, dac_latents.SAMPLE_RATE)) * np.log(10) / 20)
    peak = np.abs(x).max()
    if peak > 1.0:
        x = x / peak
    padded = -(-len(x) // DAC_WINDOW) * DAC_WINDOW
    x = np.pad(x, (DAC_HOP, padded - len(x) + DAC_HOP))
    windows = np.lib.stride_tricks.sliding_window_view(x, DAC_WINDOW)[::DAC_HOP]
    return np.ascontiguousarray(windows[:, None], np.float32)


DAC_44K = EmbeddingProtocol(
    id=f"{dac_latents.BACKBONE}@fadtk", version=1, backbone=dac_latents.BACKBONE,
    sample_rate=dac_latents.SAMPLE_RATE, resampler=RESAMPLER, channels="mean of channels",
    steps=(*_read_steps(dac_latents.SAMPLE_RATE),
           f"loudness-normalise to {DAC_LOUDNESS:g} LUFS as descript-audiotools' normalize (BS.1770 K-weighting, "
           "0.4 s blocks every 0.1 s, -70 LUFS absolute and -10 LU relative gates; clips under 0.5 s measured "
           "zero-padded; loudness floored at -70)",
           "if the peak then exceeds 1, divide by the peak (ensure_max_of_audio)",
           "zero-pad at the end to a whole number of 5 s windows, then 2.5 s of zeros on each side",
           f"windows of {DAC_WINDOW} samples (5 s) every {DAC_HOP} (2.5 s), full windows only "
           "(audiotools' collect_windows): a 10 s clip gives 5",
           "DAC 44.1 kHz encoder (dac_weights_44khz_8kbps 0.0.1) on each window: its 1024-d frames before the "
           "quantizer (hop 512), all frames of all windows"),
    prepare=_dac)


# ---- MERT (model_loader.py MERTModel) ----------------------------------------------------------------
MERT_MAX_S = 6 * 60  # MERTModel(limit_minutes=6) truncates longer audio


def _mert(waveform: np.ndarray, rate: int) -> np.ndarray:
    x = fadtk_audio(waveform, rate, mert.SAMPLE_RATE)[:MERT_MAX_S * mert.SAMPLE_RATE]
    return x[None] if len(x) >= mert.MIN_SAMPLES else np.zeros((0, len(x)), np.float32)


MERT_95M = EmbeddingProtocol(
    id=f"{mert.BACKBONE}@fadtk", version=1, backbone=mert.BACKBONE, sample_rate=mert.SAMPLE_RATE,
    resampler=RESAMPLER, channels="mean of channels",
    steps=(*_read_steps(mert.SAMPLE_RATE), f"cut to the first {MERT_MAX_S // 60} minutes",
           "the whole clip in one pass through the repo's Wav2Vec2FeatureExtractor (zero mean, unit variance per "
           f"clip) and MERT-v1-95M; clips under {mert.MIN_SAMPLES} samples give no frame (fadtk would fail)",
           f"hidden state {mert.LAYER} of 13 (the last layer; fadtk's MERT-v1-95M default): one 768-d row per "
           "frame, 75 per second"),
    prepare=_mert)


def _register(name: str, protocol: EmbeddingProtocol, summary: str, fadtk_model: str) -> None:
    register_metric(MetricDef(
        name=name, preset="fadtk", version=1, direction="lower", protocol=protocol, summary=summary,
        lineage=f"{LINEAGE}: its '{fadtk_model}' model", compute=frechet_metric, family="frechet"))


_register("fad-clap-laion", CLAP_AUDIO, "FAD on LAION-CLAP 630k-audioset (10 s chunks every 1 s), fadtk's "
          "clap-laion-audio", "clap-laion-audio")
_register("fad-clap-laion-music", CLAP_MUSIC, "FAD on LAION-CLAP music_audioset (10 s chunks every 1 s), fadtk's "
          "clap-laion-music", "clap-laion-music")
_register("fad-encodec-emb", ENCODEC_24K, "FAD on EnCodec 24 kHz encoder frames (128-d, 75 per second), fadtk's "
          "encodec-emb", "encodec-emb")
_register("fad-dac-44khz", DAC_44K, "FAD on DAC 44.1 kHz encoder latents (1024-d frames of 5 s windows, -16 LUFS), "
          "fadtk's dac-44kHz", "dac-44kHz")
_register("fad-mert-v1-95m", MERT_95M, "FAD on MERT-v1-95M layer 12 frames (768-d, 75 per second; the repo's "
          "remote code), fadtk's MERT-v1-95M", "MERT-v1-95M")
_register("fad-encodec-emb-48k", ENCODEC_48K, "FAD on EnCodec 48 kHz encoder frames (stereo copy of the mono mix, "
          "1 s segments), fadtk's encodec-emb-48k", "encodec-emb-48k")
