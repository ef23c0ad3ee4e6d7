"""Known answers for Inception Score and the KL divergences, and is-/kl-panns on hand-made tables.

The audioldm_eval formulas are re-implemented here in torch (calculate_isc, calculate_kl), as the
independent reference the numpy kernels and the metrics are compared against.
"""
import math

import numpy as np
import pytest
import torch

from bench.core.errors import BenchError
from metrics.inputs import ScoreOptions, SetEmbeddings
from metrics.classwise import inception_score, kl_per_pair, sigmoid, softmax
from metrics.registry import get_metric

EPS = 1e-6


def audioldm_isc(logits, splits=10, seed=2020) -> tuple[float, float]:
    """audioldm_eval's calculate_isc: shuffle with RandomState(seed), double, softmax, contiguous splits."""
    features = torch.as_tensor(logits)
    n = features.shape[0]
    features = features[np.random.RandomState(seed).permutation(n), :].double()
    p, log_p = features.softmax(dim=1), features.log_softmax(dim=1)
    scores = []
    for i in range(splits):
        chunk, log_chunk = p[i * n // splits:(i + 1) * n // splits], log_p[i * n // splits:(i + 1) * n // splits]
        q = chunk.mean(dim=0, keepdim=True)
        scores.append((chunk * (log_chunk - q.log())).sum(dim=1).mean().exp().item())
    return float(np.mean(scores)), float(np.std(scores))


def audioldm_kl(gen_logits, ref_logits, kind="softmax") -> float:
    """audioldm_eval's calculate_kl on paired rows: kl_div(log(f(gen) + EPS), f(ref), sum) / N."""
    gen, ref = torch.as_tensor(gen_logits).double(), torch.as_tensor(ref_logits).double()
    f = (lambda x: x.softmax(dim=1)) if kind == "softmax" else torch.sigmoid
    return float(torch.nn.functional.kl_div((f(gen) + EPS).log(), f(ref), reduction="sum") / len(gen))


def one_hot_logits(classes, n_classes=527, height=200.0):
    logits = np.zeros((len(classes), n_classes))
    logits[np.arange(len(classes)), classes] = height  # softmax is one-hot to float64 precision
    return logits


# ------------------------------------------------------------------------------------- inception score

def test_uniform_predictions_give_is_one():
    mean, std = inception_score(np.zeros((20, 527)))
    assert mean == pytest.approx(1.0, abs=1e-12) and std == pytest.approx(0.0, abs=1e-12)


def test_one_hot_distinct_classes_give_the_split_size():
    # 30 clips of 30 different classes: every split of 3 clips has 3 equally likely classes.
    mean, std = inception_score(one_hot_logits(np.arange(30)))
    assert mean == pytest.approx(3.0, rel=1e-9) and std == pytest.approx(0.0, abs=1e-9)


def test_the_2020_shuffle_decides_which_clips_share_a_split():
    # 20 clips: 10 of class 0 then 10 of class 1. In order, every split of 2 holds one class (IS 1);
    # after the shuffle a split holding both classes scores 2.
    classes = np.repeat([0, 1], 10)
    shuffled = classes[np.random.RandomState(2020).permutation(20)]
    per_split = [2.0 if shuffled[2 * i] != shuffled[2 * i + 1] else 1.0 for i in range(10)]
    assert 1.0 < np.mean(per_split) < 2.0  # the known answer is not a trivial one
    mean, std = inception_score(one_hot_logits(classes))
    assert mean == pytest.approx(np.mean(per_split), rel=1e-9) and std == pytest.approx(np.std(per_split), abs=1e-9)
    assert inception_score(one_hot_logits(classes), shuffle_seed=None)[0] == pytest.approx(1.0)


def test_inception_score_matches_audioldm_eval_formula():
    logits = np.random.default_rng(0).normal(scale=3.0, size=(37, 527))  # 37: uneven split sizes
    mean, std = inception_score(logits, splits=10, shuffle_seed=2020)
    ref_mean, ref_std = audioldm_isc(logits)
    assert mean == pytest.approx(ref_mean, rel=1e-12) and std == pytest.approx(ref_std, rel=1e-9)
    assert mean > 1.5


def test_inception_score_needs_as_many_clips_as_splits():
    with pytest.raises(ValueError, match="N >= splits"):
        inception_score(np.zeros((9, 527)))


# ------------------------------------------------------------------------------------------ KL kernels

def test_kl_of_identical_distributions():
    p = softmax(np.random.default_rng(1).normal(size=(4, 527)))
    assert np.all(kl_per_pair(p, p, eps=0.0) == 0.0)
    # With audioldm_eval's eps on the predicted side only, identical one-hots give log(1 / (1 + eps)).
    one_hot = softmax(one_hot_logits([3, 7]))
    assert kl_per_pair(one_hot, one_hot, eps=EPS) == pytest.approx([-math.log1p(EPS)] * 2, rel=1e-6)


def test_kl_by_hand():
    target, predicted = np.array([[0.5, 0.5, 0.0]]), np.array([[0.25, 0.75, 0.0]])
    assert kl_per_pair(target, predicted, eps=0.0)[0] == pytest.approx(0.5 * math.log(4 / 3), rel=1e-12)
    by_hand = 0.5 * math.log(0.5 / (0.25 + EPS)) + 0.5 * math.log(0.5 / (0.75 + EPS))  # 0 log 0 = 0
    assert kl_per_pair(target, predicted, eps=EPS)[0] == pytest.approx(by_hand, rel=1e-12)


@pytest.mark.parametrize("kind", ["softmax", "sigmoid"])
def test_kl_matches_audioldm_eval_formula(kind):
    rng = np.random.default_rng(2)
    gen, ref = rng.normal(scale=2.0, size=(6, 527)), rng.normal(scale=2.0, size=(6, 527))
    f = softmax if kind == "softmax" else sigmoid
    assert kl_per_pair(f(ref), f(gen), eps=EPS).mean() == pytest.approx(audioldm_kl(gen, ref, kind), rel=1e-10)


# ------------------------------------------------------------------------ the metrics on hand-made tables

def table(ids, logits) -> SetEmbeddings:
    rows = [np.asarray(r, np.float32)[None, :] for r in logits]
    return SetEmbeddings({"source": "hand-made"}, list(ids), [None] * len(ids), {"logits": rows},
                         [1.0] * len(ids), [False] * len(ids))


OPTIONS = ScoreOptions(bootstrap=0, progress=False)


def test_is_metric_reports_mean_std_and_protocol():
    metric = get_metric("is-panns@audioldm")
    assert (metric.kind, metric.output, metric.min_items, metric.direction) == ("generated", "logits", 10, "higher")
    result = metric.compute(table([f"c{i}" for i in range(30)], one_hot_logits(np.arange(30))), None, OPTIONS)
    assert result["value"] == pytest.approx(3.0, rel=1e-6) and result["ci"] is None
    assert result["details"]["std_over_splits"] == pytest.approx(0.0, abs=1e-6)
    assert (result["details"]["splits"], result["details"]["shuffle_seed"]) == (10, 2020)
    with_ci = metric.compute(table([f"c{i}" for i in range(30)], one_hot_logits(np.arange(30))), None,
                             ScoreOptions(bootstrap=30, progress=False))
    assert 1.0 <= with_ci["ci"]["low"] <= with_ci["ci"]["high"] and with_ci["ci"]["n_resamples"] == 30


@pytest.mark.parametrize("metric_id,kind", [("kl-panns@audioldm", "softmax"),
                                            ("kl-panns-sigmoid@audioldm", "sigmoid")])
def test_kl_metric_pairs_by_id_whatever_the_order(metric_id, kind):
    rng = np.random.default_rng(3)
    ref_ids = ["a", "b", "c", "d"]
    ref = rng.normal(scale=2.0, size=(4, 527)).astype(np.float32)
    gen_ids = ["c#0", "a#0", "d#0", "b#0", "a#1"]  # two samples for "a", listed in another order
    gen = rng.normal(scale=2.0, size=(5, 527)).astype(np.float32)
    result = get_metric(metric_id).compute(table(gen_ids, gen), table(ref_ids, ref), OPTIONS)
    paired_ref = ref[[ref_ids.index(g.split("#")[0]) for g in gen_ids]]
    assert result["value"] == pytest.approx(audioldm_kl(gen, paired_ref, kind), rel=1e-9)
    assert [(c["id"], c["reference_id"]) for c in result["per_clip"]] == [
        ("c#0", "c"), ("a#0", "a"), ("d#0", "d"), ("b#0", "b"), ("a#1", "a")]
    assert result["details"]["direction"] == "KL(reference || generated)" and result["details"]["eps"] == EPS
    if kind == "sigmoid":
        assert "not a Bernoulli KL" in get_metric(metric_id).summary
        assert "not a Bernoulli KL" in result["details"]["probabilities"]


def test_kl_metric_of_a_set_against_itself_is_only_the_eps_shift():
    # sum_c p_c log(p_c / (p_c + eps)) ~ -eps per class: about -527e-6, below zero, so no floor at 0.
    logits = np.random.default_rng(4).normal(size=(3, 527))
    result = get_metric("kl-panns@audioldm").compute(table("xyz", logits), table("xyz", logits),
                                                      ScoreOptions(bootstrap=20, progress=False))
    assert result["value"] == pytest.approx(-527 * EPS, rel=1e-2)
    assert result["ci"]["low"] <= result["value"] <= result["ci"]["high"]


def test_unpaired_ids_are_an_error_listing_them():
    rng = np.random.default_rng(5)
    ref, gen = table(["a", "b", "c"], rng.normal(size=(3, 527))), table(["a", "b", "x"], rng.normal(size=(3, 527)))
    with pytest.raises(BenchError, match=r"1 generated id\(s\) without a reference \(first: \['x'\]\).*"
                                         r"1 reference id\(s\) without a generated clip \(first: \['c'\]\)"):
        get_metric("kl-panns@audioldm").compute(gen, ref, OPTIONS)


def test_audioldm_99_rule_is_an_explicit_opt_in():
    rng = np.random.default_rng(6)
    ref_ids = [f"r{i:03d}" for i in range(101)]
    ref, gen = table(ref_ids, rng.normal(size=(101, 527))), table(ref_ids[:100], rng.normal(size=(100, 527)))
    with pytest.raises(BenchError, match=r"r100.*--pairing audioldm-99"):
        get_metric("kl-panns@audioldm").compute(gen, ref, OPTIONS)
    lenient = ScoreOptions(bootstrap=0, progress=False, pairing="audioldm-99")
    result = get_metric("kl-panns@audioldm").compute(gen, ref, lenient)
    assert result["details"]["pairing"]["reference_unpaired"] == ["r100"] and len(result["per_clip"]) == 100
    with pytest.raises(BenchError, match="only 98.0% of ids matched"):
        get_metric("kl-panns@audioldm").compute(table(ref_ids[:99], rng.normal(size=(99, 527))), ref, lenient)
    # Both sides count: 2 generated clips of 101 without a reference also fail the 99% rule.
    gen_extra = table(ref_ids + ["x1", "x2"], rng.normal(size=(103, 527)))
    with pytest.raises(BenchError, match="only 98.1% of ids matched"):
        get_metric("kl-panns@audioldm").compute(gen_extra, ref, lenient)
