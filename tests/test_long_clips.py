"""Long clips are streamed (hash, resampling, VGGish examples) with the values of the whole-clip path."""
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from bench.core import clipsets
from bench.core.resample import SincHannStream, resample
from metrics.vggish_metrics import VGGISH_AUDIOLDM


@pytest.mark.parametrize("orig,new,n,block", [(44100, 16000, 200_003, 7777), (48000, 16000, 600_001, 1 << 18),
                                               (22050, 16000, 123, 50), (16000, 16000, 5000, 999)])
def test_sinc_hann_stream_equals_whole_signal(orig, new, n, block):
    x = np.random.default_rng(0).uniform(-1, 1, (2, n)).astype(np.float32)
    stream = SincHannStream(orig, new)
    got = np.concatenate([stream.push(x[:, i:i + block]) for i in range(0, n, block)] + [stream.finish()], 1)
    assert np.array_equal(got, resample(x, orig, new, "sinc-hann"))


@pytest.mark.parametrize("rate,seconds", [(44100, 31.3), (16000, 12.0)])
def test_vggish_stream_equals_prepare(rate, seconds):
    x = (np.random.default_rng(1).uniform(-0.5, 0.5, (2, int(rate * seconds))) + 0.01).astype(np.float32)
    blocks = lambda: (x[:, i:i + 100_000] for i in range(0, x.shape[1], 100_000))  # noqa: E731
    streamed = np.concatenate(list(VGGISH_AUDIOLDM.stream(blocks, rate)))
    assert np.array_equal(streamed, VGGISH_AUDIOLDM.prepare(x, rate))


def test_long_files_stream_with_the_same_hash_and_embeddings(tmp_path, monkeypatch):
    import bench.batching as batching
    import bench.scoring as scoring
    from metrics.backbones.base import WeightsChoice, load_backbone
    from metrics.inputs import ScoreOptions

    x = np.random.default_rng(0).uniform(-0.3, 0.3, (44100 * 5, 2)).astype(np.float32)
    sf.write(tmp_path / "long.wav", x, 44100, subtype="PCM_16")
    sf.write(tmp_path / "short.flac", x[:44100 * 2], 44100)
    weights = WeightsChoice(mode="untrained")
    backbone = load_backbone("vggish", weights)
    seen = {}
    for long_samples in (1 << 40, 1 << 16):  # first nothing is long, then the 5 s file is
        monkeypatch.setattr(batching, "LONG_CLIP_SAMPLES", long_samples)
        monkeypatch.setattr(clipsets, "LONG_CLIP_SAMPLES", long_samples)
        clips = clipsets.load_directory(tmp_path)
        options = ScoreOptions(weights=weights, cache_root=Path(tmp_path / f"cache{long_samples}"), batch_size=4,
                               workers=1, bootstrap=0, progress=False)
        seen[long_samples] = (clips.fingerprint(), scoring.embed_set(clips, VGGISH_AUDIOLDM, backbone, options))
    (hash_whole, whole), (hash_streamed, streamed) = seen.values()
    assert hash_whole == hash_streamed
    assert [e.shape for e in streamed.per_clip("embedding")] == [(5, 128), (2, 128)]
    for a, b in zip(whole.per_clip("embedding"), streamed.per_clip("embedding")):
        assert np.array_equal(a, b)
    assert whole.durations_s == streamed.durations_s and whole.silent == streamed.silent
