"""av-benchmark's FD / KL / IS on PANNs and PaSST (MMAudio's tables): its input pipeline and its metric code
written out here in torch/scipy as av_bench has them, against ours on identical seeded random weights.

av-benchmark itself does not install here (it needs imagebind, msclap and a CUDA torch); the backbones are
the project's PANNs and PaSST, whose parity with the reference packages tests/test_panns.py and
tests/test_passt.py check. What is new here is the preprocessing and the metric code.
"""
import dataclasses
import math
import shutil

import numpy as np
import pytest
import torch
from scipy import linalg

from bench.core import weights
from bench.core.clipsets import ClipRef, ClipSet
from bench.core.resample import resample
from bench.scoring import embed_set, score
from metrics import avbench_metrics as av
from metrics.backbones import base, panns, passt
from metrics.backbones.base import WeightsChoice, load_backbone
from metrics.inputs import ScoreOptions
from metrics.registry import get_metric
from tests.test_classwise import audioldm_isc

METRICS = [f"{m}-{b}@avbench" for b in ("panns", "passt") for m in ("fd", "kl", "is")]


@pytest.fixture(scope="module", autouse=True)
def _free_models():
    yield
    for key in [k for k in base._LOADED if k[0].startswith(("panns-", "passt-"))]:
        del base._LOADED[key]


def _clip(seed: int, seconds: float, rate: int, channels: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * rate)) / rate
    tone = 0.3 * np.sin(2 * np.pi * (200 + 150 * seed) * t) + 0.1
    return np.stack([tone + 0.05 * (c + 1) * rng.standard_normal(len(t)) for c in range(channels)]).astype(np.float32)


def memory_set(name: str, clips: dict) -> ClipSet:
    return ClipSet(name, "synthetic", f"test:{name}", [ClipRef(cid, origin=f"{name}/{cid}") for cid in clips],
                   lambda clip: clips[clip.id])


@pytest.fixture(scope="module")
def sets():
    """5 reference clips (stereo 44.1 kHz, one 9 s: cut to 8 s) and 2 generated samples of each (mono 16 kHz)."""
    ref = {f"r{i}": (_clip(i, 9.0 if i == 0 else 1.0, 44100, 2), 44100) for i in range(5)}
    gen = {f"r{i}#{k}": (_clip(10 * k + i + 20, 1.2, 16000, 1), 16000) for i in range(5) for k in range(2)}
    return gen, ref


def reference_dataset(wave: np.ndarray, rate: int, target: int) -> torch.Tensor:
    """av_bench/data/audio_dataset.py AudioDataset.read_from_file, after torchaudio.load: mean of channels,
    mean removed, resampled (torchaudio's sinc algorithm, which bench's "sinc-hann" implements and
    tests/test_resample.py checks), first audio_length seconds."""
    waveform = torch.from_numpy(wave).mean(dim=0)
    waveform = waveform - waveform.mean()
    audio = torch.from_numpy(resample(waveform.numpy()[None], rate, target, "sinc-hann")[0])
    return audio[:int(target * 8.0)].unsqueeze(0)


def reference_passt_input(wave, rate) -> torch.Tensor:
    """av_bench/extract.py: 32 kHz dataset, then cut or zero-pad to 320000 samples."""
    wav = reference_dataset(wave, rate, 32000)
    if wav.size(-1) >= 320000:
        return wav[..., :320000]
    return torch.nn.functional.pad(wav, (0, 320000 - wav.size(-1)))


def reference_kl(pred_logits, gt_logits) -> float:
    """av_bench/metrics/kl.py compute_kl's kl_softmax."""
    pred, gt = torch.as_tensor(pred_logits), torch.as_tensor(gt_logits)
    return float(torch.nn.functional.kl_div(torch.nn.functional.log_softmax(pred, dim=1),
                                            torch.nn.functional.log_softmax(gt, dim=1), reduction="sum",
                                            log_target=True) / len(pred))


def reference_fd(pred, gt) -> float:
    """av_bench/metrics/fad.py compute_fd (scipy sqrtm)."""
    mu1, mu2 = pred.mean(0), gt.mean(0)
    s1, s2 = np.cov(pred, rowvar=False), np.cov(gt, rowvar=False)
    covmean = linalg.sqrtm(s1.dot(s2)).real
    return float((mu1 - mu2) @ (mu1 - mu2) + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean))


def test_inputs_follow_av_benchmark(sets):
    gen, ref = sets
    for wave, rate in [*gen.values(), *ref.values()]:
        ours = av.PANNS_AVBENCH.prepare(wave, rate)
        np.testing.assert_allclose(ours, reference_dataset(wave, rate, 16000).numpy(), atol=2e-6, rtol=0)
        ours = av.PASST_AVBENCH.prepare(wave, rate)
        assert ours.shape == (1, 320000)
        np.testing.assert_allclose(ours, reference_passt_input(wave, rate).numpy(), atol=2e-6, rtol=0)
    # The 9 s reference clip is cut to 8 s; PaSST then sees 8 s of audio and 2 s of zeros.
    assert av.PANNS_AVBENCH.prepare(*ref["r0"]).shape == (1, 128000)
    assert not av.PASST_AVBENCH.prepare(*ref["r0"])[0, 256000:].any()
    # Too short for Cnn14: no input, so the clip is listed instead of crashing the forward.
    assert av.PANNS_AVBENCH.prepare(np.zeros((1, 3000), np.float32), 16000).shape[0] == 0


def test_avbench_differs_from_audioldm_where_the_docs_say():
    from metrics.panns_metrics import PANNS_16K_AUDIOLDM

    stereo = np.stack([np.full(16000 * 10, 0.5), np.zeros(16000 * 10)]).astype(np.float32)
    stereo[0, ::2] = -0.5  # channel 0 alternates around 0, channel 1 silent
    ours, theirs = av.PANNS_AVBENCH.prepare(stereo, 16000), PANNS_16K_AUDIOLDM.prepare(stereo, 16000)
    assert ours.shape == (1, 128000) and theirs.shape == (1, 160000)  # 8 s cut vs the whole clip
    assert np.abs(ours).max() == pytest.approx(0.25, abs=1e-3)  # the channel mean, not the first channel
    assert np.abs(theirs).max() == pytest.approx(0.5, abs=1e-3)


def test_kl_is_av_benchmarks_log_softmax_without_eps():
    from metrics.inputs import SetEmbeddings

    rng = np.random.default_rng(0)
    gen_logits, ref_logits = 4 * rng.standard_normal((6, 527)), 4 * rng.standard_normal((3, 527))
    gen_logits[0, :] = -1e3
    gen_logits[0, 0] = 1e3  # p_gen ~ 0 for most classes: an eps would cap the KL, av-benchmark's has none

    def as_set(ids, logits):
        return SetEmbeddings({"source": "test"}, ids, [None] * len(ids), {"logits": [r[None] for r in logits]},
                             [1.0] * len(ids), [False] * len(ids))

    gen = as_set([f"c{i}#{k}" for i in range(3) for k in range(2)], gen_logits)
    ref = as_set(["c0", "c1", "c2"], ref_logits)
    result = av.kl_avbench(gen, ref, ScoreOptions(bootstrap=50, progress=False))
    expected = reference_kl(gen_logits, ref_logits[[0, 0, 1, 1, 2, 2]])
    assert result["value"] == pytest.approx(expected, rel=1e-12) and result["value"] > 100
    assert [c["value"] for c in result["per_clip"]][0] > 1000  # the eps-free pair: ~2000 nats
    assert result["details"]["direction"] == "KL(reference || generated)" and result["details"]["eps"] is None
    assert result["ci"]["low"] <= result["value"] <= result["ci"]["high"]


@pytest.fixture(scope="module")
def untrained_scores(sets, tmp_path_factory):
    """The PANNs metrics on all clips; the PaSST ones (10 s per forward) on two ids' clips, IS-PaSST apart."""
    gen, ref = sets
    choice = WeightsChoice(mode="untrained", seed=0)
    options = ScoreOptions(weights=choice, cache_root=tmp_path_factory.mktemp("avbench-cache"), batch_size=4,
                           bootstrap=20, progress=False)
    small = ({k: v for k, v in gen.items() if k[:2] in ("r0", "r1")}, {k: ref[k] for k in ("r0", "r1")})
    sets = {"panns": (memory_set("gen", gen), memory_set("ref", ref)),
            "passt": (memory_set("gen-small", small[0]), memory_set("ref-small", small[1]))}
    results = {}
    for name, (gen_set, ref_set) in sets.items():
        wanted = [m for m in METRICS if f"-{name}@" in m and not (name == "passt" and m.startswith("is-"))]
        results.update({r["metric"]: r for r in score(wanted, gen_set, ref_set, options)})
    return results, sets, options


def test_metrics_match_av_benchmark_code_on_identical_untrained_weights(untrained_scores):
    """The inputs are av-benchmark's (test above) and go through the same seeded backbone, so its metric
    code applied to the outputs the scores used must give our values."""
    results, sets, options = untrained_scores
    for name, protocol in (("panns", av.PANNS_AVBENCH), ("passt", av.PASST_AVBENCH)):
        gen_set, ref_set = sets[name]
        backbone = load_backbone(protocol.backbone, options.weights)
        # The outputs the scores used (from the embedding cache), one row per clip.
        stack = {role: {k: np.concatenate(embed_set(s, protocol, backbone, options).per_clip(k)).astype(np.float64)
                        for k in ("embedding", "logits")} for role, s in (("gen", gen_set), ("ref", ref_set))}
        first = gen_set.clips[0]
        direct = backbone.embed(protocol.prepare(*gen_set.load(first)))  # one clip, one forward
        np.testing.assert_allclose(stack["gen"]["logits"][0], direct["logits"][0], rtol=0,
                                   atol=1e-4 * np.abs(direct["logits"]).max())
        fd = results[f"fd-{name}@avbench"]
        assert fd["key"] == f"fd-{name}@avbench[untrained]" and fd["untrained"]
        assert fd["value"] == pytest.approx(reference_fd(stack["gen"]["embedding"], stack["ref"]["embedding"]),
                                            rel=1e-3)
        ref_ids = [c.id for c in ref_set.clips]
        ref_rows = [ref_ids.index(c.id.split("#")[0]) for c in gen_set.clips]
        kl = results[f"kl-{name}@avbench"]
        assert kl["value"] == pytest.approx(reference_kl(stack["gen"]["logits"], stack["ref"]["logits"][ref_rows]),
                                            rel=1e-6)
        assert len(kl["per_clip"]) == len(gen_set.clips) and kl["ci"] is not None
        assert fd["protocol"]["id"] == protocol.id and "mean of the channels" in fd["protocol"]["steps"][0]
        assert len(fd["per_clip"]) == len(gen_set.clips)  # each clip's own FD (a point mass: one row per clip)
    is_mean, is_std = audioldm_isc(np.concatenate(embed_set(sets["panns"][0], av.PANNS_AVBENCH, load_backbone(
        av.PANNS_AVBENCH.backbone, options.weights), options).per_clip("logits")))  # av_bench isc.py = audioldm's
    assert results["is-panns@avbench"]["value"] == pytest.approx(is_mean, rel=1e-6)
    assert results["is-panns@avbench"]["details"]["std_over_splits"] == pytest.approx(is_std, rel=1e-6, abs=1e-12)


def test_is_passt_is_av_benchmarks_isc_on_passt_logits():
    from metrics.inputs import SetEmbeddings

    metric = get_metric("is-passt@avbench")
    assert metric.output == "logits" and metric.protocol is av.PASST_AVBENCH and metric.min_items == 10
    logits = 3 * np.random.default_rng(1).standard_normal((23, 527))
    emb = SetEmbeddings({"source": "g"}, [f"c{i}" for i in range(23)], [None] * 23,
                        {"logits": [r[None] for r in logits]}, [1.0] * 23, [False] * 23)
    result = metric.compute(emb, None, ScoreOptions(bootstrap=0, progress=False))
    assert result["value"] == pytest.approx(audioldm_isc(logits)[0], rel=1e-12) and result["value"] > 1.5


def test_each_preset_names_its_lineage():
    for metric_id in METRICS:
        metric = get_metric(metric_id)
        assert "av-benchmark" in metric.lineage and metric.protocol.id.endswith("@avbench")
    assert get_metric("fd-passt@avbench").protocol.backbone == passt.BACKBONE_ID
    assert get_metric("kl-panns@avbench").protocol.backbone == "panns-cnn14-16k"


def test_pretrained_panns_loads_through_a_test_filled_cache(untrained_scores, tmp_path):
    """fd-panns@avbench with "published" weights: a Zenodo-shaped checkpoint of the seeded Cnn14 in the
    weights cache, found, hash-checked and loaded by the real path; same numbers as the untrained run."""
    results, sets, _ = untrained_scores
    gen_set, ref_set = sets["panns"]
    spec = panns.SPECS["panns-cnn14-16k"]
    model = panns.build_cnn14(spec, seed=0)
    (tmp_path / "weights").mkdir()
    path = tmp_path / "weights" / spec.filename
    torch.save({"iteration": 1, "model": model.state_dict()}, path)
    digest = weights.sha256_file(path)
    with pytest.MonkeyPatch.context() as mp:
        mp.setitem(weights.KNOWN_WEIGHTS, spec.backbone,
                   dataclasses.replace(weights.KNOWN_WEIGHTS[spec.backbone], sha256=digest))
        options = ScoreOptions(weights=WeightsChoice(cache_root=tmp_path), cache_root=tmp_path, batch_size=4,
                               bootstrap=0, progress=False)
        [pretrained] = score(["fd-panns@avbench"], gen_set, ref_set, options)
    untrained = results["fd-panns@avbench"]
    assert pretrained["key"] == "fd-panns@avbench" and not pretrained["untrained"]
    assert pretrained["backbone"]["sha256"] == digest and pretrained["backbone"]["source"] == "cache"
    assert pretrained["value"] == pytest.approx(untrained["value"], rel=1e-6) and math.isfinite(untrained["value"])
