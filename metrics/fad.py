"""FAD with VGGish, in the two presets papers report (docs/protocols.md#vggish-fad)."""
from __future__ import annotations

from metrics.bootstrap import bootstrap_interval, content_order
from metrics.frechet import StackedClips
from metrics.protocols import VGGISH_AUDIOLDM, VGGISH_GOOGLE
from metrics.registry import MetricDef, register_metric


def frechet_metric(generated, reference, options) -> dict:
    """Fréchet distance between the Gaussian fits of all embeddings of each set, with a bootstrap CI."""
    gen_clips, ref_clips = generated.nonempty(), reference.nonempty()
    gen, ref = StackedClips(gen_clips), StackedClips(ref_clips)
    value = gen.frechet(ref)
    result = {"value": value, "ci": None,
              "details": {"estimator": "plug-in FD of the two sample Gaussian fits (biased upwards by ~c/n, as "
                                       "every published toolkit reports it); ci.bias_corrected removes the "
                                       "bootstrap estimate of that bias"}}
    if options.bootstrap > 0:
        interval = bootstrap_interval(
            lambda counts: gen.frechet(ref, counts[0], counts[1]),
            [content_order(gen_clips), content_order(ref_clips)], options.bootstrap, options.bootstrap_seed,
            FD_COVERS, options.ci_level, estimate=value, floor=0.0)
        result["ci"] = interval.to_dict()
    return result


FD_COVERS = ("the population Fréchet distance between Gaussian fits of the generated and the reference "
             "distributions (what FD tends to as both sets grow), not the value of another draw of this size")


register_metric(MetricDef(
    name="fad-vggish", preset="audioldm", version=1, direction="lower", protocol=VGGISH_AUDIOLDM,
    summary="FAD on VGGish, audioldm_eval preprocessing (0.96 s frames, sinc resampling, mean removed)",
    lineage="audioldm_eval's FAD code (the toolkit released with AudioLDM; Tango evaluates with it)",
    compute=frechet_metric,
    family="frechet"))

register_metric(MetricDef(
    name="fad-vggish", preset="google", version=1, direction="lower", protocol=VGGISH_GOOGLE,
    summary="FAD on VGGish, Google's reference (1 s windows every 0.5 s, int16 max-value scaling)",
    lineage="google-research frechet_audio_distance via audiocraft: MusicGen", compute=frechet_metric,
    family="frechet",
    # The preset peak-normalises every clip before quantising, so a gain change must not move it.
    expected_sensitivity=(("gain", "invariant"),)))
