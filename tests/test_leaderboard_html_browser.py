"""The HTML leaderboard as a user loads it: headless Chromium opens the file, runs its script, and we
check the DOM (sorted on load from the URL hash, injected markup inert) and a screenshot (not blank).

Needs Debian's `chromium`; in CI (env CI set) a missing browser fails the test instead of skipping it.
"""
import os
import shutil
import subprocess
from html.parser import HTMLParser

import numpy as np
import pytest

from leaderboards import html
from leaderboards.plots import leaderboard_plots
from leaderboards.table import build_table, constant_fields
from tests.test_leaderboards import models_records, record, result, sweep_records, typed

INJECTED = ('<script>document.title="pwned"</script><img src=x onerror="document.title=\'pwned\'">'
            '<b id="injected">bold</b>')
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def _chromium():
    for name in ("chromium", "chromium-browser", "google-chrome"):
        exe = shutil.which(name)
        if exe:
            return exe
    if os.environ.get("CI"):
        pytest.fail("chromium is missing in CI: apt-get install -y --no-install-recommends chromium")
    pytest.skip("headless Chromium not installed (Debian: apt-get install chromium)")


def _browse(exe, tmp_path, url, *args):
    profile = tmp_path / f"profile-{len(list(tmp_path.glob('profile-*')))}"
    proc = subprocess.run([exe, *FLAGS, f"--user-data-dir={profile}", *args, url], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout


class _Dom(HTMLParser):
    """Every element with its attributes, and the text of each cell of the table's data rows."""

    def __init__(self):
        super().__init__()
        self.elements, self.rows, self.title, self._cell, self._in_title = [], [], "", None, False

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.elements.append((tag, attrs))
        if tag == "tr" and "row" in (attrs.get("class") or "").split():
            self.rows.append([])
        elif tag == "td" and self.rows and self._cell is None:
            self._cell = {"sort": attrs.get("data-sort"), "text": "", "class": attrs.get("class") or ""}
        self._in_title = tag == "title"

    def handle_endtag(self, tag):
        self._in_title = False
        if tag == "td" and self._cell is not None:
            self.rows[-1].append(self._cell)
            self._cell = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell["text"] += data
        if self._in_title:
            self.title += data


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("html")
    records = models_records() + sweep_records()
    for r in records:
        if r["cell"]["label"] == "Tango":
            r["cell"]["label"] = "Tango " + INJECTED
    table = build_table(typed(records), group_by=["label", "steps", "sample_rate", "checkpoint"],
                        title="Leaderboard " + INJECTED)
    plots = leaderboard_plots(typed(records), tmp / "plots")
    path = tmp / "board.html"
    path.write_text(html.render_table(table, caption="Caption " + INJECTED, plots=plots), encoding="utf-8")
    return path, table, [p for p in plots if p.suffix == ".png"]


def test_page_is_self_contained_and_escapes_everything(page):
    path, _, pngs = page
    text = path.read_text()
    assert "http://" not in text and "https://" not in text  # nothing to fetch at view time
    assert "default-src 'none'" in text
    assert text.count("<script>") == 1 and text.count("<img ") == len(pngs) > 0
    assert "&lt;script&gt;document.title=&quot;pwned&quot;" in text


def test_dom_in_chromium_is_sorted_from_the_url_hash_and_has_no_injected_element(page, tmp_path):
    exe = _chromium()
    path, table, pngs = page
    shown = [c.key for c in table.columns if c.key not in constant_fields(table)]  # constants: in the notes
    column = shown.index("fad-vggish@audioldm")
    url = path.as_uri() + "#sort=fad-vggish%40audioldm&dir=desc"
    dom = _Dom()
    dom.feed(_browse(exe, tmp_path, url, "--dump-dom"))

    body = next(attrs for tag, attrs in dom.elements if tag == "body")
    assert body.get("data-ready") == "1"  # the page's script ran (its CSP hash is right)
    values = [row[column]["sort"] for row in dom.rows]
    numbers = [float(v) for v in values if v]
    assert len(dom.rows) == len(table.rows) and numbers == sorted(numbers, reverse=True)
    assert values.index(max(values, key=lambda v: float(v) if v else -1)) == 0
    assert all(v == "" for v in values[len(numbers):])  # rows without the metric come last
    sorted_head = [a for tag, a in dom.elements if tag == "th" and a.get("aria-sort")]
    assert [(a["data-key"], a["aria-sort"]) for a in sorted_head] == [("fad-vggish@audioldm", "descending")]

    # Injected markup stayed text: no element it would have created exists.
    assert dom.title == "Leaderboard " + INJECTED  # the injected script did not rename the page
    assert [t for t, _ in dom.elements].count("script") == 1
    assert not [a for t, a in dom.elements if t == "img" and not a.get("src", "").startswith("data:image/png")]
    assert not [a for t, a in dom.elements if any(k.startswith("on") for k in a)]
    assert not [a for t, a in dom.elements if a.get("id") == "injected"]
    labels = [row[0]["text"] for row in dom.rows]
    assert "Tango " + INJECTED in labels
    best = [row for row in dom.rows if "best" in row[column]["class"].split()]
    assert {row[0]["text"] for row in best} == {"DiscoDiff_v2 & co 100% #1 $", "Tango " + INJECTED}


def test_screenshot_shows_the_table_and_plots(page, tmp_path):
    exe = _chromium()
    path, _, _ = page
    shot = tmp_path / "board.png"
    _browse(exe, tmp_path, path.as_uri(), f"--screenshot={shot}", "--window-size=1400,2400",
            "--hide-scrollbars")
    from matplotlib.image import imread

    pixels = np.asarray(imread(shot))[..., :3]
    assert pixels.shape[:2] == (2400, 1400)
    assert pixels.std() > 0.05  # not a blank page
    rows_with_ink = (pixels.min(axis=(1, 2)) < 0.5).mean()
    assert rows_with_ink > 0.3  # text and plots down the page, not one line on white
    colourful = (pixels.max(axis=2) - pixels.min(axis=2) > 0.3).sum()
    assert colourful > 2000  # the plots' coloured lines and bands rendered
    if os.environ.get("BENCH_KEEP_SCREENSHOT"):
        shutil.copy(shot, os.environ["BENCH_KEEP_SCREENSHOT"])


def test_three_metrics_fit_a_1400_px_window_without_sideways_scrolling(tmp_path):
    """Laid out by Chromium: the table's scroll container is no wider than its content box."""
    exe = _chromium()
    metrics = ["fad-vggish@audioldm[untrained]", "fid-mel@diffsound[untrained]", "kl-mel@diffsound[untrained]"]
    records = [record(f"{label} (untrained)", [result(m, 10.0 + i + seed, 1.5, untrained=True)
                                               for i, m in enumerate(metrics)],
                      seed=seed, steps=10, checkpoint=f"/home/user/runs/{label}/step-{step}.pt")
               for label, step in (("archisound-tiny", 100), ("archisound-tiny", 200), ("discodiff-small", 300))
               for seed in (0, 1)]
    records += [record("noise", [result(m, 40.0, 2.0, untrained=True) for m in metrics])]
    page = html.render_table(build_table(typed(records), group_by=["label", "checkpoint", "steps"]), plots=[])
    assert "Interval" in page and "cells" in page and "clips" in page
    # A copy with a measuring script instead of the page's CSP (the page itself allows only its own script).
    probe = page.replace('<meta http-equiv="Content-Security-Policy"', '<meta name="x"').replace(
        "</body>", "<script>var s = document.querySelector('.scroll'); document.title = s.scrollWidth + ' ' + "
        "s.clientWidth + ' ' + document.documentElement.scrollWidth;</script></body>")
    (tmp_path / "probe.html").write_text(probe, encoding="utf-8")
    dom = _Dom()
    dom.feed(_browse(exe, tmp_path, (tmp_path / "probe.html").as_uri(), "--dump-dom", "--window-size=1400,900"))
    content, box, document_width = map(int, dom.title.split())
    assert content <= box and document_width <= 1400, dom.title


def _per_clip_records():
    """Two models whose fd results carry per-clip values (one clip an outlier), the KL per pair beside them."""
    out = []
    for label, base, outlier in (("model-a", 1.0, "dog_3"), ("model-b", 2.0, None)):
        per_fd = [{"id": f"dog_{i}", "value": base + 0.1 * i + (50.0 if f"dog_{i}" == outlier else 0.0),
                   "embeddings": 20} for i in range(6)]
        per_kl = [{"id": f"dog_{i}", "reference_id": f"dog_{i}", "value": 0.5 + 0.01 * i} for i in range(6)]
        out.append(record(label, [{**result("fad-vggish@audioldm", base), "per_clip": per_fd},
                                  {**result("kl-panns@audioldm", 0.5), "per_clip": per_kl}]))
    return out


def test_per_clip_table_sorts_worst_first_on_click_in_chromium(tmp_path):
    exe = _chromium()
    driver_exe = shutil.which("chromedriver")
    if driver_exe is None:
        if os.environ.get("CI"):
            pytest.fail("chromedriver is missing in CI: apt-get install -y --no-install-recommends chromium-driver")
        pytest.skip("chromedriver not installed (Debian: apt-get install chromium-driver)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By

    table = build_table(typed(_per_clip_records()), title="Per-clip outliers")
    assert [c.key for c in table.clip_columns] == ["fad-vggish@audioldm", "kl-panns@audioldm"]
    assert len(table.clip_rows) == 12
    path = tmp_path / "board.html"
    path.write_text(html.render_table(table), encoding="utf-8")
    options = webdriver.ChromeOptions()
    options.binary_location = exe
    for flag in FLAGS + ["--window-size=1200,1400", f"--user-data-dir={tmp_path}/profile"]:
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(driver_exe), options=options)
    try:
        driver.get(path.as_uri())
        assert driver.find_element(By.TAG_NAME, "body").get_attribute("data-ready") == "1"
        header = driver.find_element(By.CSS_SELECTOR, '#clips th[data-key="fad-vggish@audioldm"]')

        def column(index):
            return [r.find_elements(By.TAG_NAME, "td")[index].get_attribute("data-sort")
                    for r in driver.find_elements(By.CSS_SELECTOR, "#clips tbody tr.row")]

        header.click()  # lower is better: the first click puts the largest (worst) per-clip FD first
        values = [float(v) for v in column(3)]
        assert values == sorted(values, reverse=True) and values[0] == pytest.approx(51.3)
        assert column(2)[0] == "dog_3" and column(0)[0] == "model-a"
        assert header.get_attribute("aria-sort") == "descending"
        header.click()
        assert [float(v) for v in column(3)] == sorted(values)
        driver.find_element(By.CSS_SELECTOR, '#clips th[data-key="fad-vggish@audioldm"]').click()
        shot = tmp_path / "per-clip.png"
        driver.save_screenshot(str(shot))
        if os.environ.get("BENCH_KEEP_SCREENSHOT"):
            shutil.copy(shot, os.environ["BENCH_KEEP_SCREENSHOT"])
        # The main table still sorts from its own headers (two sortable tables on one page).
        driver.find_element(By.CSS_SELECTOR, '#leaderboard th[data-key="fad-vggish@audioldm"]').click()
        labels = [r.find_elements(By.TAG_NAME, "td")[0].text
                  for r in driver.find_elements(By.CSS_SELECTOR, "#leaderboard tbody tr.row")]
        assert labels == ["model-a", "model-b"]
    finally:
        driver.quit()
    from matplotlib.image import imread

    pixels = np.asarray(imread(shot))[..., :3]
    assert pixels.std() > 0.05 and (pixels.min(axis=(1, 2)) < 0.5).mean() > 0.1
