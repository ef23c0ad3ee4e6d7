"""Per-clip batching (bench.scoring.clip_batches): no padding, and a clip's outputs are bitwise the same
whatever set, order or chunking it is scored in; values agree with the old fixed-shape padded batching."""
import dataclasses
import math

import numpy as np
import pytest

from bench.core.clipsets import ClipSet, load_directory
from bench.scoring import clip_batches, embed_clip, embed_examples, embed_set
from metrics.backbones.base import WeightsChoice, load_backbone
from metrics.inputs import ScoreOptions
from metrics.panns_metrics import PANNS_16K_AUDIOLDM
from metrics.vggish_metrics import VGGISH_AUDIOLDM
from tests.conftest import write_clips

WEIGHTS = WeightsChoice(mode="untrained", seed=0)
# Every length distinct; rates and channel counts vary too.
LAYOUT = [(0.4, 16000, 1), (1.3, 22050, 2), (2.1, 44100, 1), (0.9, 8000, 1), (3.05, 16000, 2),
          (1.7, 48000, 1), (2.6, 32000, 3), (1.05, 11025, 1), (0.25, 16000, 1)]


@pytest.fixture(scope="module")
def mixed(tmp_path_factory):
    rng = np.random.default_rng(7)
    clips = {f"clip{i}": ((0.1 * rng.standard_normal((ch, int(d * rate)))).astype(np.float32), rate)
             for i, (d, rate, ch) in enumerate(LAYOUT)}
    return load_directory(write_clips(tmp_path_factory.mktemp("mixed"), clips))


class Counting:
    """Wraps a backbone's forward (embed_tensors, which scoring prefers, or embed): the batch shapes it ran."""

    def __init__(self, backbone):
        self.shapes = []
        if backbone.embed_tensors is not None:
            self._embed = backbone.embed_tensors
            self.backbone = dataclasses.replace(backbone, embed_tensors=self)
        else:
            self._embed = backbone.embed
            self.backbone = dataclasses.replace(backbone, embed=self)

    def __call__(self, batch):
        self.shapes.append(batch.shape)
        return self._embed(batch)


def _embed(clipset, backbone, root, batch_size=4, chunk_clips=None):
    opts = ScoreOptions(weights=WEIGHTS, cache_root=root, batch_size=batch_size, chunk_clips=chunk_clips,
                        progress=False)
    emb = embed_set(clipset, VGGISH_AUDIOLDM, backbone, opts)
    return dict(zip(emb.clip_ids, emb.per_clip()))


def _subset(clipset, clips):
    return ClipSet(clipset.name, clipset.kind, clipset.source, clips)


def test_batches_come_from_one_clip_in_bounded_number_without_padding(mixed, tmp_path):
    counting = Counting(load_backbone("vggish", WEIGHTS))
    out = _embed(mixed, counting.backbone, tmp_path, batch_size=2)
    counts = [len(out[c.id]) for c in mixed.clips]
    # vggish@audioldm: clips padded to 2 s, then one example per 0.96 s.
    assert counts == [max(2, int(d * 100 // 96)) for d, _, _ in LAYOUT]
    assert sum(shape[0] for shape in counting.shapes) == sum(counts)  # not one padded example
    assert len(counting.shapes) == sum(math.ceil(k / 2) for k in counts)  # batches never span clips
    assert max(shape[0] for shape in counting.shapes) == 2  # but repeated shapes do batch


def test_a_clips_outputs_do_not_depend_on_set_order_or_chunking(mixed, tmp_path):
    backbone = load_backbone("vggish", WEIGHTS)
    together = _embed(mixed, backbone, tmp_path / "all", chunk_clips=4)
    shuffled = _subset(mixed, [mixed.clips[i] for i in np.random.default_rng(1).permutation(len(mixed))])
    reordered = _embed(shuffled, backbone, tmp_path / "shuffled", chunk_clips=3)
    for clip in mixed.clips:
        alone = _embed(_subset(mixed, [clip]), backbone, tmp_path / f"alone-{clip.id}")
        assert alone[clip.id].tobytes() == together[clip.id].tobytes()
        assert reordered[clip.id].tobytes() == together[clip.id].tobytes()


def _padded_fixed_shape(backbone, inputs, batch_size):
    """The batching this project used before: all clips' examples grouped by shape, zero-padded batches."""
    examples = [x for clip in inputs for x in clip]
    out = {name: np.zeros((len(examples), dim), np.float32) for name, dim in backbone.outputs.items()}
    groups = {}
    for i, x in enumerate(examples):
        groups.setdefault(x.shape, []).append(i)
    for indices in groups.values():
        for start in range(0, len(indices), batch_size):
            idx = indices[start:start + batch_size]
            batch = np.zeros((batch_size, *examples[idx[0]].shape), np.float32)
            batch[:len(idx)] = [examples[i] for i in idx]
            for name, values in backbone.embed(batch).items():
                out[name][idx] = values[:len(idx)]
    return out


@pytest.mark.parametrize("protocol", [VGGISH_AUDIOLDM, PANNS_16K_AUDIOLDM], ids=lambda p: p.id)
def test_values_match_the_padded_fixed_shape_batching(mixed, protocol):
    backbone = load_backbone(protocol.backbone, WEIGHTS)
    clips = mixed.clips[:5] if protocol is PANNS_16K_AUDIOLDM else mixed.clips
    inputs = [protocol.prepare(*mixed.load(c)) for c in clips]
    new = embed_examples(backbone, inputs, 3)
    old = _padded_fixed_shape(backbone, inputs, 3)
    for name in backbone.outputs:
        scale = np.abs(old[name]).max()
        assert scale > 0 and np.abs(new[name] - old[name]).max() <= 1e-5 * scale


def test_clip_batches_groups_shapes_in_order():
    a, b = np.zeros(5, np.float32), np.zeros(3, np.float32)
    assert clip_batches([a, a, b, a, a, a, b], 2) == [[0, 1], [3, 4], [5], [2, 6]]
    assert clip_batches([a, a.astype(np.float64)], 4) == [[0], [1]]  # dtypes are not mixed either
    assert clip_batches([], 4) == []


def test_device_tensor_path_equals_the_host_path(mixed):
    """Backbones with embed_tensors keep outputs on their device until the chunk ends (bench.scoring
    _ClipOutputs.host); on CPU the same code path runs and must give the same bytes as embed()."""
    for protocol in (VGGISH_AUDIOLDM, PANNS_16K_AUDIOLDM):
        backbone = load_backbone(protocol.backbone, WEIGHTS)
        assert backbone.embed_tensors is not None
        host_only = dataclasses.replace(backbone, embed_tensors=None)
        examples = protocol.prepare(*mixed.load(mixed.clips[4]))
        via_tensors, via_numpy = embed_clip(backbone, examples, 2), embed_clip(host_only, examples, 2)
        for name in backbone.outputs:
            assert via_tensors[name].tobytes() == via_numpy[name].tobytes()


def test_outputs_come_back_in_example_order_across_shape_groups():
    import torch

    from metrics.backbones.base import Backbone

    def sums(batch):
        return {"sum": torch.from_numpy(batch.reshape(len(batch), -1).sum(1, keepdims=True))}

    fake = Backbone("fake", {"sum": 1}, {"weights": "untrained"}, embed=None, embed_tensors=sums)
    examples = [np.full(n, float(i), np.float32) for i, n in enumerate([3, 5, 3, 5, 5, 3])]
    out = embed_clip(fake, examples, 2)["sum"][:, 0]
    assert out.tolist() == [i * len(x) for i, x in enumerate(examples)]
    assert embed_clip(fake, [], 2)["sum"].shape == (0, 1)


def test_every_long_step_reports_progress(mixed, tmp_path, capsys):
    from bench.scoring import score

    opts = ScoreOptions(weights=WEIGHTS, cache_root=tmp_path, batch_size=4, bootstrap=5, progress=True)
    score(["fad-vggish@audioldm"], mixed, mixed, opts)
    err = capsys.readouterr().err
    assert "fad-vggish@audioldm: loading backbone vggish" in err
    assert "fad-vggish@audioldm: computing (bootstrap 5 resamples)" in err
    assert "vggish@audioldm generated" in err and f"{len(mixed)}/{len(mixed)}" in err
