"""The rating web app as a rater uses it: headless Chromium (Debian's chromium + chromium-driver, driven
by selenium) against the real server (waitress). The rater opens the link, plays the clips, answers,
closes the browser, comes back with a fresh browser, finishes; the database then holds exactly those
answers. Screenshots at phone and desktop width go to the test's tmp folder (and $LISTEN_SCREENSHOTS).

In CI (env CI set) a missing browser or driver fails the test instead of skipping it.
"""
import os
import shutil
import socket
import threading
from pathlib import Path

import pytest

from bench.listen import store
from bench.listen.app import make_app
from bench.listen.study import create_study, load_study, read_links

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", "--mute-audio",
         "--autoplay-policy=no-user-gesture-required"]


def _need(name: str, package: str) -> str:
    exe = shutil.which(name)
    if exe:
        return exe
    if os.environ.get("CI"):
        pytest.fail(f"{name} is missing in CI: apt-get install -y --no-install-recommends {package}")
    pytest.skip(f"{name} not installed (Debian: apt-get install {package})")


@pytest.fixture
def browser_factory(tmp_path):
    chromium = _need("chromium", "chromium")
    driver_exe = _need("chromedriver", "chromium-driver")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    drivers = []

    def start(width: int, height: int):
        options = webdriver.ChromeOptions()
        options.binary_location = chromium
        for flag in FLAGS + [f"--window-size={width},{height}", f"--user-data-dir={tmp_path}/p{len(drivers)}"]:
            options.add_argument(flag)
        driver = webdriver.Chrome(service=Service(driver_exe), options=options)
        driver.set_page_load_timeout(30)
        drivers.append(driver)
        return driver

    yield start
    for driver in drivers:
        try:
            driver.quit()
        except Exception:  # already closed by the test
            pass


@pytest.fixture
def server(listening_results, tmp_path):
    from waitress.server import create_server

    study_dir = tmp_path / "study"
    create_study(listening_results, "mos-ovl-rel", clips_per_rater=3, n_raters=2, out=study_dir, seed=5)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    srv = create_server(make_app(study_dir), host="127.0.0.1", port=port, threads=2)
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    yield study_dir, f"http://127.0.0.1:{port}"
    srv.close()


def _shot(driver, tmp_path, name):
    path = tmp_path / f"{name}.png"
    assert driver.save_screenshot(str(path))
    target = os.environ.get("LISTEN_SCREENSHOTS")
    if target:
        Path(target).mkdir(parents=True, exist_ok=True)
        shutil.copy(path, Path(target) / path.name)
    return path


def _answer_page(driver, study, choice):
    """Play every clip, wait until the page lets us go on, pick an answer per question, press Next."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as EC
    from selenium.webdriver.support.ui import WebDriverWait

    wait = WebDriverWait(driver, 20)
    button = driver.find_element(By.CSS_SELECTOR, "#trial button")
    assert not button.is_enabled()  # nothing played yet
    audios = driver.find_elements(By.CSS_SELECTOR, "audio[data-clip]")
    for audio in audios:
        driver.execute_script("arguments[0].play();", audio)
    wait.until(lambda d: all(d.execute_script("return arguments[0].currentTime > 0 || arguments[0].ended;", a)
                             for a in audios))
    wait.until(EC.element_to_be_clickable((By.CSS_SELECTOR, "#trial button")))
    clip = audios[0].get_attribute("data-clip")
    given = {}
    for q in study["protocol"]["questions"]:
        score = choice(study["clips"][clip], q["id"])
        driver.find_element(By.CSS_SELECTOR, f'input[name="answer:{clip}:{q["id"]}"][value="{score}"]').click()
        given[(clip, q["id"])] = float(score)
    progress = driver.find_element(By.ID, "progress").text
    _submit_and_wait_for_next_page(driver, button)
    return progress, given


def _submit_and_wait_for_next_page(driver, button):
    """Click and wait until a new document has loaded. A marker on the old page's window tells the pages
    apart; polling an old element for staleness instead races the navigation (chromedriver can answer
    "Node with given id does not belong to the document" mid-swap), so errors while the page swaps are
    retried until the timeout."""
    from selenium.common.exceptions import WebDriverException
    from selenium.webdriver.support.ui import WebDriverWait

    driver.execute_script("window.__benchOldPage = true;")
    button.click()
    WebDriverWait(driver, 20, ignored_exceptions=(WebDriverException,)).until(
        lambda d: d.execute_script("return !window.__benchOldPage && document.readyState === 'complete';"))


def test_rater_answers_leaves_returns_and_finishes(server, browser_factory, tmp_path):
    study_dir, base = server
    study = load_study(study_dir)
    rater_id, path = read_links(study_dir)[0]
    other_id, other_path = read_links(study_dir)[1]
    n_pages = len(study["raters"][0]["trials"])

    def choice(info, question):
        return 1 if info["role"] == "attention" else (4 if question == "ovl" else 3)

    phone = browser_factory(390, 844)
    phone.get(base + path)
    assert phone.title == "Listening test"
    # Phone width: nothing wider than the screen.
    assert phone.execute_script("return document.documentElement.scrollWidth <= window.innerWidth")
    _shot(phone, tmp_path, "listen-phone-page1")
    given = {}
    for _ in range(2):
        progress, answers = _answer_page(phone, study, choice)
        given.update(answers)
    assert progress == f"Page 2 of {n_pages}"
    phone.quit()  # the rater closes the browser ...

    desktop = browser_factory(1100, 800)  # ... and comes back later on another one
    desktop.get(base + path)
    from selenium.webdriver.common.by import By

    assert desktop.find_element(By.ID, "progress").text == f"Page 3 of {n_pages}"
    _shot(desktop, tmp_path, "listen-desktop-resume")
    for _ in range(n_pages - 2):
        progress, answers = _answer_page(desktop, study, choice)
        given.update(answers)
    assert "all 5 pages are answered" in desktop.find_element(By.ID, "done").text
    _shot(desktop, tmp_path, "listen-desktop-done")
    desktop.get(base + path)  # reloading a finished test changes nothing
    desktop.back()

    with store.connect(study_dir / "ratings.sqlite") as conn:
        rows = store.all_answers(conn)
        plays = store.play_counts(conn)
    assert {(r["clip"], r["question"]): r["score"] for r in rows} == given
    assert {r["rater"] for r in rows} == {rater_id} and len(rows) == len(given) == 2 * n_pages
    assert all(plays.get((rater_id, clip), 0) >= 1 for clip, _ in given)
    # The other rater's link starts at their own page 1; the first rater's answers are not shown.
    desktop.get(base + other_path)
    assert desktop.find_element(By.ID, "progress").text == f"Page 1 of {n_pages}"
    assert not desktop.find_elements(By.CSS_SELECTOR, "input:checked")


def test_mushra_page_on_a_phone(listening_results, browser_factory, tmp_path):
    """The MUSHRA page (reference, six samples with sliders) fits a phone; slider values are saved."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from waitress.server import create_server

    study_dir = tmp_path / "mushra"
    create_study(listening_results, "mushra", clips_per_rater=1, n_raters=1, out=study_dir, seed=2)
    study = load_study(study_dir)
    srv = create_server(make_app(study_dir), host="127.0.0.1", port=0, threads=2)
    threading.Thread(target=srv.run, daemon=True).start()
    try:
        driver = browser_factory(390, 844)
        driver.get(f"http://127.0.0.1:{srv.effective_port}{read_links(study_dir)[0][1]}")
        assert driver.execute_script("return document.documentElement.scrollWidth <= window.innerWidth")
        _shot(driver, tmp_path, "listen-mushra-phone")
        for audio in driver.find_elements(By.CSS_SELECTOR, "audio[data-clip]"):
            driver.execute_script("arguments[0].play();", audio)
        sliders = driver.find_elements(By.CSS_SELECTOR, '.slider input[type="range"]')
        assert len(sliders) == 6
        expected = {}
        for k, slider in enumerate(sliders):
            key = Keys.ARROW_RIGHT if k % 2 else Keys.ARROW_LEFT
            slider.send_keys(*[key] * (k + 1))  # 50 -> 49, 52, 47, 54, 45, 56
            clip = slider.get_attribute("name").split(":")[1]
            expected[clip] = 50.0 + (k + 1) * (1 if k % 2 else -1)
            assert slider.find_element(By.XPATH, "following-sibling::output").text == str(int(expected[clip]))
        from selenium.webdriver.support.ui import WebDriverWait

        WebDriverWait(driver, 20).until(lambda d: d.find_element(By.CSS_SELECTOR, "#trial button").is_enabled())
        _submit_and_wait_for_next_page(driver, driver.find_element(By.CSS_SELECTOR, "#trial button"))
        assert driver.find_elements(By.ID, "done")
    finally:
        srv.close()
    with store.connect(study_dir / "ratings.sqlite") as conn:
        rows = store.all_answers(conn)
    assert {r["clip"]: r["score"] for r in rows} == expected
    assert set(expected) == set(study["raters"][0]["trials"][0]["clips"])
