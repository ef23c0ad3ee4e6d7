"""FAD with VGGish, in the two presets papers report (docs/protocols.md#vggish-fad)."""
from __future__ import annotations

from metrics.bootstrap import bootstrap_interval
from metrics.frechet import StackedClips
from metrics.protocols import VGGISH_AUDIOLDM, VGGISH_GOOGLE
from metrics.registry import MetricDef, register_metric


def frechet_metric(generated, reference, options) -> dict:
    """Fréchet distance between the Gaussian fits of all embeddings of each set, with a bootstrap CI."""
    gen, ref = StackedClips(generated.nonempty()), StackedClips(reference.nonempty())
    value = gen.frechet(ref)
    result = {"value": value, "ci": None,
              "details": {}}
    if options.bootstrap > 0:
        interval = bootstrap_interval(
            lambda counts: gen.frechet(ref, counts[0], counts[1]),
            [gen.n_clips, ref.n_clips], options.bootstrap, options.bootstrap_seed, options.ci_level,
            estimate=value, floor=0.0)
        result["ci"] = interval.to_dict()
    return result


register_metric(MetricDef(
    name="fad-vggish", preset="audioldm", version=1, direction="lower", protocol=VGGISH_AUDIOLDM,
    summary="FAD on VGGish, audioldm_eval preprocessing (0.96 s frames, sinc resampling, mean removed)",
    lineage="audioldm_eval: AudioLDM, AudioLDM 2, Tango", compute=frechet_metric,
    family="frechet"))

register_metric(MetricDef(
    name="fad-vggish", preset="google", version=1, direction="lower", protocol=VGGISH_GOOGLE,
    summary="FAD on VGGish, Google's reference (1 s windows every 0.5 s, int16 max-value scaling)",
    lineage="google-research frechet_audio_distance via audiocraft: MusicGen", compute=frechet_metric,
    family="frechet",
    # The preset peak-normalises every clip before quantising, so a gain change must not move it.
    expected_sensitivity=(("gain", "invariant"),)))
