"""`bench sanity`: curve analysis, expectations, perturbed sets, and an end-to-end run on the built-in set."""
import contextlib
import dataclasses
import io
import json
import math

import numpy as np
import pytest

from bench.cli import main
from bench.core.clipsets import load_directory
from bench.core.synthetic import synthetic_dataset
from bench.sanity import analyse_curve, expectation, perturbed_set, plan_levels, run_sanity
from bench.sanity_report import log_report, write_report
from metrics.inputs import ScoreOptions
from bench.core.mlflow_store import results_store_uri
from metrics.backbones.base import WeightsChoice
from metrics.perturbations import PERTURBATIONS, get_perturbation, perturbation
from metrics.registry import get_metric
from tests.conftest import write_clips

AUDIOLDM, GOOGLE = "fad-vggish@audioldm", "fad-vggish@google"


# ---------------------------------------------------------------------------------------- analysis

def test_rising_curve_outside_the_clean_ci_is_sensitive():
    a = analyse_curve([0, 5, 10], [0, 3, 8], [2, 7, 12], "rise")
    assert a["verdict"] == "sensitive" and a["monotone_within_ci"] and a["spearman"]["rho"] == 1.0


def test_significance_is_each_value_outside_the_others_ci():
    # The CIs overlap, but each value lies outside the other's interval: a significant rise.
    assert analyse_curve([0, 100], [0, 60], [80, 200], "rise")["verdict"] == "sensitive"
    # The rise stays inside the clean set's CI (its noise floor): not significant.
    a = analyse_curve([0, 1, 2], [0, 0, 0], [3, 4, 5], "rise")
    assert a["verdict"] == "insensitive" and not a["significant_change"] and a["spearman"]["rho"] == 1.0


def test_reversals_and_wrong_directions_are_reported():
    a = analyse_curve([0, 10, 4], [0, 9, 3], [1, 11, 5], "rise")
    assert a["verdict"] == "non-monotone" and not a["monotone_within_ci"]
    assert analyse_curve([5, 2, 1], [4.5, 1.5, 0.5], [5.5, 2.5, 1.5], "rise")["verdict"] == "wrong-direction"
    assert analyse_curve([10, 7, 3], [9, 6, 2], [11, 8, 4], "fall")["verdict"] == "sensitive"


def test_invariance_and_descriptive_verdicts():
    assert analyse_curve([0, 1, 0.5], [0, 0, 0], [3, 3, 3], "invariant")["verdict"] == "invariant"
    assert analyse_curve([0, 5], [0, 4], [1, 6], "invariant")["verdict"] == "not-invariant"
    assert analyse_curve([0, 5], [0, 4], [1, 6], "any")["verdict"] == "rises"
    assert analyse_curve([3, 3, 3], None, None, "any") | {"spearman": None} == {
        "spearman": None, "monotone_within_ci": True, "significant_change": False, "verdict": "no-change"}


def test_without_cis_the_values_decide():
    assert analyse_curve([0, 1, 2], expected="rise")["verdict"] == "sensitive"
    assert analyse_curve([0, 2, 1], expected="rise")["verdict"] == "non-monotone"


def test_expectations_come_from_direction_perturbation_and_metric_overrides():
    audioldm, google = get_metric(AUDIOLDM), get_metric(GOOGLE)
    higher = dataclasses.replace(audioldm, direction="higher")
    assert expectation(audioldm, get_perturbation("noise")) == "rise"
    assert expectation(higher, get_perturbation("noise")) == "fall"
    assert expectation(audioldm, get_perturbation("time-shift")) == "invariant"
    assert expectation(audioldm, get_perturbation("gain")) == "any"
    assert expectation(google, get_perturbation("gain")) == "invariant"  # peak-normalising preset
    assert expectation(google, get_perturbation("gain"), required=True) == "rise"


def test_plan_uses_defaults_and_always_starts_at_the_clean_set():
    assert plan_levels(["noise"])["noise"] == get_perturbation("noise").defaults
    assert plan_levels(["mask", "noise"], [0.5, 0.1]) == {"mask": (0.0, 0.1, 0.5), "noise": (math.inf, 0.5, 0.1)}


# ---------------------------------------------------------------------------------------- perturbed sets

def test_perturbed_set_keeps_ids_and_perturbs_file_clips(tmp_path):
    ds = synthetic_dataset(n_clips=3, duration_s=0.5)
    ref = load_directory(write_clips(tmp_path / "ref", {c.id: ds.load(c) for c in ds.clips}))
    noisy = perturbed_set(ref, get_perturbation("noise"), 10.0, seed=0)
    assert [c.id for c in noisy.clips] == [c.id for c in ref.clips]
    assert noisy.kind == "perturbed" and "noise=10" in noisy.source
    clean, _ = ref.load(ref.clips[0])
    wave, rate = noisy.load(noisy.clips[0])  # the file is read, then perturbed
    assert rate == 16000 and abs(10 * np.log10(np.sum(clean ** 2) / np.sum((wave - clean) ** 2)) - 10) < 0.1
    assert noisy.fingerprint() == perturbed_set(ref, get_perturbation("noise"), 10.0, 0).fingerprint()
    assert noisy.fingerprint() != perturbed_set(ref, get_perturbation("noise"), 10.0, 1).fingerprint()
    assert noisy.fingerprint() != ref.fingerprint()


def test_a_new_perturbation_is_one_function_and_its_registration():
    @perturbation("test-invert", unit="-", meaning="polarity flipped when level is 1", identity=0,
                  defaults=(0, 1), valid=(0, 1), stronger="higher", expect="invariant")
    def invert(x, rate, level, rng, clip):
        return -x if level == 1 else x

    try:
        ds = synthetic_dataset(n_clips=2, duration_s=0.2)
        flipped = perturbed_set(ds, get_perturbation("test-invert"), 1.0, 0)
        assert np.array_equal(flipped.load("synthetic-0001")[0], -ds.load("synthetic-0001")[0])
        assert expectation(get_metric(AUDIOLDM), get_perturbation("test-invert")) == "invariant"
    finally:
        PERTURBATIONS.pop("test-invert")


# ---------------------------------------------------------------------------------------- end to end

AUDIO = synthetic_dataset(n_clips=8, duration_s=1.5, seed=0)  # the built-in set, small
PLAN = {"noise": (math.inf, 30.0, 10.0, 0.0), "mask": (0.0, 0.1, 0.25, 0.5), "mix": (math.inf, 20.0, 10.0, 0.0)}
COMMON = ("--weights", "untrained", "--bootstrap", "20", "--batch-size", "16", "--quiet")


def _bench(*argv):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(argv))
    return code, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """One sanity check of both FAD presets under noise, masking and mixing, written and tracked."""
    root = tmp_path_factory.mktemp("sanity")
    weights = WeightsChoice(mode="untrained", seed=0, cache_root=root / "cache")
    options = ScoreOptions(weights=weights, cache_root=root / "cache", batch_size=16, bootstrap=20, progress=False)
    report = run_sanity(AUDIO, [AUDIOLDM, GOOGLE], PLAN, options, seed=0, require=[(AUDIOLDM, p) for p in PLAN],
                        log=lambda *a: None)
    files = write_report(report, root / "out")
    uri = results_store_uri(root / "out")
    run_id = log_report(report, uri, "sanity", files, root / "out" / "mlartifacts")
    return {"report": report, "root": root, "uri": uri, "run_id": run_id}


def _result(report, metric, perturbation_name):
    return next(r for r in report["results"] if r["metric"] == metric and r["perturbation"] == perturbation_name)


def test_untrained_vggish_fad_is_monotone_under_noise_masking_and_mixing(run):
    report = run["report"]
    for metric in (AUDIOLDM, GOOGLE):
        for name in PLAN:
            r = _result(report, metric, name)
            # Google's preset on 8 clips: the mixing curve rises (rho 1) but its CI at full mix can reach down to
            # the clean set's spread, depending on the (content-keyed) resamples; the required checks are AUDIOLDM's.
            assert r["expected"] == "rise" and (r["verdict"] == "sensitive" or (metric, name) == (GOOGLE, "mix")), r
            assert r["monotone_within_ci"] and r["spearman"]["rho"] == 1.0
            assert r["values"] == sorted(r["values"])  # here even the point estimates never fall back
            assert r["values"][0] == pytest.approx(0, abs=1e-6)
            assert r["values"][-1] > r["ci"][0][1] or (metric, name) == (GOOGLE, "mix")
    assert [r["passed"] for r in report["results"] if r["required"]] == [True, True, True]
    assert report["exit_code"] == 0 and report["problems"] in ([], [f"{GOOGLE}:mix insensitive"])
    assert report["untrained"] and all(r["key"].endswith("[untrained]") for r in report["results"])


def test_report_markdown_and_plots_are_written(run):
    out = run["root"] / "out"
    assert json.loads((out / "sanity.json").read_text())["results"][0]["levels"] == ["inf", 30, 10, 0]
    markdown = (out / "sanity.md").read_text()
    assert "| fad-vggish@audioldm[untrained] | noise | clean, 30, 10, 0 (dB SNR) | rise |" in markdown
    assert "Untrained backbone" in markdown and "UNTRAINED vggish" in markdown
    for name in ("fad-vggish_audioldm.untrained.png", "fad-vggish_google.untrained.png"):
        png = (out / "plots" / name).read_bytes()
        assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 20_000
        assert (out / "plots" / name).with_suffix(".pdf").read_bytes()[:5] == b"%PDF-"


def test_mlflow_run_has_curves_verdicts_and_artifacts(run):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(run["uri"])
    mlrun = client.get_run(run["run_id"])
    tags = mlrun.data.tags
    assert tags["bench.kind"] == "sanity" and tags["bench.untrained"] == "true"
    assert tags["bench.sanity.verdict.fad-vggish:audioldm untrained.noise"] == "sensitive"
    assert "untrained" in tags["bench.metric.fad-vggish:google untrained.backbone"].lower()
    history = client.get_metric_history(run["run_id"], "sanity.fad-vggish:audioldm untrained.mask")
    assert ([m.value for m in sorted(history, key=lambda m: m.step)]
            == pytest.approx(_result(run["report"], AUDIOLDM, "mask")["values"]))
    assert {"sanity.json", "sanity.md", "plots"} <= {a.path for a in client.list_artifacts(run["run_id"])}


def test_cli_reproduces_the_curve_from_files_and_a_fresh_cache(run, tmp_path):
    # The built-in set written as files, a fresh cache: identical numbers must come from determinism.
    ref = write_clips(tmp_path / "ref", {c.id: AUDIO.load(c) for c in AUDIO.clips})
    code, out, err = _bench("--cache-dir", str(tmp_path / "cache"), "sanity", "--metric", AUDIOLDM,
                            "--reference", str(ref), "--perturbation", "noise", "--levels", "10", "0", *COMMON,
                            "--out", str(tmp_path / "out"), "--tracking-uri", run["uri"], "--experiment", "cli",
                            "--require", f"{AUDIOLDM}:noise")
    assert code == 0, err
    again = json.loads((tmp_path / "out" / "sanity.json").read_text())["results"][0]
    first = _result(run["report"], AUDIOLDM, "noise")
    assert again["levels"] == ["inf", 10, 0] and again["verdict"] == "sensitive"
    assert again["values"] == [first["values"][i] for i in (0, 2, 3)]
    assert again["ci"] == [first["ci"][i] for i in (0, 2, 3)]
    assert "| fad-vggish@audioldm[untrained] | noise | clean, 10, 0 (dB SNR) |" in out
    assert "sensitive (required: PASS)" in out and "MLflow: run" in out

    from mlflow.tracking import MlflowClient

    client = MlflowClient(run["uri"])
    [cli_run] = client.search_runs([client.get_experiment_by_name("cli").experiment_id])
    assert cli_run.data.tags["bench.untrained"] == "true"


def test_required_sensitivity_that_fails_exits_1(tmp_path, cache_dir):
    # The google preset peak-normalises every clip: it is (rightly) blind to gain.
    ref = write_clips(tmp_path / "ref", {c.id: AUDIO.load(c) for c in AUDIO.clips})
    args = ("sanity", "--metric", GOOGLE, "--reference", str(ref), "--perturbation", "gain", "--levels", "-20",
            *COMMON, "--out", str(tmp_path / "out"), "--no-tracking")
    code, out, err = _bench(*args)
    assert code == 0 and "| gain | clean, -20 (dB) | invariant |" in out and "| invariant |" in out
    code, out, err = _bench(*args, "--require", f"{GOOGLE}:gain")
    assert code == 1
    assert "FAIL  fad-vggish@google[untrained] must be sensitive to gain but is insensitive" in err
    assert "1 required sensitivity check(s) FAILED" in err
    assert "**insensitive** (required: FAIL)" in out
    assert json.loads((tmp_path / "out" / "sanity.json").read_text())["exit_code"] == 1


@pytest.mark.parametrize("args, message", [
    (("--perturbation", "noize"), "unknown perturbation 'noize'; did you mean 'noise'"),
    (("--perturbation", "mask", "--levels", "0.5", "2"), "perturbation 'mask': level 2.0 is outside the valid "
                                                          "range [0, 1]"),
    (("--require", "fad-vggish@audioldm"), "expected METRIC:PERTURBATION"),
    (("--perturbation", "noise", "--require", f"{GOOGLE}:noise"), "metric 'fad-vggish@google' is not scored"),
    (("--perturbation", "noise", "--require", f"{AUDIOLDM}:mask"), "perturbation 'mask' is not run"),
    (("--metric", "fad-vgish@audioldm"), "did you mean 'fad-vggish@audioldm'"),
    (("--bootstrap", "1"), "--bootstrap must be 0 (no CIs) or >= 2"),
])
def test_bad_input_is_exit_2_with_a_clear_message(args, message, tmp_path):
    code, _, err = _bench("sanity", "--metric", AUDIOLDM, "--reference", "builtin:synthetic", *COMMON,
                          "--out", str(tmp_path), *args)
    assert code == 2 and message in err and "Traceback" not in err


def test_clips_too_short_for_the_protocol_are_the_scoring_layers_error(tmp_path, cache_dir):
    ds = synthetic_dataset(n_clips=3, duration_s=0.6)
    ref = write_clips(tmp_path / "short", {c.id: ds.load(c) for c in ds.clips})
    code, _, err = _bench("sanity", "--metric", GOOGLE, "--reference", str(ref), "--perturbation", "noise",
                          *COMMON, "--out", str(tmp_path / "out"), "--no-tracking")
    assert code == 2 and "produced 0 output(s)" in err
