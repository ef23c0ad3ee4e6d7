"""Leaderboards: the table model, Markdown/LaTeX/CSV against golden files, a real pdflatex compile,
plots, record sources (directory, MLflow), the CI summary and the `bench leaderboard` command.

Regenerate the golden files deliberately with BENCH_UPDATE_GOLDEN=1 pytest tests/test_leaderboards.py.
"""
import csv
import io
import json
import math
import os
import re
import shutil
import subprocess
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from scipy import stats

from bench.core.errors import BenchError
from bench.core.records import SCHEMA, RunRecord
from leaderboards import ci_summary, csv_table, latex, markdown
from leaderboards.plots import leaderboard_plots
from leaderboards.sources import load_mlflow_records, load_records
from leaderboards.table import build_table, fmt_number

GOLDEN = Path(__file__).parent / "golden"
REFERENCE = {"name": "synthetic", "kind": "synthetic", "n_clips": 28, "fingerprint": "f" * 64,
             "source": "builtin:synthetic"}
# Names users really give their models: every one of these breaks LaTeX or Markdown if not escaped.
NASTY = "DiscoDiff_v2 & co 100% #1 $"


def result(key, value, spread=0.1, untrained=False, direction="lower", ci=True, protocol_version=1):
    metric = key.split("[")[0]
    backbone = ({"backbone": "vggish", "weights": "untrained", "seed": 0, "file": None, "sha256": None}
                if untrained else {"backbone": "vggish", "weights": "pretrained", "file": "vggish-10086976.pth",
                                   "sha256": "10086976" + "ab" * 28})
    return {"key": key, "metric": metric, "metric_version": 1, "direction": direction,
            "lineage": "audioldm_eval", "untrained": untrained, "value": value,
            "ci": {"low": value - spread, "high": value + 2 * spread, "level": 0.95} if ci else None,
            "protocol": {"id": metric.replace("fad-", ""), "version": protocol_version}, "backbone": backbone}


def typed(records):
    """The records as leaderboards read them (tests build and edit plain dicts)."""
    return [RunRecord.from_dict(r) for r in records]


def record(label, metrics, seed=0, steps=None, sample_rate=16000, checkpoint=None, seconds=1.0):
    cell = {"generator": label.split()[0], "label": label, "checkpoint": checkpoint, "seed": seed,
            "steps": steps, "guidance": None, "sample_rate": sample_rate, "duration_s": 10.0,
            "samples_per_prompt": 1, "resampler": "soxr-vhq"}
    ckpt = Path(checkpoint).stem if checkpoint else None
    cell_id = re.sub(r"[^A-Za-z0-9._-]+", "-", f"{label[:8]}_{seed}_{steps}_{sample_rate}_{ckpt}")
    return {"schema": SCHEMA, "suite": {"name": "paper", "path": "paper.toml", "hash": "0" * 64},
            "cell_id": cell_id, "cell_hash": "1" * 64, "cell": cell,
            "generation": {"checkpoint_sha256": ("c0ffee" * 11)[:64] if checkpoint else None},
            "reference": REFERENCE, "metrics": metrics, "untrained": any(m["untrained"] for m in metrics),
            "git_revision": "abc", "versions": {"bench-harness": "0.1.0"},
            "timing": {"generation_seconds": seconds * 28, "fresh_samples": 28, "real_time_factor": seconds / 10}}


def models_records():
    """Three models x two seeds (DiscoDiff Table 1 style), one untrained metric, a tie for the best."""
    out = []
    for seed in (0, 1):
        out += [
            record(NASTY, [result("fad-vggish@audioldm", 1.5 + seed * 0.2),
                           result("fad-vggish@google[untrained]", 40.0 + seed, untrained=True)],
                   seed=seed, sample_rate=48000, seconds=2.5),
            record("Tango", [result("fad-vggish@audioldm", 1.6 + seed * 0.0001),  # ties DiscoDiff at 3 d.p.
                             result("fad-vggish@google[untrained]", 35.0 + seed, untrained=True)],
                   seed=seed, seconds=1.25),
            record("noise", [result("fad-vggish@audioldm", 9.0 + seed)], seed=seed, seconds=0.001),
        ]
    return out


def sweep_records():
    """One model over sample rates x steps, plus a checkpoint series (SRC-gAudio / Diffsound style)."""
    out = []
    for rate in (16000, 32000, 48000):
        for steps in (10, 50, 200):
            fad = {10: 3.0, 50: 2.25, 200: 1.75}[steps] + rate / 64000
            out.append(record("AudioLDM_s", [result("fad-vggish@audioldm", fad),
                                             result("clap@laion", 0.2 + steps / 1000, 0.01, direction="higher")],
                              steps=steps, sample_rate=rate))
    for step in (1000, 2000, 4000):
        out.append(record("mine", [result("fad-vggish@audioldm", 8000 / step, 0.2),
                                   result("clap@laion", 0.1 + step / 20000, 0.01, direction="higher")],
                          steps=50, sample_rate=16000, checkpoint=f"/ckpt/run_a/step-{step}.pt"))
    return out


def _golden(name, text):
    path = GOLDEN / name
    if os.environ.get("BENCH_UPDATE_GOLDEN"):
        path.write_text(text)
    assert text == path.read_text(), f"{name} differs from its golden file (BENCH_UPDATE_GOLDEN=1 to accept)"


# ------------------------------------------------------------------------------------ table model

def test_seeds_are_averaged_with_a_t_interval_when_group_by_leaves_them_out():
    table = build_table(typed(models_records()), group_by=["label"])
    assert [r.fields["label"] for r in table.rows] == [NASTY, "Tango", "noise"]
    disco = table.rows[0].values["fad-vggish@audioldm"]
    values = [1.5, 1.7]
    half = stats.t.ppf(0.975, 1) * np.std(values, ddof=1) / math.sqrt(2)
    assert disco.n == 2 and disco.interval == "seeds"
    assert disco.value == pytest.approx(1.6) and disco.low == pytest.approx(1.6 - half)
    assert disco.high == pytest.approx(1.6 + half)
    # per cell (the default): one row per seed, each with its own bootstrap interval
    per_cell = build_table(typed(models_records()))
    assert len(per_cell.rows) == 6 and "seed" in per_cell.group_by
    assert per_cell.rows[0].values["fad-vggish@audioldm"].interval == "bootstrap"


def test_best_bold_second_underlined_with_ties_at_printed_precision():
    table = build_table(typed(models_records()), group_by=["label"])
    ranks = {r.fields["label"]: r.values["fad-vggish@audioldm"].rank for r in table.rows}
    assert ranks == {NASTY: 1, "Tango": 1, "noise": 2}  # 1.600 == 1.60005 when printed: both best
    untrained = {r.fields["label"]: r.values.get("fad-vggish@google[untrained]") for r in table.rows}
    assert untrained["noise"] is None  # no value, no rank
    assert (untrained[NASTY].rank, untrained["Tango"].rank) == (2, 1)


def test_higher_is_better_and_precision_and_unit_come_from_the_record():
    records = sweep_records()
    for rec in records:  # what the metric definition writes into each result
        for r in rec["metrics"]:
            if r["metric"] == "clap@laion":
                r.update(unit="%", precision=1)
    table = build_table(typed(records), layout="steps", group_by=["label", "steps"], metrics=["clap@laion"])
    col = table.metric_columns[0]
    assert (col.direction, col.unit, col.precision) == ("higher", "%", 1)
    first = [r for r in table.rows if r.section == "AudioLDM_s"]
    assert [r.fields["steps"] for r in first] == [10, 50, 200]
    # larger is better; 0.21 and 0.25 both print as 0.2 at the declared precision: a tie for second
    assert [r.values["clap@laion"].rank for r in first] == [2, 2, 1]
    text = latex.render_table(table)
    assert "clap\\\\@laion (\\%) $\\uparrow$" in text  # name over @preset, unit, arrow
    assert "$\\mathbf{0.4}" in text  # one decimal, as declared


def test_every_value_of_a_column_gets_the_same_decimals():
    text = markdown.render_table(build_table(typed(models_records()), group_by=["label"]))
    assert "_9.500_" in text and "**1.600**" in text and "38.500" not in text  # 40.5/35.5: 3 decimals
    assert "**35.500**" in text and "_40.500_" in text
    assert fmt_number(-0.0001, 3) == "0.000"  # never '-0.000'


def test_mixed_protocol_versions_and_reference_sets_are_refused():
    records = models_records()
    records[1]["metrics"][0] = result("fad-vggish@audioldm", 1.0, protocol_version=2)
    with pytest.raises(BenchError, match="computed differently"):
        build_table(typed(records))
    records = models_records()
    records[0]["reference"] = {**REFERENCE, "fingerprint": "e" * 64}
    with pytest.raises(BenchError, match="different reference sets"):
        build_table(typed(records))
    with pytest.raises(BenchError, match="--metrics 'kl@x'"):
        build_table(typed(models_records()), metrics=["kl@x"])
    with pytest.raises(BenchError, match="--group-by 'seeds'"):
        build_table(typed(models_records()), group_by=["seeds"])


# ------------------------------------------------------------------------------------ golden files

def test_models_layout_golden_md_latex_csv():
    table = build_table(typed(models_records()), group_by=["label"], title="Text-to-audio on synthetic")
    _golden("leaderboard_models.md", markdown.render_table(table))
    _golden("leaderboard_models.tex", latex.render_table(table, caption="Models x metrics"))
    # CSV per cell: its numbers come straight from the records (a t quantile could move in the last bit)
    _golden("leaderboard_models.csv", csv_table.render_table(build_table(typed(models_records()))))


def test_rates_and_steps_layouts_golden():
    records = [r for r in sweep_records() if r["cell"]["checkpoint"] is None]
    tango = [record("Tango", [result("fad-vggish@audioldm", v)], steps=50, sample_rate=sr)
             for sr, v in ((48000, 2.0), (16000, 2.5))]
    rates = build_table(typed([r for r in records if r["cell"]["steps"] == 50] + tango), layout="rates",
                        metrics=["fad-vggish@audioldm"], title="Sample rates")
    _golden("leaderboard_rates.tex", latex.render_table(rates, ci="sub"))
    steps = build_table(typed([r for r in records if r["cell"]["sample_rate"] == 16000]), layout="steps",
                        title="Sampling steps")
    _golden("leaderboard_steps.md", markdown.render_table(steps))
    _golden("leaderboard_steps.csv", csv_table.render_table(steps))


def test_checkpoints_layout_orders_by_training_step():
    records = [r for r in sweep_records() if r["cell"]["checkpoint"]]
    records.reverse()
    table = build_table(typed(records), layout="checkpoints")
    assert [r.fields["checkpoint"].split("/")[-1] for r in table.rows] == ["step-1000.pt", "step-2000.pt",
                                                                          "step-4000.pt"]
    text = latex.render_table(table)
    assert "Checkpoints (sha256): " in text and "mine: step-1000.pt (c0ffeec0ffee)" in text  # in the note


def test_a_generator_with_random_weights_is_labelled_untrained_in_every_layout():
    trained, untrained = record("archisound", [result("m@p", 2.0)]), record("tiny", [result("m@p", 3.0)])
    untrained["generation"]["untrained"] = True
    for layout in ("models", "rates"):
        table = build_table(typed([trained, untrained]), layout=layout)
        text = markdown.render_table(table)
        assert "tiny (untrained)" in text and "archisound (untrained)" not in text


def test_unverified_checkpoint_degenerate_oracle_and_floor_in_every_format():
    from leaderboards import html

    unverified = result("fad-vggish@audioldm[unverified]", 2.0)
    unverified["unverified"] = True
    unverified["backbone"] = {**unverified["backbone"], "weights": "local-unverified"}
    unverified["noise_floor"] = {"mean": 0.75, "std": 0.125, "splits": 5, "set_sizes": [14, 14]}
    oracle = result("fad-vggish@audioldm[unverified]", 0.0)
    oracle.update(unverified=True, backbone=unverified["backbone"], degenerate="the set against itself")
    table = build_table(typed([record("mine", [unverified]), record("reference", [oracle])]))
    md, tex, page, flat = (markdown.render_table(table), latex.render_table(table), html.render_table(table),
                           csv_table.render_table(table))
    assert "fad-vggish@audioldm[unverified]" in md and "**LOCAL UNVERIFIED** checkpoint" in md
    assert "0.000 (degenerate)" in md and "| 2.000 [1.900, 2.200] |" in md  # the oracle is not ranked
    assert "Noise floor: 0.750 ± 0.125" in md
    assert r"$^\S$LOCAL UNVERIFIED checkpoint" in tex and r"$0.000^\ddagger$" in tex and r"0.750 $\pm$ 0.125" in tex
    assert '<span class="badge">unverified</span>' in page and "(degenerate)" in page and "noise floor 0.750" in page
    rows = list(csv.DictReader(io.StringIO(flat)))
    assert rows[1]["fad-vggish@audioldm[unverified]:degenerate"] == "yes"
    assert rows[0]["fad-vggish@audioldm[unverified]:noise_floor"] == "0.75"


def test_latex_escapes_every_special_character_and_marks_untrained():
    assert latex.escape("a_b & 100% #1 $x ~^\\{}") == (
        r"a\_b \& 100\% \#1 \$x \textasciitilde{}\textasciicircum{}\textbackslash{}\{\}")
    assert latex.escape("[x]*") == "{[}x{]}{*}"  # a row starting with [ would be eaten by \\
    assert latex.escape("a--b ő 漢") == "a-{}-b o ?"
    text = latex.render_table(build_table(typed(models_records()), group_by=["label"]))
    assert r"DiscoDiff\_v2 \& co 100\% \#1 \$" in text
    assert r"fad-vggish\\@google$^\dagger$ $\downarrow$" in text and r"$^\dagger$UNTRAINED backbone" in text
    assert "vggish-10086976.pth sha256 10086976abababab" in text and "fingerprint ffffffffffff" in text


def test_latex_interval_styles():
    records = models_records()[:1]
    pm = latex.render_table(build_table(typed(records)))
    assert r"$\mathbf{1.500}^{+0.200}_{-0.100}$" not in pm  # one row: nothing to rank
    assert r"$1.500^{+0.200}_{-0.100}$" in pm  # asymmetric interval: not a misleading ±
    agg = latex.render_table(build_table(typed(models_records()), group_by=["label"]))
    assert r"$\mathbf{1.600} \pm " in agg  # t-interval over seeds is symmetric
    sub = latex.render_table(build_table(typed(records)), ci="sub")
    assert r"$1.500_{[1.400,\,1.700]}$" in sub
    assert "$1.500$ &" in latex.render_table(build_table(typed(records)), ci="none")


def _pdflatex():
    exe = shutil.which("pdflatex")
    if exe is None:
        if os.environ.get("CI"):
            pytest.fail("pdflatex is missing in CI: apt-get install -y --no-install-recommends "
                        "texlive-latex-base texlive-latex-recommended")
        pytest.skip("pdflatex not installed (Debian: texlive-latex-base texlive-latex-recommended)")
    return exe


@pytest.mark.parametrize("layout", ["models", "rates", "checkpoints"])
def test_latex_compiles_with_pdflatex(tmp_path, layout):
    exe = _pdflatex()
    records = models_records() if layout == "models" else sweep_records()
    if layout == "models":
        records[0]["cell"]["label"] = NASTY + " ~^\\{} [x] *y <z> |w| a--b modèle ő 漢 “q” –"
    table = build_table(typed(records), layout=layout, group_by=["label"] if layout == "models" else None)
    body = latex.render_table(table, caption="Paper_table & notes: 50% #3 $")
    (tmp_path / "doc.tex").write_text(latex.document(body), encoding="utf-8")
    proc = subprocess.run([exe, "-interaction=nonstopmode", "-halt-on-error", "doc.tex"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    log = (tmp_path / "doc.log").read_text(errors="replace")
    assert proc.returncode == 0, log[-3000:]
    assert (tmp_path / "doc.pdf").stat().st_size > 1000
    assert "Missing character" not in log and "Undefined control sequence" not in log


def test_latex_fits_a_6_5_inch_text_width(tmp_path):
    """Eight metric columns are far wider than 6.5 in: scaled to the text width, no overfull box."""
    exe = _pdflatex()
    names = [f"metric-{i}@preset-{i}" for i in range(8)]
    records = [record(label, [result(n, 10.0 + i + 0.5 * k, 0.25) for i, n in enumerate(names)], seed=seed)
               for k, label in enumerate(["DiscoDiff_v2 large model", "Tango 2"]) for seed in (0, 1)]
    body = latex.render_table(build_table(typed(records)))
    doc = latex.document(body).replace("\\documentclass{article}",
                                       "\\documentclass{article}\n\\usepackage[textwidth=6.5in]{geometry}")
    (tmp_path / "doc.tex").write_text(doc, encoding="utf-8")
    proc = subprocess.run([exe, "-interaction=nonstopmode", "-halt-on-error", "doc.tex"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    log = (tmp_path / "doc.log").read_text(errors="replace")
    assert proc.returncode == 0, log[-3000:]
    assert "Overfull \\hbox" not in log


def test_latex_says_constant_columns_once_and_which_rows_are_averaged():
    records = models_records()[1:3] + models_records()[4:6]  # Tango (2 seeds), noise (2 seeds): 16 kHz, 10 s
    records = [r for r in records if not (r["cell"]["label"] == "noise" and r["cell"]["seed"] == 1)]
    tex = latex.render_table(build_table(typed(records), group_by=["label"]))
    assert "All rows: 16 kHz, 10 s clips." in tex
    assert "SR (kHz)" not in tex and "Dur. (s)" not in tex
    rows = [line for line in tex.splitlines() if line.startswith(("Tango", "noise"))]
    assert rows[0].endswith("& 2 cells \\\\") and rows[1].endswith("& clips \\\\")
    assert "Interval column: clips = 95\\% bootstrap over the clips of one cell; $n$ cells = mean over $n$ " \
           "cells (seeds) with a 95\\% Student-t interval." in tex
    note = tex.split("\\footnotesize\\raggedright ")[1]
    assert note.startswith("Reference: synthetic") and "vggish@audioldm v1" in note  # provenance under the table
    assert "vggish@audioldm v1" not in tex.split("\\caption{")[1].split("\\label")[0]  # not in the caption


# ------------------------------------------------------------------------------------ CSV

def test_csv_is_full_precision_and_formula_safe():
    records = models_records()
    records[2]["cell"]["label"] = records[5]["cell"]["label"] = "=HYPERLINK(\"x\")"
    table = build_table(typed(records), group_by=["label"])
    rows = list(csv.DictReader(io.StringIO(csv_table.render_table(table))))
    assert [r["label"] for r in rows] == [NASTY, "Tango", "'=HYPERLINK(\"x\")"]
    assert float(rows[1]["fad-vggish@audioldm"]) == (1.6 + 1.6001) / 2  # not rounded
    assert rows[2]["fad-vggish@google[untrained]"] == ""  # missing stays missing, never 0
    assert rows[0]["n"] == "2" and rows[0]["cells"].count(";") == 1
    assert rows[0]["fad-vggish@audioldm:ci_level"] == "0.95"


# ------------------------------------------------------------------------------------ plots

def _png_variance(path):
    from matplotlib.image import imread

    return float(np.asarray(imread(path))[..., :3].std())


def test_leaderboard_plots_for_steps_rates_and_checkpoints(tmp_path):
    paths = leaderboard_plots(typed(sweep_records()), tmp_path)
    names = sorted(p.name for p in paths)
    for metric in ("clap_laion", "fad-vggish_audioldm"):
        for axis in ("steps", "sample_rate", "checkpoint"):
            assert f"{metric}_vs_{axis}.png" in names and f"{metric}_vs_{axis}.pdf" in names
    for p in paths:
        if p.suffix == ".png":
            assert _png_variance(p) > 0.02, p
        else:
            data = p.read_bytes()
            assert data.startswith(b"%PDF") and b"/Type3" not in data  # TrueType fonts, as publishers ask
            assert b"CreationDate" not in data  # reruns give identical files


def test_without_a_varying_axis_models_get_bars_and_baselines_lines(tmp_path, monkeypatch):
    from leaderboards import plots

    drawn = {}
    real = plots._save

    def spy(fig, stem, formats):
        ax = fig.axes[0]
        drawn[stem.name] = ([t.get_text() for t in ax.get_xticklabels()], [ln.get_label() for ln in ax.get_lines()
                                                                           if ln.get_linestyle() == "--"],
                            ax.get_title())
        return real(fig, stem, formats)

    monkeypatch.setattr(plots, "_save", spy)
    paths = leaderboard_plots(typed(models_records()), tmp_path)
    assert sorted(p.name for p in paths) == sorted(f"{stem}.{ext}" for ext in ("png", "pdf") for stem in (
        "fad-vggish_audioldm_by_model", "fad-vggish_google_untrained_by_model"))
    ticks, baselines, title = drawn["fad-vggish_audioldm_by_model"]
    assert ticks == ["DiscoDiff_v2 & co 1…, 48 kHz", "Tango, 16 kHz"]  # a bar per model, seeds averaged
    assert [b.split(":")[0] for b in baselines] == ["noise, 16 kHz"]  # the baseline as a line
    assert title == "bars: 95% CI (Student-t over seeds)"
    for p in paths:
        if p.suffix == ".png":
            assert _png_variance(p) > 0.02, p


# ------------------------------------------------------------------------------------ sources

def _write_records(directory, records):
    (directory / "records").mkdir(parents=True)
    for r in records:
        (directory / "records" / f"{r['cell_id']}.json").write_text(json.dumps(r))
        (directory / "records" / f"{r['cell_id']}.tracking.json").write_text("{}")  # sidecars are skipped
    return directory


def test_load_records_from_a_results_dir_a_records_dir_or_a_file(tmp_path):
    records = models_records()
    _write_records(tmp_path, records)
    assert len(load_records(tmp_path)) == len(records)
    assert len(load_records(tmp_path / "records")) == len(records)
    one = tmp_path / "records" / f"{records[1]['cell_id']}.json"
    assert load_records(one)[0].label == "Tango"
    (tmp_path / "empty").mkdir()
    with pytest.raises(BenchError, match="no RunRecords"):
        load_records(tmp_path / "empty")
    (tmp_path / "records" / "zz.json").write_text('{"schema": "other"}')
    with pytest.raises(BenchError, match="zz.json: not a RunRecord"):
        load_records(tmp_path)


def test_load_records_from_mlflow_keeps_the_latest_run_per_cell(tmp_path):
    from bench.tracking import log_record

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    records = models_records()[:3]
    for r in reversed(records):  # logged in another order than the cell ids sort in
        log_record(RunRecord.from_dict(r), uri, "paper", tmp_path / "artifacts")
    rerun = json.loads(json.dumps(records[1]))
    rerun["metrics"][0]["value"] = 0.5
    log_record(RunRecord.from_dict(rerun), uri, "paper", tmp_path / "artifacts")  # a --force rerun of the same cell
    loaded = load_mlflow_records("paper", uri)
    assert [r.cell_id for r in loaded] == sorted(r["cell_id"] for r in records)
    _write_records(tmp_path / "res", records)
    assert [r.cell_id for r in loaded] == [r.cell_id for r in load_records(tmp_path / "res")]  # same rows
    assert loaded[1].metrics[0]["value"] == 0.5
    with pytest.raises(BenchError, match="no MLflow experiment 'other'.*paper"):
        load_mlflow_records("other", uri)
    with pytest.raises(BenchError, match="does not exist"):
        load_mlflow_records("paper", f"sqlite:///{tmp_path / 'nope.db'}")


# ------------------------------------------------------------------------------------ CLI

def test_bench_leaderboard_command_renders_every_format(tmp_path, capsys):
    from bench.cli import main

    _write_records(tmp_path / "res", sweep_records())
    for fmt, marker in (("md", "## AudioLDM_s"), ("latex", r"\toprule"), ("csv", "label,steps"),
                        ("html", "<table id=\"leaderboard\">")):
        out = tmp_path / f"board.{fmt}"
        assert main(["leaderboard", "--records", str(tmp_path / "res"), "--format", fmt, "--layout", "steps",
                     "--group-by", "label,steps", "--out", str(out)]) == 0
        assert marker in out.read_text(), fmt
    html_text = (tmp_path / "board.html").read_text()
    assert html_text.count("data:image/png;base64,") == 6  # 2 metrics x steps, rates, checkpoints
    assert main(["leaderboard", "--records", str(tmp_path / "res"), "--metrics", "clap@laion",
                 "--plots", str(tmp_path / "figs")]) == 0
    out = capsys.readouterr().out
    assert "clap@laion ↑" in out and "fad-vggish" not in out.split("Reference set")[0]
    assert len(list((tmp_path / "figs").glob("*.pdf"))) == 3


def test_bench_leaderboard_reports_bad_input_without_traceback(tmp_path, capsys):
    from bench.cli import main

    assert main(["leaderboard", "--records", str(tmp_path / "missing")]) == 2
    assert "no such records file or directory" in capsys.readouterr().err


# ------------------------------------------------------------------------------------ CI summary

def _outcome(tmp_path, records, gates=(), errors=()):
    return SimpleNamespace(results_dir=tmp_path, records=typed(records), gates=list(gates), errors=list(errors),
                           tracking_errors=[], exit_code=1 if any(not g.passed for g in gates) else 0)


def test_ci_summary_gates_and_deltas(tmp_path, monkeypatch):
    from bench.runner import GateResult
    from bench.suite import parse_gate

    baseline = models_records()
    current = json.loads(json.dumps(baseline))
    current[0]["metrics"][0]["value"] = 1.2  # lower FAD: better
    current[1]["metrics"][0]["value"] = 2.0  # worse
    current[2]["metrics"][0] = result("fad-vggish@audioldm", 9.0, protocol_version=2)  # not comparable
    current.append(record("newcomer", [result("fad-vggish@audioldm", 3.0)]))
    gates = [GateResult(parse_gate("fad-vggish@audioldm <= 1.8", "t"), current[0]["cell_id"], NASTY, 1.2,
                        False, True),
             GateResult(parse_gate("fad-vggish@audioldm <= 1.8", "t"), current[1]["cell_id"], "Tango", 2.0,
                        False, False)]
    step_summary = tmp_path / "step.md"
    step_summary.write_text("earlier step\n")
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(step_summary))
    (tmp_path / "base").mkdir()
    _write_records(tmp_path / "base", baseline)
    path = ci_summary.write("paper", _outcome(tmp_path, current, gates), tmp_path / "base")
    text = path.read_text()
    assert path == tmp_path / "ci-summary.md"
    assert "❌ 1 of 2 gate checks failed" in text
    assert "| ✅ PASS | `fad-vggish@audioldm <= 1.8` | DiscoDiff_v2 & co 100% #1 $ | 1.2 |" in text
    assert "| ❌ FAIL | `fad-vggish@audioldm <= 1.8` | Tango | 2 |" in text
    assert "| 1.500 | 1.200 | -0.300 (-20.0%) | better |" in text
    assert "| 1.600 | 2.000 | +0.400 (+25.0%) | worse |" in text
    assert "not comparable: protocol or backbone differs" in text
    assert "| same |" in text  # untouched cells
    assert "New cells (not in the baseline): newcomer" in text
    assert step_summary.read_text().startswith("earlier step\n## bench run `paper`")


def test_ci_summary_without_baseline_or_gates(tmp_path, monkeypatch):
    monkeypatch.delenv("GITHUB_STEP_SUMMARY", raising=False)
    text = ci_summary.render("paper", _outcome(tmp_path, models_records()))
    assert "✅ done (no gates)" in text and "Deltas" not in text and "Untrained backbone" in text


TINY = """
name = "tiny"
metrics = ["fad-vggish@audioldm"]
[reference]
builtin = "synthetic"
n_clips = 6
duration_s = 1.5
[generation]
duration_s = 1.5
[[generators]]
name = "reference"
[[generators]]
name = "noise"
[weights]
mode = "untrained"
[scoring]
bootstrap = 10
[[gates]]
check = "fad-vggish@audioldm <= 0.001"
generator = "reference"
"""


@pytest.mark.slow
def test_bench_run_writes_ci_summary_against_a_baseline(tmp_path, cache_dir, monkeypatch):
    from bench.cli import main

    suite = tmp_path / "suite.toml"
    suite.write_text(TINY)
    assert main(["run", str(suite), "--out", str(tmp_path / "base"), "--quiet", "--no-tracking"]) == 0
    assert "✅ passed (1 gate checks)" in (tmp_path / "base" / "ci-summary.md").read_text()
    step_summary = tmp_path / "step.md"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(step_summary))
    assert main(["run", str(suite), "--out", str(tmp_path / "new"), "--quiet", "--no-tracking",
                 "--baseline", str(tmp_path / "base")]) == 0
    text = (tmp_path / "new" / "ci-summary.md").read_text()
    assert "### Deltas vs baseline" in text and text.count("| same |") == 2  # deterministic: no change
    assert step_summary.read_text() == text + "\n"
    assert main(["run", str(suite), "--out", str(tmp_path / "x"), "--quiet", "--no-tracking",
                 "--baseline", str(tmp_path / "nothing")]) == 2
    assert not (tmp_path / "x").exists()  # a bad baseline stops before any work
