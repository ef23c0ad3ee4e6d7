"""Batching (bench.batching): an example's outputs are the bits it gives alone, whatever set, order,
chunking or batch size it is scored with; batches span clips, hold no padding, and a kind of batch that
would change bits runs one example at a time; values agree with the old fixed-shape padded batching."""
import dataclasses
import math

import numpy as np
import pytest

from bench.core.clipsets import ClipSet, load_directory
from bench import batching
from bench.batching import batch_rows, embed_clip, plan_batches, run_batches
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


@pytest.fixture(scope="module")
def equal(tmp_path_factory):
    """Five clips of one length, rate and channel count, and two of another."""
    rng = np.random.default_rng(3)
    clips = {f"eq{i}": ((0.1 * rng.standard_normal((1, 32000))).astype(np.float32), 16000) for i in range(5)}
    clips.update({f"odd{i}": ((0.1 * rng.standard_normal((2, 9000))).astype(np.float32), 22050) for i in range(2)})
    return load_directory(write_clips(tmp_path_factory.mktemp("equal"), clips))


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


def _embed(clipset, backbone, root, batch_size=4, chunk_clips=None, protocol=VGGISH_AUDIOLDM):
    opts = ScoreOptions(weights=WEIGHTS, cache_root=root, batch_size=batch_size, chunk_clips=chunk_clips,
                        progress=False)
    emb = embed_set(clipset, protocol, backbone, opts)
    return dict(zip(emb.clip_ids, emb.per_clip()))


def _subset(clipset, clips):
    return ClipSet(clipset.name, clipset.kind, clipset.source, clips)


@pytest.fixture(autouse=True)
def fresh_checks(monkeypatch):
    """Every test starts with no kind of batch checked yet (the checks are remembered per process)."""
    monkeypatch.setattr(batching, "_BATCH_GIVES_ALONE", {})


def test_examples_batch_across_clips_without_padding(mixed, tmp_path):
    counting = Counting(load_backbone("vggish", WEIGHTS))
    out = _embed(mixed, counting.backbone, tmp_path, batch_size=8, chunk_clips=len(mixed))
    counts = [len(out[c.id]) for c in mixed.clips]
    # vggish@audioldm: clips padded to 2 s, then one example per 0.96 s.
    assert counts == [max(2, int(d * 100 // 96)) for d, _, _ in LAYOUT]
    checks = len(batching._BATCH_GIVES_ALONE)  # one example alone per kind of batch checked
    assert checks >= 2 and all(batching._BATCH_GIVES_ALONE.values())  # one shape: 2 rows (probe), 6, 8, ...
    assert sum(shape[0] for shape in counting.shapes) == sum(counts) + checks  # not one padded example
    # batches span clips; the first batch of 8 ran as 2 (the probe) + 6
    assert len(counting.shapes) == math.ceil(sum(counts) / 8) + 1 + checks


@pytest.mark.parametrize("name,shape,rows", [("vggish", (1, 96, 64), (2, 3, 5, 8, 13)),
                                             ("panns-cnn14-16k", (64000,), (2, 3))])
def test_batched_outputs_are_the_outputs_alone(name, shape, rows):
    """What batching relies on for speed (bench.batching): with 2-d linear layers in fixed blocks, these
    backbones give an example the same bits in a batch of any size as alone (4 s Cnn14 inputs)."""
    backbone = load_backbone(name, WEIGHTS)
    x = (0.1 * np.random.default_rng(5).standard_normal((max(rows), *shape))).astype(np.float32)
    alone = [backbone.embed(x[i:i + 1]) for i in range(max(rows))]
    for n in rows:
        batched = backbone.embed(x[:n])
        for out in backbone.outputs:
            assert all(batched[out][i].tobytes() == alone[i][out][0].tobytes() for i in range(n)), (n, out)


def test_blocked_linear_rows_give_each_row_its_bits_alone():
    import torch
    from torch import nn

    from metrics.backbones.blocked_linear import block_linear_rows

    torch.manual_seed(0)
    layer = block_linear_rows(nn.Linear(512, 96))
    x = torch.randn(19, 512)
    with torch.inference_mode():
        alone = [layer(x[i:i + 1]) for i in range(19)]
        for n in (1, 2, 7, 8, 9, 19):
            assert all(torch.equal(layer(x[:n])[i], alone[i][0]) for i in range(n)), n
        assert layer(x[None]).shape == (1, 19, 96)  # inputs with more dimensions run as they are


def _batch_variant_backbone(calls):
    """A backbone whose outputs move with the number of rows of its batch, as BLAS kernels can."""
    from metrics.backbones.base import Backbone

    def embed(batch):
        calls.append(len(batch))
        return {"sum": batch.reshape(len(batch), -1).sum(1, keepdims=True) + np.float32(1e-3 * (len(batch) > 1))}

    return Backbone("variant", {"sum": 1}, {"weights": "untrained", "seed": 0, "init": "test"}, embed=embed)


def test_a_kind_of_batch_that_changes_bits_runs_one_example_at_a_time(capsys):
    calls = []
    backbone = _batch_variant_backbone(calls)
    examples = [np.full(4, float(i), np.float32) for i in range(7)]
    out = embed_clip(backbone, examples, 5)["sum"][:, 0]
    assert out.tolist() == [4.0 * i for i in range(7)]  # each example's value alone
    assert "gives other last bits than each example alone" in capsys.readouterr().err
    # a new shape in a batch of 5: its first 2 rows as a batch (the probe), the second alone (checked,
    # kept), the first alone; the shape is then known to fail: the other 3 and the next batch's 2 run alone
    assert calls == [2, 1, 1, 1, 1, 1, 1, 1]
    calls.clear()
    assert embed_clip(backbone, examples, 5)["sum"][:, 0].tolist() == out.tolist()
    assert calls == [1] * 7 and capsys.readouterr().err == ""  # remembered: no batch is tried again
    calls.clear()
    batching._BATCH_GIVES_ALONE.clear()
    embed_clip(backbone, examples[:4], 4)  # a batch of 4: no probe, the whole batch is the check
    assert calls == [4, 1, 1, 1, 1]


def test_an_embedding_does_not_depend_on_its_set_order_chunking_or_batch_size(mixed, equal, tmp_path):
    backbone = load_backbone("vggish", WEIGHTS)
    together = _embed(mixed, backbone, tmp_path / "all", batch_size=8, chunk_clips=len(mixed))
    shuffled = _subset(mixed, [mixed.clips[i] for i in np.random.default_rng(1).permutation(len(mixed))])
    reordered = _embed(shuffled, backbone, tmp_path / "shuffled", batch_size=3, chunk_clips=2)
    for clip in mixed.clips[:4]:
        alone = _embed(_subset(mixed, [clip]), backbone, tmp_path / f"alone-{clip.id}", batch_size=1)
        assert alone[clip.id].tobytes() == together[clip.id].tobytes() == reordered[clip.id].tobytes()
    panns = load_backbone("panns-cnn14-16k", WEIGHTS)  # five clips of one length: batched together
    five = _embed(equal, panns, tmp_path / "five", batch_size=8, protocol=PANNS_16K_AUDIOLDM)
    clip = equal.clips[2]
    alone = _embed(_subset(equal, [clip]), panns, tmp_path / "one", batch_size=8, protocol=PANNS_16K_AUDIOLDM)
    assert five[clip.id].tobytes() == alone[clip.id].tobytes()


def test_the_batch_size_is_not_part_of_the_cache_key(mixed, tmp_path):
    backbone = load_backbone("vggish", WEIGHTS)
    first = _embed(mixed, backbone, tmp_path, batch_size=4)
    counting = Counting(backbone)
    again = _embed(_subset(mixed, mixed.clips[:3]), counting.backbone, tmp_path, batch_size=2)
    assert counting.shapes == []  # every clip from the cache
    assert all(again[c.id].tobytes() == first[c.id].tobytes() for c in mixed.clips[:3])


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
    new = {name: np.concatenate([o[name] for o in run_batches(backbone, inputs, 3).host(backbone.outputs)])
           for name in backbone.outputs}
    old = _padded_fixed_shape(backbone, inputs, 3)
    for name in backbone.outputs:
        scale = np.abs(old[name]).max()
        assert scale > 0 and np.abs(new[name] - old[name]).max() <= 1e-5 * scale


def test_plan_batches_group_shapes_clip_after_clip():
    a, b = np.zeros(5, np.float32), np.zeros(3, np.float32)
    assert plan_batches([[a, a, b, a, a, a, b]], 2, "cpu") == [[(0, 0), (0, 1)], [(0, 3), (0, 4)], [(0, 5)],
                                                        [(0, 2), (0, 6)]]
    assert plan_batches([[a, b], [a, b], [a, b]], 2, "cpu") == [[(0, 0), (1, 0)], [(2, 0)], [(0, 1), (1, 1)], [(2, 1)]]
    assert plan_batches([[a, a.astype(np.float64)]], 4, "cpu") == [[(0, 0)], [(0, 1)]]  # dtypes are not mixed either
    assert plan_batches([[a, a], [a]], 4, "cpu") == [[(0, 0), (0, 1), (1, 0)]]
    assert plan_batches([[]], 4, "cpu") == []


def test_run_batches_runs_the_planned_batches_as_clips_arrive():
    from metrics.backbones.base import Backbone

    ran = []

    def embed(batch):
        ids = [tuple(row[:2].astype(int)) for row in batch]  # each example holds its (clip, index)
        if not (len(ids) == 1 and ran and ran[-1][-1] == ids[0]):  # not the once-per-kind check
            ran.append(ids)
        return {"v": batch[:, :1]}

    backbone = Backbone("ids", {"v": 1}, {"weights": "untrained", "seed": 0, "init": "test"}, embed=embed)
    sizes = [(3, 5), (1, 5), (2, 3), (4, 5)]  # per clip: examples, length
    per_clip = [[np.array([c, i, 0, 0, 0][:n], np.float32) for i in range(k)] for c, (k, n) in enumerate(sizes)]
    first_batch_after = []

    def arriving():
        for examples in per_clip:
            first_batch_after.append(len(ran))
            yield examples

    out = run_batches(backbone, arriving(), 2).host(backbone.outputs)
    assert sorted(ran) == sorted([[(c, i) for c, i in b] for b in plan_batches(per_clip, 2, backbone.device)])
    assert first_batch_after == [0, 1, 2, 3]  # a full batch runs before the next clip is prepared
    assert [o["v"][:, 0].tolist() for o in out] == [[c] * k for c, (k, _) in enumerate(sizes)]


def test_partial_batches_run_once_they_hold_too_many_values(monkeypatch):
    from metrics.backbones.base import Backbone

    monkeypatch.setattr(batching, "MAX_BATCH_VALUES", 20)
    ran = []
    backbone = Backbone("lengths", {"n": 1}, {"weights": "untrained", "seed": 0, "init": "test"},
                        embed=lambda b: ran.append(b.shape[1]) or {"n": np.full((len(b), 1), b.shape[1], np.float32)})
    runs_before = []

    def arriving():  # clips of distinct lengths, one example each (none fills a batch)
        for n in (4, 5, 6, 7, 8):
            runs_before.append(len(ran))
            yield [np.zeros(n, np.float32)]

    out = run_batches(backbone, arriving(), 8).host(backbone.outputs)
    assert runs_before == [0, 0, 0, 0, 1]  # 4 + 5 + 6 + 7 values held > 20: the oldest ran
    assert ran == [4, 5, 6, 7, 8] and [o["n"][0, 0] for o in out] == [4, 5, 6, 7, 8]


def test_large_examples_batch_in_fewer_rows():
    assert batch_rows((96, 64), 32, "cpu") == 32  # VGGish examples: batch_size
    assert batch_rows((160000,), 32, "cpu") == batching.MAX_BATCH_VALUES // 160000 == 2  # 10 s at 16 kHz
    assert batch_rows((10 ** 7,), 32, "cpu") == 1 and batch_rows((16000,), 3, "cpu") == 3
    # an accelerator batches batch_size rows of 10 s inputs, 5 of a minute at 16 kHz
    assert batch_rows((160000,), 32, "cuda") == batch_rows((160000,), 32, "cuda:1") == 32
    assert batch_rows((160000,), 8, "mps") == 8 and batch_rows((960_000,), 32, "cuda") == 5
    assert batch_rows((10 ** 8,), 32, "cuda") == 1


def test_run_batches_batches_by_the_backbones_device(monkeypatch):
    from metrics.backbones.base import Backbone

    # six 10 s inputs at batch size 8: on the CPU 2 rows at a time; on a GPU one batch (after a 2-row probe)
    for device, expected in (("cpu", [2, 2, 2]), ("cuda", [2, 4])):
        rows = []
        backbone = Backbone("rows", {"v": 1}, {"weights": "untrained", "seed": 0, "init": "test"}, device=device,
                            embed=lambda b: rows.append(len(b)) or {"v": b[:, :1]})
        monkeypatch.setattr(batching, "_BATCH_GIVES_ALONE", {})
        out = run_batches(backbone, [[np.full(160000, c, np.float32)] for c in range(6)], 8).host(backbone.outputs)
        assert [r for r in rows if r > 1] == expected  # rows of 1: the once-per-kind check
        assert [o["v"][0, 0] for o in out] == list(range(6))


def test_device_tensor_path_equals_the_host_path(mixed):
    """Backbones with embed_tensors keep outputs on their device until the chunk ends (bench.batching
    BatchOutputs.host); on CPU the same code path runs and must give the same bytes as embed()."""
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

    fake = Backbone("fake", {"sum": 1}, {"weights": "untrained", "seed": 0, "init": "test"}, embed=None,
                    embed_tensors=sums)
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
