"""The main flows in a real headless Chromium (Debian's chromium + chromium-driver, driven by
selenium) against ``python -m pipeline serve`` on a copy of the demo store: log in, upload
streams/suspect.jpg, open the top identity, play a segment, merge two identities, log out.

Screenshots go to the test's tmp folder and, when CAMREID_ARTIFACTS is set, are copied there.
"""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pipeline.store import StoreReader

from .conftest import PASSWORD

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[3]
CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--window-size=1280,1000")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def server(fresh_store, tmp_path):
    """``python -m pipeline serve`` on a free loopback port; yields its base URL."""
    port = _free_port()
    log = (tmp_path / "serve.log").open("w")
    proc = subprocess.Popen([sys.executable, "-m", "pipeline", "serve", "--db", str(fresh_store), "--port", str(port),
                             "--device", "cpu"], cwd=REPO, stdout=log, stderr=subprocess.STDOUT,
                            env={**os.environ, "YOLO_OFFLINE": "1"})
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            if proc.poll() is not None:
                pytest.fail(f"serve exited: {(tmp_path / 'serve.log').read_text()}")
            time.sleep(0.3)
    yield url
    proc.terminate()
    proc.wait(timeout=20)
    log.close()


@pytest.fixture
def browser(tmp_path):
    if not CHROMIUM.is_file() or not CHROMEDRIVER.is_file():
        pytest.skip(f"no {CHROMIUM} / {CHROMEDRIVER}: apt-get install -y chromium chromium-driver")
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (pip install selenium)")
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = str(CHROMIUM)
    for flag in FLAGS:
        opts.add_argument(flag)
    opts.add_argument(f"--user-data-dir={tmp_path / 'chromium-profile'}")
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=opts)
    driver.set_page_load_timeout(120)
    yield driver
    driver.quit()


def _shot(driver, tmp_path: Path, name: str) -> Path:
    path = tmp_path / "screens" / name
    path.parent.mkdir(exist_ok=True)
    height = driver.execute_script("return document.documentElement.scrollHeight")
    driver.set_window_size(1280, min(max(700, height + 140), 2400))  # + the window's own frame
    assert driver.save_screenshot(str(path)), f"no screenshot {name}"
    if os.environ.get("CAMREID_ARTIFACTS"):
        out = Path(os.environ["CAMREID_ARTIFACTS"])
        out.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, out / name)
    return path


def test_login_search_identity_play_merge_logout(server, browser, fresh_store, tmp_path):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    d, wait = browser, WebDriverWait(browser, 180)  # the first search loads the embedder; the CPU is shared
    d.get(server + "/search")
    assert "/login" in d.current_url
    d.find_element(By.ID, "name").send_keys("op")
    d.find_element(By.ID, "password").send_keys(PASSWORD)
    _shot(d, tmp_path, "01_login.png")
    d.find_element(By.ID, "login").click()
    wait.until(ec.presence_of_element_located((By.ID, "search-form")))

    d.find_element(By.ID, "photo").send_keys(str(REPO / "streams" / "suspect.jpg"))
    canvas = wait.until(ec.visibility_of_element_located((By.ID, "canvas")))
    assert canvas.size["height"] > 50
    w, h = canvas.size["width"], canvas.size["height"]  # draw the person's box: most of the crop
    ActionChains(d).move_to_element_with_offset(canvas, -w * 0.45, -h * 0.47).click_and_hold() \
        .move_to_element_with_offset(canvas, w * 0.45, h * 0.47).release().perform()
    box = [float(v) for v in d.find_element(By.ID, "box").get_attribute("value").split(",")]
    assert len(box) == 4 and box[2] - box[0] > 80 and box[3] - box[1] > 170  # photo pixels (104x196)
    _shot(d, tmp_path, "02_search_form.png")
    d.find_element(By.ID, "search-button").click()
    first = wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, "#results .identity")))
    thumbs = d.find_elements(By.CSS_SELECTOR, "#results .tile img")
    loaded = "return arguments[0].complete && arguments[0].naturalWidth > 0"
    assert thumbs
    wait.until(lambda _: all(d.execute_script(loaded, t) for t in thumbs))
    _shot(d, tmp_path, "03_results.png")

    link = first.find_element(By.CSS_SELECTOR, ".open-identity")
    top_label = link.text
    link.click()
    wait.until(ec.presence_of_element_located((By.ID, "identity-title")))
    assert d.find_element(By.ID, "identity-title").text.lower().startswith(top_label.split()[0])
    d.find_element(By.CSS_SELECTOR, ".sighting .play").click()
    video = d.find_element(By.CSS_SELECTOR, ".sighting video")
    wait.until(lambda _: d.execute_script("return arguments[0].readyState >= 2 && arguments[0].currentTime > 0.3",
                                          video))
    assert d.execute_script("return arguments[0].videoWidth", video) == 768  # decoded, full frames
    d.execute_script("arguments[0].pause()", video)
    _shot(d, tmp_path, "04_identity_playing.png")

    gid = int(d.current_url.split("/identity/")[1].split("?")[0])
    with StoreReader(fresh_store) as store:
        other = next(g for g in sorted(store.identities()) if g != gid)
        moved = {t.id for t in store.tracks(global_ids=[other])}
        n_before = len(store.tracks(global_ids=[gid]))
    d.find_element(By.ID, "merge-other").send_keys(str(other))
    d.find_element(By.ID, "merge").click()
    wait.until(lambda _: len(d.find_elements(By.CSS_SELECTOR, ".sighting")) == n_before + len(moved))
    with StoreReader(fresh_store) as store:
        assert {t.global_id for t in store.tracks(track_ids=sorted(moved))} == {gid}
    _shot(d, tmp_path, "05_identity_merged.png")

    from pipeline.access import audit

    searched = audit.read(fresh_store, user="op", action="search")[-1].details
    assert searched["filters"]["box"] == [round(v) for v in box]

    d.get(server + "/cameras")
    snaps = d.find_elements(By.CSS_SELECTOR, ".camera .snapshot")
    wait.until(lambda _: all(d.execute_script("return arguments[0].complete && arguments[0].naturalWidth", s)
                             for s in snaps))
    assert len(snaps) == 2
    _shot(d, tmp_path, "06_cameras.png")

    d.find_element(By.ID, "logout").click()
    wait.until(ec.presence_of_element_located((By.ID, "login")))
    d.get(server + "/identities")
    assert "/login" in d.current_url, "the session survived logging out"
