"""Scoring existing audio with FAD-VGGish: provenance, caching, bad input, and real weight loading."""
import numpy as np
import pytest
import torch

from bench.core import weights
from bench.core.clipsets import load_directory
from bench.core.synthetic import synthetic_dataset
from bench.core.errors import AudioError, CheckpointError
from metrics.inputs import ScoreOptions
from bench.scoring import score
from metrics.backbones import vggish
from metrics.backbones.base import WeightsChoice
from tests.conftest import write_clips

SR = 16000


def _synthetic_clips(n=6, duration=1.5, seed=0, rate=SR):
    ds = synthetic_dataset(n_clips=n, sample_rate=rate, duration_s=duration, seed=seed)
    return {c.id: ds.load(c) for c in ds.clips}


def _noise_clips(ids, duration=1.5, rate=SR, seed=1):
    rng = np.random.default_rng(seed)
    return {i: ((0.1 * rng.standard_normal((1, int(duration * rate)))).astype(np.float32), rate) for i in ids}


@pytest.fixture
def sets(tmp_path):
    ref = _synthetic_clips()
    return {"ref": load_directory(write_clips(tmp_path / "ref", ref)),
            "noise": load_directory(write_clips(tmp_path / "noise", _noise_clips(ref))),
            "tmp": tmp_path}


def _options(cache_dir, **kw):
    return ScoreOptions(weights=WeightsChoice(mode="untrained", seed=0, cache_root=cache_dir),
                        cache_root=cache_dir, bootstrap=20, progress=False, **kw)


def test_untrained_is_in_every_name_and_provenance(sets, cache_dir):
    [res] = score(["fad-vggish@audioldm"], sets["noise"], sets["ref"], _options(cache_dir))
    assert res["key"] == "fad-vggish@audioldm[untrained]" and res["untrained"] is True
    assert res["backbone"]["weights"] == "untrained" and res["backbone"]["seed"] == 0
    assert res["protocol"]["id"] == "vggish@audioldm" and res["protocol"]["resampler"]["name"] == "sinc-hann"
    assert res["generated"]["n_clips"] == 6 and res["generated"]["total_duration_s"] == pytest.approx(9.0)
    assert res["reference"]["fingerprint"] == sets["ref"].fingerprint()
    # The interval targets the population FD: reflected around the (upward-biased) value.
    ci = res["ci"]
    assert res["value"] > 0 and ci["estimate"] == res["value"] and ci["bias"] > 0
    assert ci["low"] <= ci["bias_corrected"] <= ci["high"] and ci["bias_corrected"] < res["value"]


def test_oracle_scores_zero_and_both_presets_run(sets, cache_dir):
    results = score(["fad-vggish@audioldm", "fad-vggish@google"], sets["ref"], sets["ref"], _options(cache_dir))
    assert [r["metric"] for r in results] == ["fad-vggish@audioldm", "fad-vggish@google"]
    for r in results:
        assert r["value"] == pytest.approx(0.0, abs=1e-6)
    # 1.5 s clips: audioldm pads to 2 s -> 2 examples each; google: windows at 0 and 0.5 s -> 2 each.
    assert results[0]["generated"]["n_embeddings"] == 12
    assert results[1]["generated"]["n_embeddings"] == 12


def test_rescoring_comes_from_the_cache(sets, cache_dir, monkeypatch):
    first = score(["fad-vggish@audioldm"], sets["noise"], sets["ref"], _options(cache_dir))
    from metrics.backbones import base

    for backbone in base._LOADED.values():
        for forward in ("embed", "embed_tensors"):
            monkeypatch.setattr(backbone, forward, lambda x: pytest.fail("embedded again despite a warm cache"))
    again = score(["fad-vggish@audioldm"], sets["noise"], sets["ref"], _options(cache_dir))
    assert again == first


def test_changed_file_is_not_served_stale(sets, cache_dir):
    first = score(["fad-vggish@audioldm"], sets["noise"], sets["ref"], _options(cache_dir))
    clip = sets["noise"].clips[0]
    write_clips(sets["tmp"] / "noise", {clip.id: (np.zeros((1, 24000), np.float32) + 0.05, SR)})
    changed = score(["fad-vggish@audioldm"], load_directory(sets["tmp"] / "noise"), sets["ref"],
                    _options(cache_dir))
    assert changed[0]["value"] != first[0]["value"]


def test_silence_is_scored_and_flagged_short_clips_listed(tmp_path, cache_dir):
    ref = load_directory(write_clips(tmp_path / "ref", _synthetic_clips()))
    gen = {**_noise_clips(["a", "b", "c"]), "quiet": (np.zeros((1, 24000), np.float32), SR),
           "short": (np.full((1, 8000), 0.1, np.float32), SR)}
    gen_set = load_directory(write_clips(tmp_path / "gen", gen))
    ldm, google = score(["fad-vggish@audioldm", "fad-vggish@google"], gen_set, ref, _options(cache_dir))
    assert ldm["generated"]["silent_clips"] == {"count": 1, "ids": ["quiet"]}
    assert ldm["generated"]["clips_without_embeddings"]["count"] == 0  # padded to 2 s
    assert google["generated"]["clips_without_embeddings"] == {"count": 1, "ids": ["short"]}  # under 1 s


def test_set_too_short_for_the_protocol_is_a_clear_error(tmp_path, cache_dir):
    ref = load_directory(write_clips(tmp_path / "ref", _synthetic_clips()))
    short = load_directory(write_clips(tmp_path / "short", _noise_clips(["a", "b"], duration=0.5)))
    with pytest.raises(AudioError, match="generated set.*produced 0 output"):
        score(["fad-vggish@google"], short, ref, _options(cache_dir))


def test_nan_file_names_the_file(tmp_path, cache_dir):
    import soundfile as sf

    ref = load_directory(write_clips(tmp_path / "ref", _synthetic_clips()))
    bad_dir = write_clips(tmp_path / "bad", _noise_clips(["ok1", "ok2"]))
    data = np.full(16000, np.nan, np.float32)
    sf.write(bad_dir / "broken.wav", data, SR, subtype="FLOAT")
    with pytest.raises(AudioError, match="broken.wav"):
        score(["fad-vggish@audioldm"], load_directory(bad_dir), ref, _options(cache_dir))


def test_mixed_rates_and_channels_are_handled_by_the_protocol(tmp_path, cache_dir):
    ref = load_directory(write_clips(tmp_path / "ref", _synthetic_clips()))
    mixed = {"a": _synthetic_clips(1, rate=22050)["synthetic-0000"],
             "b": (np.tile(_synthetic_clips(2, rate=44100)["synthetic-0001"][0], (2, 1)), 44100),
             "c": _synthetic_clips(3)["synthetic-0002"]}
    [res] = score(["fad-vggish@audioldm"], load_directory(write_clips(tmp_path / "mixed", mixed)), ref,
                  _options(cache_dir))
    assert np.isfinite(res["value"]) and res["generated"]["n_clips"] == 3


@pytest.fixture(scope="module")
def vggish_checkpoint(tmp_path_factory):
    """A correctly keyed VGGish checkpoint (seeded weights), as torchvggish's file would be."""
    path = tmp_path_factory.mktemp("ckpt") / "vggish-10086976.pth"
    torch.save(vggish.build_vggish(seed=0).state_dict(), path)
    return path


def test_local_checkpoint_goes_through_the_real_loader(sets, cache_dir, vggish_checkpoint):
    choice = WeightsChoice(mode="pretrained", local_files=(("vggish", str(vggish_checkpoint)),),
                           cache_root=cache_dir)
    opts = ScoreOptions(weights=choice, cache_root=cache_dir, bootstrap=0, progress=False)
    [res] = score(["fad-vggish@audioldm"], sets["noise"], sets["ref"], opts)
    # Seeded weights, not the published file (its sha256 does not start with 10086976): labelled everywhere.
    assert res["key"] == "fad-vggish@audioldm[unverified]" and res["unverified"] and not res["untrained"]
    assert res["backbone"]["weights"] == weights.UNVERIFIED and res["backbone"]["url"] is None
    assert res["backbone"]["matches_published"] is False
    assert res["backbone"]["sha256"] == weights.sha256_file(vggish_checkpoint)
    assert res["backbone"]["source"] == "local file"
    # Nothing is written next to the user's checkpoint.
    assert sorted(p.name for p in vggish_checkpoint.parent.iterdir()) == [vggish_checkpoint.name]
    [untrained] = score(["fad-vggish@audioldm"], sets["noise"], sets["ref"], _options(cache_dir))
    assert res["value"] == pytest.approx(untrained["value"], rel=1e-6)  # same weights, same number


def test_checkpoint_from_the_cache_is_hash_checked(sets, cache_dir, vggish_checkpoint, monkeypatch):
    import dataclasses
    import shutil

    digest = weights.sha256_file(vggish_checkpoint)
    card = dataclasses.replace(weights.KNOWN_WEIGHTS["vggish"], sha256=digest, sha256_prefix=None)
    monkeypatch.setitem(weights.KNOWN_WEIGHTS, "vggish", card)
    opts = ScoreOptions(weights=WeightsChoice(cache_root=cache_dir), cache_root=cache_dir, bootstrap=0,
                        progress=False)
    with pytest.raises(CheckpointError, match=r"vggish-10086976.pth.*https://github.com.*weights"):
        score(["fad-vggish@audioldm"], sets["noise"], sets["ref"], opts)  # offline, not cached yet
    (cache_dir / "weights").mkdir(parents=True)
    shutil.copy(vggish_checkpoint, cache_dir / "weights" / card.filename)
    [res] = score(["fad-vggish@audioldm"], sets["noise"], sets["ref"], opts)
    assert res["backbone"]["source"] == "cache" and res["backbone"]["sha256"] == digest
    # The same file passed with --checkpoint matches the published hash now: plain "pretrained".
    local = ScoreOptions(weights=WeightsChoice(local_files=(("vggish", str(vggish_checkpoint)),),
                                               cache_root=cache_dir), cache_root=cache_dir, bootstrap=0, progress=False)
    [res] = score(["fad-vggish@audioldm"], sets["noise"], sets["ref"], local)
    assert res["key"] == "fad-vggish@audioldm" and res["backbone"]["weights"] == "pretrained"
    assert res["backbone"]["matches_published"] is True and not res["unverified"]


def test_wrong_checkpoint_names_the_key(sets, cache_dir, tmp_path):
    state = vggish.build_vggish(seed=1).state_dict()
    state["embeddings.4.weight"] = torch.zeros(64, 4096)
    bad = tmp_path / "bad.pth"
    torch.save(state, bad)
    opts = ScoreOptions(weights=WeightsChoice(local_files=(("vggish", str(bad)),), cache_root=cache_dir),
                        cache_root=cache_dir, bootstrap=0, progress=False)
    with pytest.raises(CheckpointError, match="embeddings.4.weight"):
        score(["fad-vggish@audioldm"], sets["noise"], sets["ref"], opts)


# ------------------------------------------------------------------------------ intervals, floor, pairing

def test_result_carries_interval_coverage_floor_and_size_warning(sets, cache_dir, monkeypatch):
    [res] = score(["fad-vggish@audioldm"], sets["noise"], sets["ref"], _options(cache_dir))
    ci = res["ci"]
    assert "population" in ci["covers"] and "basic" in ci["method"] and "content" in ci["draws"]
    assert ci["bias_corrected"] == pytest.approx(ci["estimate"] - ci["bias"]) and ci["estimate"] == res["value"]
    floor = res["noise_floor"]
    assert floor["splits"] == 5 and floor["set_sizes"] == [3, 3] and len(floor["values"]) == 5
    assert floor["mean"] == pytest.approx(np.mean(floor["values"])) and floor["std"] > 0
    # 6 clips x 2 examples = 12 embeddings of 128 dimensions: too few for a covariance, and said so.
    assert any("12 embedding(s) of 128 dimensions" in w for w in res["warnings"])
    assert res["degenerate"] is None
    # The floor is computed once per reference set and backbone: the next result reads it from the cache.
    import bench.scoring as scoring
    monkeypatch.setattr(scoring, "noise_floor", lambda *a, **k: pytest.fail("floor recomputed"))
    [again] = score(["fad-vggish@audioldm"], sets["noise"], sets["ref"], _options(cache_dir))
    assert again["noise_floor"] == floor


def test_oracle_row_is_labelled_degenerate(sets, cache_dir):
    [res] = score(["fad-vggish@audioldm"], sets["ref"], sets["ref"], _options(cache_dir))
    assert res["value"] == pytest.approx(0.0, abs=1e-6) and "itself" in res["degenerate"]


def test_renaming_files_does_not_change_the_interval(tmp_path, cache_dir):
    ref, noise = _synthetic_clips(), _noise_clips(_synthetic_clips())
    a = [load_directory(write_clips(tmp_path / f"a_{k}", clips)) for k, clips in (("ref", ref), ("gen", noise))]
    # New names in another sort order: the clips are read in a different order.
    renamed = lambda clips: {f"{9 - i}_{cid}": v for i, (cid, v) in enumerate(clips.items())}  # noqa: E731
    b = [load_directory(write_clips(tmp_path / f"b_{k}", renamed(clips))) for k, clips in (("ref", ref), ("gen", noise))]
    assert [c.id for c in a[0].clips] != [c.id.split("_", 1)[1] for c in b[0].clips]
    [ra] = score(["fad-vggish@audioldm"], a[1], a[0], _options(cache_dir))
    [rb] = score(["fad-vggish@audioldm"], b[1], b[0], _options(cache_dir))
    assert (rb["ci"]["low"], rb["ci"]["high"]) == pytest.approx((ra["ci"]["low"], ra["ci"]["high"]), rel=1e-9)
    assert rb["noise_floor"]["values"] == pytest.approx(ra["noise_floor"]["values"], rel=1e-9)


def test_ids_round_trip_for_any_file_name():
    from metrics.inputs import pair_ids

    gen = ["take#2", "a#b#c", "x#0", "x#1", "y"]
    ref = ["take#2", "a#b#c", "x", "y"]
    pairs, info = pair_ids(gen, ref, "strict")
    assert [(gen[i], ref[j]) for i, j in pairs] == [("take#2", "take#2"), ("a#b#c", "a#b#c"), ("x#0", "x"),
                                                     ("x#1", "x"), ("y", "y")]
    assert info["pairs"] == 5
    # "take" has samples take#0, take#1; a reference named "take#2" is a different clip.
    pairs, _ = pair_ids(["take#0", "take#1", "take#2"], ["take", "take#2"], "strict")
    assert pairs == [(0, 0), (1, 0), (2, 1)]


def test_pairing_is_checked_before_any_embedding(sets, cache_dir, monkeypatch):
    import bench.scoring as scoring
    from bench.core.errors import BenchError

    gen = load_directory(write_clips(sets["tmp"] / "other", _noise_clips(["p", "q", "r", "s", "t", "u"])))
    monkeypatch.setattr(scoring, "embed_set", lambda *a, **k: pytest.fail("embedded before checking pairing"))
    with pytest.raises(BenchError, match="do not pair up"):
        score(["fad-vggish@audioldm", "kl-panns@audioldm"], gen, sets["ref"], _options(cache_dir))


def test_a_failing_metric_keeps_the_results_already_computed(tmp_path, cache_dir):
    from bench.scoring import ScoringFailed

    # 0.8 s clips: audioldm pads to 2 s, Google's preset takes only full 1 s windows and gets nothing.
    short = load_directory(write_clips(tmp_path / "short", _synthetic_clips(duration=0.8)))
    with pytest.raises(ScoringFailed) as info:
        score(["fad-vggish@audioldm", "fad-vggish@google"], short, short, _options(cache_dir))
    assert [r["metric"] for r in info.value.results] == ["fad-vggish@audioldm"]
    assert [f["metric"] for f in info.value.failures] == ["fad-vggish@google"]
    assert "needs at least" in info.value.failures[0]["error"]
