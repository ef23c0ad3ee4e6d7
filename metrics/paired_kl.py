"""Classifier outputs with one vector per clip, and the paired KL metric built on them (PANNs, Melception).

audioldm_eval and Diffsound compute the same thing: for each pair of clips with the same id,
KL(reference || generated) = sum_c r_c log(r_c / (g_c + eps)) over class probabilities, averaged over
pairs; only how logits become probabilities differs (softmax, or PANNs' sigmoid variant).
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from bench.core.errors import BenchError
from metrics.inputs import pair_by_id
from metrics.bootstrap import mean_interval
from metrics.classwise import kl_per_pair

KL_EPS = 1e-6
KL_COVERS = "the population mean over id pairs of the per-pair KL (pairs resampled)"


def one_row_per_clip(emb, output: str) -> np.ndarray:
    """[clips, dim] float64 of a whole-clip output; an error naming the first clip with another count."""
    rows = emb.per_clip(output)
    bad = [cid for cid, r in zip(emb.clip_ids, rows) if len(r) != 1]
    if bad:
        raise BenchError(f"{emb.set_info.get('source')}: expected one {output} vector per clip, clip "
                         f"{bad[0]!r} has {len(rows[emb.clip_ids.index(bad[0])])}")
    return np.concatenate(rows).astype(np.float64)


def paired_kl_metric(probabilities: Callable[[np.ndarray], np.ndarray], description: str):
    """A metric computing the mean over id pairs of KL(reference || generated) of probabilities(logits)."""

    def compute(generated, reference, options) -> dict:
        pairs, pairing = pair_by_id(generated, reference, options.pairing)
        gen_index, ref_index = (np.array(side) for side in zip(*pairs))
        gen = probabilities(one_row_per_clip(generated, "logits")[gen_index])
        ref = probabilities(one_row_per_clip(reference, "logits")[ref_index])
        per_pair = kl_per_pair(ref, gen, eps=KL_EPS)
        value = float(per_pair.mean())
        result = {"value": value, "ci": None,
                  "details": {"direction": "KL(reference || generated)", "eps": KL_EPS,
                              "eps_added_to": "generated probabilities", "probabilities": description,
                              "reduction": "sum over classes, mean over pairs", "pairing": pairing,
                              "sign": "can be slightly negative for near-identical pairs, since eps is added "
                                      "to the generated side only (the sigmoid variant can be negative "
                                      "outright: it is not a divergence)"},
                  "per_clip": [{"id": generated.clip_ids[i], "reference_id": reference.clip_ids[j],
                                "value": float(v)} for i, j, v in zip(gen_index, ref_index, per_pair)]}
        if options.bootstrap > 0:  # no floor: see "sign"
            result["ci"] = mean_interval(per_pair, options.bootstrap, options.bootstrap_seed, KL_COVERS,
                                         options.ci_level).to_dict()
        return result

    return compute
