"""CLAP score: parity with laion-clap's own model on identical seeded weights, each preset's published
preprocessing, the metric kernel, provenance and bad input.

The references are laion-clap's `CLAP` class built offline. Its text branch comes from
`RobertaModel.from_pretrained('roberta-base')`, which the test answers with one full-size roberta-base
built from its config with seeded weights, shared by every reference model (building and filling 125M
parameters once keeps the module fast). Each reference's state dict is saved the way LAION's training
saves it, where our loader expects a checkpoint, and the reference numbers come from laion-clap's own
functions (and julius / librosa / torchaudio where a toolkit uses them) following each toolkit's code.
The roberta-base tokenizer comes from a temporary Hugging Face cache holding a vocabulary of the real
size (50265 tokens) with a few merges.
"""
import copy
import dataclasses
import functools
import json
import socket
import types

import numpy as np
import pytest
import torch

from bench.core import weights
from bench.benchmarks.stand_in_tokenizer import write_roberta_tokenizer
from bench.core.clipsets import load_manifest
from bench.core.errors import AudioError, BenchError, CheckpointError, ConfigError
from metrics.inputs import ScoreOptions, SetEmbeddings
from bench.scoring import embed_captions, embed_set, score
from metrics import clap_metrics
from metrics.backbones import base, clap
from metrics.backbones.base import WeightsChoice, load_backbone
from tests.conftest import write_clips

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning", "ignore::FutureWarning")


# ---- fixtures: tokenizer cache, reference models, clip sets -----------------------------------------
@pytest.fixture(scope="module")
def hf_cache(tmp_path_factory):
    import huggingface_hub.constants as hub

    root = tmp_path_factory.mktemp("hf-hub")
    write_roberta_tokenizer(root)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(hub, "HF_HUB_CACHE", str(root))
        yield root
    for key in [k for k in base._LOADED if k[0].startswith("clap-")]:  # free the GBs of weights
        del base._LOADED[key]


def _fill_(tensors: dict, seed: int) -> None:
    """Seeded weights for every learned tensor; norms and batch-norm statistics random too, so that a
    swapped or dropped normalisation layer would show. Index buffers, masks and log-mel constants stay."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for key, t in tensors.items():
            if (key in clap._FRONTEND or not t.is_floating_point() or key.endswith("attn_mask")
                    or "relative_position_index" in key):
                continue
            if key.endswith("running_var"):
                t.uniform_(0.5, 1.5, generator=g)
            elif t.ndim == 1 and key.endswith("weight"):
                t.uniform_(0.8, 1.2, generator=g)
            else:
                t.uniform_(-0.08, 0.08, generator=g)


@pytest.fixture(scope="module")
def laion(hf_cache):
    """spec -> (laion-clap CLAP model with seeded weights, its model config), built once per architecture."""
    clap.import_transformers_clap()
    import laion_clap.clap_module.htsat as laion_htsat
    import laion_clap.clap_module.model as laion_model
    from laion_clap.clap_module.factory import _MODEL_CONFIGS
    from transformers import RobertaConfig, RobertaModel
    from transformers.initialization import no_init_weights

    with no_init_weights():  # every weight is filled below
        roberta = RobertaModel(RobertaConfig(vocab_size=50265, hidden_size=768, num_hidden_layers=12,
                                             num_attention_heads=12, intermediate_size=3072,
                                             max_position_embeddings=514, type_vocab_size=1, layer_norm_eps=1e-5,
                                             pad_token_id=1, bos_token_id=0, eos_token_id=2))
    _fill_(roberta.state_dict(), seed=1)
    built = {}

    def reference(spec):
        arch = (spec.audio_model, spec.fusion)
        if arch not in built:
            cfg = copy.deepcopy(_MODEL_CONFIGS[spec.audio_model])
            cfg["text_cfg"]["model_type"] = "roberta"
            with pytest.MonkeyPatch.context() as mp:
                mp.setattr(laion_model, "RobertaModel",
                           types.SimpleNamespace(from_pretrained=lambda name: roberta))
                mp.setattr(laion_htsat, "trunc_normal_", lambda tensor, **kw: tensor)  # slow, and refilled
                model = laion_model.CLAP(**cfg, enable_fusion=spec.fusion,
                                         fusion_type="aff_2d" if spec.fusion else "None").eval()
            _fill_({k: v for k, v in model.state_dict().items() if not k.startswith("text_branch.")},
                   seed=len(built) + 2)
            built[arch] = (model, cfg)
        return built[arch]

    return reference


def save_laion_checkpoint(model, path):
    """As LAION's training saves it: DataParallel-prefixed keys, numpy scalars beside the state dict,
    and the position_ids buffer older transformers kept."""
    state = {f"module.{k}": v for k, v in model.state_dict().items()}
    state["module.text_branch.embeddings.position_ids"] = torch.arange(514)[None]
    torch.save({"epoch": 15, "name": "seeded-test-model", "state_dict": state,
                "optimizer": {"state": {}, "param_groups": [{"lr": 1e-4}]}, "val_metric": np.float64(0.9014)},
               path)
    return path


def _tone(rate, seconds, freq, channels=1, seed=0):
    t = np.arange(int(rate * seconds)) / rate
    rng = np.random.default_rng(seed)
    x = 0.3 * np.sin(2 * np.pi * freq * t) * (1 + 0.5 * np.sin(2 * np.pi * 3 * t))
    x = x + 0.05 * rng.standard_normal(len(t))
    return np.tile(x, (channels, 1)).astype(np.float32) * np.linspace(1, 0.7, channels)[:, None].astype(np.float32)


def clip_set(directory, clips: dict, captions: dict):
    """{id: (wave, rate)} + {id: caption or None} -> manifest ClipSet."""
    write_clips(directory, clips)
    rows = [{"id": i, "path": f"{i}.wav", **({"caption": captions[i]} if captions.get(i) else {})} for i in clips]
    (directory / "set.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return load_manifest(directory / "set.jsonl")


def _options(choice, cache_dir, batch_size=2, bootstrap=20):
    return ScoreOptions(weights=choice, cache_root=cache_dir, batch_size=batch_size, bootstrap=bootstrap,
                        progress=False)


def _namespace(model, cfg, fusion, tokenizer):
    """What laion_clap.CLAP_Module's methods read from `self`."""
    from laion_clap.hook import CLAP_Module

    ns = types.SimpleNamespace(model=model, model_cfg=cfg, enable_fusion=fusion, tokenize=tokenizer)
    ns.tokenizer = functools.partial(CLAP_Module.tokenizer, ns)
    return ns


def _roberta():
    from transformers import RobertaTokenizer

    return RobertaTokenizer.from_pretrained("roberta-base")  # what CLAP_Module.__init__ loads


def _cosine(a, t):
    return torch.nn.functional.cosine_similarity(torch.as_tensor(a), torch.as_tensor(t), dim=1, eps=1e-8).numpy()


def _assert_matches(result, clip_ids, expected_cosines, atol=1e-6):
    got = {c["id"]: c["value"] for c in result["per_clip"]}
    np.testing.assert_allclose([got[i] for i in clip_ids], expected_cosines, rtol=0, atol=atol)
    assert result["value"] == pytest.approx(float(np.mean(expected_cosines)), abs=atol)


CAPTIONS = {"dog": "a dog barks twice", "rain": "rain on a tin roof", "long": "a dog in the rain",
            "music": "a slow piano melody"}


# ---- parity: our pipeline vs laion-clap's forward on identical weights ---------------------------
# clap@srcgaudio is clap@general's inference with the checkpoint SRC-gAudio names (630k-best.pt).
@pytest.mark.parametrize("metric, backbone, filename", [
    ("clap@general", "clap-630k-audioset", "630k-audioset-best.pt"),
    ("clap@srcgaudio", "clap-630k", "630k-best.pt")])
def test_general_end_to_end_matches_laion_clap(metric, backbone, filename, laion, hf_cache, tmp_path, cache_dir,
                                               monkeypatch):
    from laion_clap.hook import CLAP_Module

    spec = clap.SPECS[backbone]
    assert spec.filename == filename and weights.KNOWN_WEIGHTS[spec.weights].url.endswith("/" + filename)
    model, cfg = laion(spec)
    # The checkpoint goes where the loader looks for it, with its hash "published".
    (cache_dir / "weights").mkdir(parents=True)
    path = save_laion_checkpoint(model, cache_dir / "weights" / spec.filename)
    digest = weights.sha256_file(path)
    monkeypatch.setitem(weights.KNOWN_WEIGHTS, spec.weights,
                        dataclasses.replace(weights.KNOWN_WEIGHTS[spec.weights], sha256=digest))
    clips = {"dog": (_tone(48000, 3.0, 440), 48000), "rain": (_tone(44100, 2.5, 1200, channels=2, seed=1), 44100)}
    gen = clip_set(tmp_path / "gen", clips, CAPTIONS)
    choice = WeightsChoice(cache_root=cache_dir)
    [res] = score([metric], gen, None, _options(choice, cache_dir))

    assert res["key"] == metric and not res["untrained"] and res["kind"] == "text-audio"
    assert res["backbone"]["sha256"] == digest and res["backbone"]["source"] == "cache"
    assert res["backbone"]["file"] == filename
    assert res["backbone"]["tokenizer"]["vocab_size"] == 50265
    assert any("middle 10 s" in s for s in res["protocol"]["steps"])
    assert res["protocol"]["resampler"]["name"] == "soxr-hq"
    assert res["ci"]["low"] <= res["value"] <= res["ci"]["high"]

    # Reference: laion-clap's own file-list inference (librosa.load at 48 kHz, int16 round trip,
    # repeat-pad) and text embedding (its 77-token tokenizer call) on the same weights.
    ns = _namespace(model, cfg, False, _roberta())
    ids = list(clips)
    audio_ref = CLAP_Module.get_audio_embedding_from_filelist(ns, [str(tmp_path / "gen" / f"{i}.wav") for i in ids])
    text_ref = CLAP_Module.get_text_embedding(ns, [CAPTIONS[i] for i in ids])
    _assert_matches(res, ids, _cosine(audio_ref, text_ref))

    # The embeddings themselves, as the score computed them (read back from the embedding caches).
    backbone, options = load_backbone(spec.backbone, choice), _options(choice, cache_dir)
    protocol = {"clap@general": clap_metrics.CLAP_GENERAL, "clap@srcgaudio": clap_metrics.CLAP_SRCGAUDIO}[metric]
    emb = embed_set(gen, protocol, backbone, options)
    np.testing.assert_allclose(np.concatenate(emb.per_clip()), audio_ref, rtol=0, atol=1e-6)
    np.testing.assert_allclose(embed_captions(emb, protocol, backbone, options), text_ref,
                               rtol=0, atol=1e-6)


def test_stableaudio_fusion_matches_stable_audio_metrics(laion, hf_cache, tmp_path, cache_dir, monkeypatch):
    import librosa
    from laion_clap.hook import CLAP_Module
    from laion_clap.training import data as laion_data

    spec = clap.SPECS["clap-630k-audioset-fusion"]
    model, cfg = laion(spec)
    path = save_laion_checkpoint(model, tmp_path / "fusion.pt")
    # 12.5 s (over 10 s: the fusion input with three chunks) and a 4 s stereo clip (repeat-padded).
    clips = {"long": (_tone(44100, 12.5, 300, seed=2), 44100), "music": (_tone(48000, 4.0, 660, 2, seed=3), 48000)}
    gen = clip_set(tmp_path / "gen", clips, CAPTIONS)
    choice = WeightsChoice(local_files=((spec.weights, str(path)),), cache_root=cache_dir)
    [res] = score(["clap@stableaudio"], gen, None, _options(choice, cache_dir))
    assert res["backbone"]["source"] == "local file" and res["backbone"]["fusion"] is True

    # Reference: stable-audio-metrics' clap_score steps, LAION's fusion features (torchaudio mel,
    # torchvision resize), with LAION's random chunk starts replaced by the middle of each range.
    monkeypatch.setattr(np.random, "choice", lambda r: np.asarray(r)[len(r) // 2])
    ns = _namespace(model, cfg, True, _roberta())
    ids = list(clips)
    waves = []
    for i in ids:
        y, _ = librosa.load(tmp_path / "gen" / f"{i}.wav", sr=48000, mono=True)
        y = y * (np.power(10.0, -1.0 / 20.0) / np.max(np.abs(y)))  # pyloudnorm.normalize.peak(y, -1.0)
        waves.append(torch.from_numpy(laion_data.int16_to_float32(laion_data.float32_to_int16(y))))
    audio_ref = CLAP_Module.get_audio_embedding_from_data(ns, waves, use_tensor=True).detach().numpy()
    text_ref = CLAP_Module.get_text_embedding(ns, [CAPTIONS[i] for i in ids])
    _assert_matches(res, ids, _cosine(audio_ref, text_ref))

    long_48k = librosa.load(tmp_path / "gen" / "long.wav", sr=48000)[0]
    ours = clap.fusion_example(long_48k)
    theirs = laion_data.get_audio_features({}, torch.from_numpy(long_48k), clap.CLIP_SAMPLES, "fusion",
                                           "repeatpad", cfg["audio_cfg"])
    assert ours["longer"][0] and bool(theirs["longer"])
    np.testing.assert_allclose(ours["mel"][0], theirs["mel_fusion"].numpy(), rtol=0, atol=5e-4)  # dB


def test_audiocraft_and_audioldm2_match_their_toolkits(laion, hf_cache, tmp_path, cache_dir, monkeypatch):
    import julius
    import torchaudio.functional
    from laion_clap.hook import CLAP_Module

    spec = clap.SPECS["clap-music-audioset"]
    model, cfg = laion(spec)
    # HTSAT-base: the checkpoint file path is covered above; here its state goes straight to our loader.
    state = {k: v for k, v in model.state_dict().items()}
    monkeypatch.setattr(clap, "read_checkpoint", lambda path, spec: state)
    stand_in = tmp_path / "stand-in.pt"
    stand_in.write_bytes(b"read_checkpoint is patched")
    choice = WeightsChoice(local_files=(("clap-music-audioset", str(stand_in)),
                                        ("clap-music-speech-audioset", str(stand_in))), cache_root=cache_dir)
    tokenizer = _roberta()
    ns = _namespace(model, cfg, False, tokenizer)

    # audiocraft: julius to 48 kHz, mean of channels, tensors straight in (no int16), 77 tokens.
    craft = {"music": (_tone(32000, 5.0, 220, channels=2, seed=4), 32000)}
    [res] = score(["clap@audiocraft"], clip_set(tmp_path / "craft", craft, CAPTIONS), None,
                  _options(choice, cache_dir, batch_size=1))
    converted = [julius.resample_frac(torch.from_numpy(w)[None], 32000, 48000).mean(dim=1)[0]
                 for w, _ in craft.values()]
    audio_ref = CLAP_Module.get_audio_embedding_from_data(ns, converted, use_tensor=True).detach().numpy()
    text_ref = CLAP_Module.get_text_embedding(ns, [CAPTIONS[i] for i in craft], tokenizer=lambda texts: tokenizer(
        texts, padding="max_length", truncation=True, max_length=77, return_tensors="pt"))
    _assert_matches(res, list(craft), _cosine(audio_ref, text_ref))

    # AudioLDM 2: torchaudio resampling 16 -> 48 kHz, the first 10 s, no padding, 512 tokens. One shared
    # caption and batches of one: 512-token captions are the slow part, and the two lengths differ.
    ldm = {"long": (_tone(16000, 11.0, 500, seed=6), 16000), "dog": (_tone(16000, 4.0, 900, seed=7), 16000)}
    caption = CAPTIONS["long"]
    [res] = score(["clap@audioldm2"], clip_set(tmp_path / "ldm", ldm, dict.fromkeys(ldm, caption)), None,
                  _options(choice, cache_dir, batch_size=1))
    assert res["backbone"]["text_max_length"] == 512
    with torch.no_grad():
        audio_ref = torch.cat([model.get_audio_embedding([{"waveform": torchaudio.functional.resample(
            torch.from_numpy(w[0]), 16000, 48000)[:clap.CLIP_SAMPLES]}]) for w, _ in ldm.values()]).numpy()
        text_ref = model.get_text_embedding(dict(tokenizer([caption], padding="max_length", truncation=True,
                                                           max_length=512, return_tensors="pt")))
    _assert_matches(res, list(ldm), _cosine(audio_ref, text_ref.numpy().repeat(2, axis=0)))


# ---- untrained weights, provenance, silence and bad input -----------------------------------------
@pytest.fixture(scope="module")
def untrained(hf_cache):
    return WeightsChoice(mode="untrained", seed=0)


def test_untrained_is_labelled_and_silence_is_scored_and_flagged(hf_cache, untrained, tmp_path, cache_dir):
    clips = {"dog": (_tone(16000, 1.0, 440), 16000), "quiet": (np.zeros((1, 16000), np.float32), 16000)}
    gen = clip_set(tmp_path / "gen", clips, CAPTIONS | {"quiet": "silence"})
    [res] = score(["clap@general"], gen, None, _options(untrained, cache_dir))
    assert res["key"] == "clap@general[untrained]" and res["untrained"] is True
    assert res["backbone"]["weights"] == "untrained" and res["backbone"]["init"] == clap.UNTRAINED_INIT
    assert res["generated"]["silent_clips"] == {"count": 1, "ids": ["quiet"]}
    assert all(np.isfinite(c["value"]) and -1 <= c["value"] <= 1 for c in res["per_clip"])

    # Captions are padded to a fixed length: an embedding does not depend on its batch.
    backbone = load_backbone("clap-630k-audioset", WeightsChoice(mode="untrained", seed=0, cache_root=cache_dir))
    both = backbone.embed_text(["a dog barks twice", "rain on a tin roof"])
    np.testing.assert_allclose(backbone.embed_text(["a dog barks twice"])[0], both[0], rtol=0, atol=1e-6)
    assert np.abs(both[0] - both[1]).max() > 1e-3

    # Same audio, one caption missing: a clear error naming the clip (the audio comes from the cache).
    no_caption = clip_set(tmp_path / "nocap", clips, {"dog": CAPTIONS["dog"]})
    with pytest.raises(ConfigError, match="1 clip.*no caption.*'quiet'"):
        score(["clap@general"], no_caption, None, _options(untrained, cache_dir))


def test_nan_audio_names_the_file(hf_cache, untrained, tmp_path, cache_dir):
    import soundfile as sf

    gen = tmp_path / "gen"
    clip_set(gen, {"dog": (_tone(16000, 1.0, 440), 16000)}, CAPTIONS)
    sf.write(gen / "broken.wav", np.full(1600, np.nan, np.float32), 16000, subtype="FLOAT")
    (gen / "set.jsonl").write_text(json.dumps({"id": "dog", "path": "dog.wav", "caption": "a dog"}) + "\n"
                                   + json.dumps({"id": "broken", "path": "broken.wav", "caption": "x"}) + "\n")
    with pytest.raises(AudioError, match="broken.wav"):
        score(["clap@general"], load_manifest(gen / "set.jsonl"), None, _options(untrained, cache_dir))


def test_missing_tokenizer_fails_loudly_instead_of_a_5_token_stand_in(tmp_path, cache_dir, monkeypatch):
    import huggingface_hub.constants as hub

    monkeypatch.setattr(hub, "HF_HUB_CACHE", str(tmp_path / "empty-hf-cache"))
    with pytest.raises(BenchError, match=r"roberta-base.*vocab\.json.*5-token"):
        clap.load_tokenizer(allow_download=False)
    small = tmp_path / "small"
    write_roberta_tokenizer(small, vocab_size=300)
    monkeypatch.setattr(hub, "HF_HUB_CACHE", str(small))
    with pytest.raises(BenchError, match="300-token"):
        load_backbone("clap-630k-audioset", WeightsChoice(mode="untrained", seed=11, cache_root=cache_dir))


def test_missing_tokenizer_with_downloads_allowed_and_no_hub_fails_at_once(tmp_path, monkeypatch):
    """Not in the HF cache and the hub unreachable: one connection attempt, not minutes of retries."""
    import huggingface_hub.constants as hub

    monkeypatch.setattr(hub, "HF_HUB_CACHE", str(tmp_path / "empty-hf-cache"))
    with socket.socket() as s:  # a loopback port with nothing listening: connection refused
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{port}")
    tf = clap.import_transformers_clap()

    def no_hub_calls(*args, **kwargs):
        raise AssertionError("from_pretrained must not be tried when the hub is unreachable")

    monkeypatch.setattr(tf.RobertaTokenizer, "from_pretrained", no_hub_calls)
    with pytest.raises(BenchError, match=rf"roberta-base.*hub is unreachable \(127\.0\.0\.1:{port}"):
        clap.load_tokenizer(allow_download=True)


# ---- checkpoint files -----------------------------------------------------------------------------
def _layout_checkpoint(spec, path, edit=lambda state: None, prefix="module."):
    """A checkpoint with every key of `spec` at its shape, all one shared zero (a few bytes on disk)."""
    zero = torch.zeros(1)
    state = {k: zero.expand(shape) if shape else zero[0] for k, shape in clap.laion_layout(spec).items()}
    edit(state)
    torch.save({"epoch": 1, "state_dict": {prefix + k: v for k, v in state.items()}, "lr": np.float32(1e-4)}, path)
    return path


def test_checkpoint_that_does_not_fit_names_the_first_mismatching_key(tmp_path):
    tiny, fusion = clap.SPECS["clap-630k-audioset"], clap.SPECS["clap-630k-audioset-fusion"]
    with pytest.raises(CheckpointError, match=r"unexpected key 'audio_branch\.patch_embed\.fusion_model\.global_att"):
        clap.read_checkpoint(_layout_checkpoint(fusion, tmp_path / "fusion.pt"), tiny)
    with pytest.raises(CheckpointError, match=r"missing key 'audio_branch\.patch_embed\.fusion_model\.global_att"):
        clap.read_checkpoint(_layout_checkpoint(tiny, tmp_path / "tiny.pt"), fusion)

    def reshape(state):
        state["audio_projection.0.weight"] = torch.zeros(512, 1024)
    with pytest.raises(CheckpointError, match=r"fit CLAP HTSAT-tiny.*'audio_projection\.0\.weight' has shape "
                                              r"\(512, 1024\), expected \(512, 768\)"):
        clap.read_checkpoint(_layout_checkpoint(tiny, tmp_path / "shape.pt", reshape, prefix=""), tiny)

    def drop(state):
        del state["text_branch.pooler.dense.bias"]
    with pytest.raises(CheckpointError, match=r"drop\.pt.*missing key 'text_branch\.pooler\.dense\.bias'"):
        clap.read_checkpoint(_layout_checkpoint(tiny, tmp_path / "drop.pt", drop), tiny)


def test_corrupt_or_foreign_checkpoint_says_to_refetch(tmp_path):
    spec = clap.SPECS["clap-music-audioset"]
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(np.random.default_rng(0).bytes(4096))
    with pytest.raises(CheckpointError, match=r"garbage\.pt.*corrupt.*re-fetch.*clap-music-audioset"):
        clap.read_checkpoint(garbage, spec)
    truncated = tmp_path / "truncated.pt"
    torch.save({"state_dict": {"a": torch.zeros(1000)}}, truncated)
    truncated.write_bytes(truncated.read_bytes()[:300])
    with pytest.raises(CheckpointError, match=r"truncated\.pt.*re-fetch"):
        clap.read_checkpoint(truncated, spec)
    pickled = tmp_path / "object.pt"
    torch.save({"state_dict": {"a": torch.zeros(1)}, "args": types.SimpleNamespace(lr=1)}, pickled)
    with pytest.raises(CheckpointError, match="not a tensors-only file"):
        clap.read_checkpoint(pickled, spec)
    listed = tmp_path / "list.pt"
    torch.save([torch.zeros(1)], listed)
    with pytest.raises(CheckpointError, match="not a LAION-CLAP checkpoint"):
        clap.read_checkpoint(listed, spec)


# ---- preprocessing and the kernel -----------------------------------------------------------------
def test_crops_and_pads_are_deterministic_and_recorded():
    n = clap.CLIP_SAMPLES
    ramp = np.arange(n + 4001, dtype=np.float32)
    np.testing.assert_array_equal(clap.fit_to_clip(ramp), ramp[2000:2000 + n])  # the middle 10 s
    short = np.arange(1, 200001, dtype=np.float32)
    padded = clap.fit_to_clip(short)
    np.testing.assert_array_equal(padded[:400000], np.tile(short, 2))
    assert len(padded) == n and not padded[400000:].any()
    for metric in ("general", "audiocraft", "stableaudio", "audioldm2"):
        steps = " ".join(getattr(clap_metrics, f"CLAP_{metric.upper()}").steps)
        assert ("random" in steps) and ("ours is fixed" in steps or "ours are fixed" in steps
                                        or "not padded" in steps)

    # Fusion: three 1001-frame chunks starting in the middle of each third of the possible starts.
    x = (np.random.default_rng(0).standard_normal(n + 3 * 48000) * 0.1).astype(np.float32)
    record = clap.fusion_example(x)
    mel = clap.fusion_mel(x).numpy()
    thirds = np.array_split(np.arange(mel.shape[0] - clap.CLIP_FRAMES + 1), 3)
    for channel, third in zip((1, 2, 3), thirds):
        start = third[len(third) // 2]
        np.testing.assert_array_equal(record["mel"][0, channel], mel[start:start + clap.CLIP_FRAMES])
    np.testing.assert_array_equal(clap.fusion_example(x)["mel"], record["mel"])
    short_record = clap.fusion_example(x[:48000])
    assert not short_record["longer"][0] and (short_record["mel"][0, 1:] == short_record["mel"][0, :1]).all()
    # stable-audio-metrics would peak-normalise silence into NaN; ours leaves it silent (-100 dB mels).
    silent = clap_metrics.CLAP_STABLEAUDIO.prepare(np.zeros((2, 4800), np.float32), 48000)
    assert (silent["mel"] == -100.0).all() and not silent["longer"].any()


def test_htk_mel_filters_match_librosa():
    import librosa

    expected = librosa.filters.mel(sr=48000, n_fft=1024, n_mels=64, fmin=50, fmax=14000, htk=True, norm=None).T
    np.testing.assert_allclose(clap.htk_mel_filters(), expected, rtol=0, atol=1e-6)


def _embeddings(audio, text, ids=None):
    ids = ids or [f"c{i}" for i in range(len(audio))]
    return SetEmbeddings({"source": "test"}, ids, ["x"] * len(ids), {"embedding": audio}, [1.0] * len(ids),
                         [False] * len(ids), text=np.asarray(text, np.float32))


def test_score_is_the_mean_cosine_with_a_bootstrap_interval():
    rng = np.random.default_rng(0)
    a, t = rng.standard_normal((7, 512)), rng.standard_normal((7, 512))
    t[0] = a[0] * 3  # cosine 1 whatever the norms
    emb = _embeddings([row[None].astype(np.float32) for row in a], t)
    out = clap_metrics.clap_score(emb, None, ScoreOptions(bootstrap=200, progress=False))
    expected = np.array([np.dot(x, y) / (np.linalg.norm(x) * np.linalg.norm(y)) for x, y in zip(a, t)])
    assert out["value"] == pytest.approx(expected.mean(), abs=1e-6)  # float32 inputs
    assert [c["id"] for c in out["per_clip"]] == [f"c{i}" for i in range(7)]
    assert out["per_clip"][0]["value"] == pytest.approx(1.0, abs=1e-6)
    assert out["ci"]["low"] <= out["value"] <= out["ci"]["high"] and out["ci"]["n_resamples"] == 200
    assert out["details"]["pairs"] == 7
    # Nobody multiplies by 100 or clips at 0: an anti-aligned pair scores -1.
    neg = clap_metrics.clap_score(_embeddings([a[:1].astype(np.float32)], -a[:1]), None,
                                  ScoreOptions(bootstrap=0, progress=False))
    assert neg["value"] == pytest.approx(-1.0, abs=1e-6) and neg["ci"] is None


def test_clip_too_short_for_audioldm2_is_named():
    assert clap_metrics.CLAP_AUDIOLDM2.prepare(np.ones((1, 100), np.float32), 16000).shape[0] == 0
    emb = _embeddings([np.ones((1, 512), np.float32), np.zeros((0, 512), np.float32)], np.ones((2, 512)),
                      ids=["ok", "blip"])
    with pytest.raises(AudioError, match="1 clip.*'blip'.*too short"):
        clap_metrics.clap_score(emb, None, ScoreOptions(bootstrap=0, progress=False))


def test_soxr_hq_has_librosas_length_for_clap_inputs():
    import librosa

    from bench.core.resample import resample

    # librosa.load(sr=48000) computes ceil(n * 48000 / 44100) in floating point: 2.5 s gives 120001.
    x = np.random.default_rng(0).standard_normal((1, 110250)).astype(np.float32)
    np.testing.assert_array_equal(resample(x, 44100, 48000, "soxr-hq"), librosa.resample(x, orig_sr=44100,
                                                                                         target_sr=48000))
