"""Batching (bench.batching): no padding; clips of one signature batch together in pieces; a clip's outputs
are bitwise the same whatever order or chunking its set is scored in, and depend on its set only through its
piece's size and its place (both in its cache key); values agree with the old fixed-shape padded batching."""
import dataclasses
import math

import numpy as np
import pytest

from bench.core.errors import BenchError

from bench.core.clipsets import ClipSet, load_directory
from bench import batching
from bench.batching import batch_rows, embed_clip, embed_examples, piece_batches, run_piece
from bench.scoring import embed_set
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


def _embed(clipset, backbone, root, batch_size=4, chunk_clips=None, protocol=VGGISH_AUDIOLDM, piece_clips=1):
    opts = ScoreOptions(weights=WEIGHTS, cache_root=root, batch_size=batch_size, chunk_clips=chunk_clips,
                        piece_clips=piece_clips, progress=False)
    emb = embed_set(clipset, protocol, backbone, opts)
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


@pytest.fixture(scope="module")
def equal(tmp_path_factory):
    """Five clips of one length, rate and channel count, and two of another."""
    rng = np.random.default_rng(3)
    clips = {f"eq{i}": ((0.1 * rng.standard_normal((1, 32000))).astype(np.float32), 16000) for i in range(5)}
    clips.update({f"odd{i}": ((0.1 * rng.standard_normal((2, 9000))).astype(np.float32), 22050) for i in range(2)})
    return load_directory(write_clips(tmp_path_factory.mktemp("equal"), clips))


def test_clips_of_one_signature_batch_together_in_pieces(equal, tmp_path):
    pieces = batching.plan_pieces(equal, equal.clips, PANNS_16K_AUDIOLDM, 3)
    hashes = {c.id: equal.clip_hash(c) for c in equal.clips}
    assert [len(p) for p in pieces] == [3, 2, 2]  # 5 clips of one signature, then the 2 others
    eq_order = [c.id for p in pieces[:2] for c in p]
    assert eq_order == sorted(eq_order, key=lambda i: hashes[i])  # content order, not set order
    counting = Counting(load_backbone("panns-cnn14-16k", WEIGHTS))
    out = _embed(equal, counting.backbone, tmp_path, batch_size=3, protocol=PANNS_16K_AUDIOLDM, piece_clips=3)
    assert sorted(shape[0] for shape in counting.shapes) == [2, 2, 3]  # one forward per piece
    for clip in (pieces[0][0], pieces[1][1]):  # the same values as alone, to float tolerance
        alone = _embed(_subset(equal, [clip]), counting.backbone, tmp_path / clip.id, 3, protocol=PANNS_16K_AUDIOLDM)
        scale = np.abs(alone[clip.id]).max()
        assert np.abs(out[clip.id] - alone[clip.id]).max() <= 1e-5 * scale


def test_pieces_reproduce_bitwise_whatever_order_or_chunking(equal, tmp_path):
    backbone = load_backbone("vggish", WEIGHTS)
    together = _embed(equal, backbone, tmp_path / "all", batch_size=3, piece_clips=3)
    shuffled = _subset(equal, [equal.clips[i] for i in np.random.default_rng(2).permutation(len(equal))])
    for name, chunk in (("chunk1", 1),):
        again = _embed(shuffled, backbone, tmp_path / name, batch_size=3, chunk_clips=chunk, piece_clips=3)
        assert all(again[c.id].tobytes() == together[c.id].tobytes() for c in equal.clips)


@pytest.mark.parametrize("name,shape", [("vggish", (1, 96, 64)), ("panns-cnn14-16k", (40000,))])
def test_an_examples_output_depends_on_its_batch_shape_only(name, shape):
    """What per-piece batching relies on: with the rows of a batch fixed, another row or other
    companions leave an example's output bit for bit the same."""
    backbone = load_backbone(name, WEIGHTS)
    x = (0.1 * np.random.default_rng(5).standard_normal((5, *shape))).astype(np.float32)
    first = run_piece(backbone, [[x[0]], [x[1]], [x[2]]], 3).host(backbone.outputs)
    moved = run_piece(backbone, [[x[3]], [x[1]], [x[0]]], 3).host(backbone.outputs)
    other = run_piece(backbone, [[x[4]], [x[0]], [x[3]]], 3).host(backbone.outputs)
    for out in backbone.outputs:
        assert first[0][out].tobytes() == moved[2][out].tobytes() == other[1][out].tobytes()


def test_clips_of_one_signature_give_one_example_layout_in_every_protocol():
    """The premise of per-signature pieces: a protocol's example shapes follow from length, rate and
    channel count, not from content (silence, noise, a tone)."""
    from metrics.registry import all_metrics

    protocols = {m.protocol.id: m.protocol for m in all_metrics().values() if m.protocol.resampler != "none"}
    assert len(protocols) >= 8
    rng = np.random.default_rng(0)
    for protocol in protocols.values():
        for frames, rate, channels in ((7000, 16000, 1), (50000, 22050, 2), (330000, 32000, 1)):  # < 1 s, 2 s, 10.3 s
            t = np.arange(frames) / rate
            waves = [np.zeros((channels, frames), np.float32),
                     (0.3 * rng.standard_normal((channels, frames))
                      + np.sin(2 * np.pi * 440 * t)).astype(np.float32)]
            layouts = {tuple(np.shape(x) for x in protocol.prepare(w, rate)) for w in waves}
            assert len(layouts) == 1, protocol.id


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


def test_piece_batches_group_shapes_clip_after_clip():
    a, b = np.zeros(5, np.float32), np.zeros(3, np.float32)
    assert piece_batches([[a, a, b, a, a, a, b]], 2) == [[(0, 0), (0, 1)], [(0, 3), (0, 4)], [(0, 5)],
                                                         [(0, 2), (0, 6)]]
    assert piece_batches([[a, b], [a, b], [a, b]], 2) == [[(0, 0), (1, 0)], [(2, 0)], [(0, 1), (1, 1)], [(2, 1)]]
    assert piece_batches([[a, a.astype(np.float64)]], 4) == [[(0, 0)], [(0, 1)]]  # dtypes are not mixed either
    assert piece_batches([[]], 4) == []
    with pytest.raises(BenchError, match="different example shapes"):
        piece_batches([[a, a], [a]], 4)


def test_large_examples_batch_in_fewer_rows():
    assert batch_rows((96, 64), 32) == 32  # VGGish examples: batch_size
    assert batch_rows((160000,), 32) == batching.MAX_BATCH_VALUES // 160000 == 8  # 10 s at 16 kHz
    assert batch_rows((10 ** 7,), 32) == 1 and batch_rows((16000,), 3) == 3


def test_device_tensor_path_equals_the_host_path(mixed):
    """Backbones with embed_tensors keep outputs on their device until the chunk ends (bench.batching
    PieceOutputs.host); on CPU the same code path runs and must give the same bytes as embed()."""
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


def test_by_default_an_embedding_does_not_depend_on_the_rest_of_its_set(equal, tmp_path):
    """piece_clips = 1 (the default): every clip runs alone, so a clip scored in a set of five clips of
    its length has the bytes it has when scored alone."""
    backbone = load_backbone("panns-cnn14-16k", WEIGHTS)
    together = _embed(equal, backbone, tmp_path / "all", batch_size=3, protocol=PANNS_16K_AUDIOLDM)
    clip = equal.clips[2]
    alone = _embed(_subset(equal, [clip]), backbone, tmp_path / "alone", batch_size=3, protocol=PANNS_16K_AUDIOLDM)
    assert together[clip.id].tobytes() == alone[clip.id].tobytes()
