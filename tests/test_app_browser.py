"""The band explorer in a real browser: headless Chromium (Debian's ``chromium`` + ``chromium-driver``) via Selenium.

Starts ``uae app`` on a free loopback port in a subprocess, uploads a photograph, moves the band slider
with the keyboard, applies a high-pass filter and uploads a file that is not an image, asserting on the
page's pictures and messages. Screenshots of each state go to ``$UAE_TEST_ARTIFACTS/app`` (CI sets it),
else to the test's temp dir. Without Chromium the test skips, except under ``CI=true`` where it fails.
"""

from __future__ import annotations

import io
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
PHOTO = REPO / "tests" / "assets" / "chelsea.png"


def _in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def _missing(reason: str):
    if _in_ci():
        pytest.fail(f"browser test cannot run in CI: {reason}")
    pytest.skip(reason)


def _executables() -> tuple[str, str]:
    browser = os.environ.get("UAE_CHROMIUM") or next(
        (p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None
    )
    driver = os.environ.get("UAE_CHROMEDRIVER") or shutil.which("chromedriver")
    if not browser or not driver:
        _missing("needs Debian's chromium and chromium-driver (apt-get install chromium chromium-driver)")
    return browser, driver


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def artifacts(tmp_path) -> Path:
    root = os.environ.get("UAE_TEST_ARTIFACTS")
    out = Path(root) / "app" if root else tmp_path / "screenshots"
    out.mkdir(parents=True, exist_ok=True)
    return out


@pytest.fixture
def server():
    """``uae app`` on a free loopback port; yields its URL and stops it afterwards."""
    try:
        import gradio  # noqa: F401
    except ImportError:
        _missing("gradio is not installed (pip install -e '.[app]')")
    port = _free_port()
    env = dict(
        os.environ, PYTHONPATH=f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}", HF_HUB_OFFLINE="1"
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "uae.cli", "app", "--port", str(port), "--threads", "1"],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    url = f"http://127.0.0.1:{port}/"

    def wait_until_up() -> None:
        deadline = time.monotonic() + 90
        while True:
            try:
                with urllib.request.urlopen(url, timeout=1) as r:
                    if r.status == 200:
                        return
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                pytest.fail(f"uae app did not start:\n{proc.stdout.read() if proc.stdout else ''}")
            time.sleep(0.2)

    yield url, proc, wait_until_up
    proc.terminate()
    try:
        out, _ = proc.communicate(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate()
    assert "Traceback" not in out, out


@pytest.fixture
def browser():
    chromium, chromedriver = _executables()
    os.environ.setdefault("SE_OFFLINE", "true")  # Selenium Manager must not download anything
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = chromium
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--window-size=1280,2400",
    ):
        opts.add_argument(arg)
    driver = webdriver.Chrome(service=Service(executable_path=chromedriver), options=opts)
    driver.set_page_load_timeout(30)
    yield driver
    driver.quit()


def _text(driver, css: str) -> str:
    from selenium.webdriver.common.by import By

    els = driver.find_elements(By.CSS_SELECTOR, css)
    return els[0].text if els else ""


def _wait(driver, predicate, what: str, timeout: float = 20.0):
    from selenium.webdriver.support.ui import WebDriverWait

    try:
        return WebDriverWait(driver, timeout, poll_frequency=0.1).until(lambda d: predicate(d))
    except Exception as e:  # selenium's TimeoutException: say what we waited for
        raise AssertionError(f"timed out waiting for {what}; status: {_text(driver, '#status')!r}") from e


def _image(driver, elem_id: str) -> tuple[str, np.ndarray]:
    """The ``src`` of the picture shown in a Gradio image component and its pixels."""
    from selenium.webdriver.common.by import By

    src = driver.find_element(By.CSS_SELECTOR, f"#{elem_id} img").get_attribute("src")
    with urllib.request.urlopen(src, timeout=5) as r:
        return src, np.asarray(Image.open(io.BytesIO(r.read())).convert("RGB"), dtype=np.float32)


def _psnr(driver) -> float:
    m = re.search(r"PSNR ([0-9.]+) dB", _text(driver, "#decode-psnr"))
    assert m, _text(driver, "#decode-psnr")
    return float(m.group(1))


def test_band_explorer_in_chromium(server, browser, artifacts, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    url, proc, wait_until_up = server  # the server boots while the browser starts
    d = browser
    wait_until_up()
    d.get(url)
    _wait(d, lambda d: d.find_elements(By.CSS_SELECTOR, "#upload input[type=file]"), "the upload field")
    d.save_screenshot(str(artifacts / "0_start.png"))

    # 1. upload a photograph: input, reconstruction, metrics and charts appear
    d.find_element(By.CSS_SELECTOR, "#upload input[type=file]").send_keys(str(PHOTO))
    _wait(
        d,
        lambda d: "chelsea.png" in _text(d, "#status") and "PSNR" in _text(d, "#decode-psnr"),
        "the analysis",
    )
    _wait(d, lambda d: d.find_elements(By.CSS_SELECTOR, "#energy-chart img"), "the filter section")
    metrics = _text(d, "#metrics")
    assert re.search(r"PSNR [0-9.]+ dB, SSIM 0\.\d+", metrics), metrics
    for elem in ("input-image", "recon-image", "pca-image", "energy-chart", "spectrum-chart", "strip-image"):
        _, px = _image(d, elem)
        assert px.std() > 5, f"{elem} is blank"
    d.save_screenshot(str(artifacts / "1_uploaded_all_bands.png"))

    # 2. the band slider (keyboard on the range input, as a person would): Home -> band 0 only, then one step up
    k = int(d.find_element(By.CSS_SELECTOR, "#band-slider input[type=range]").get_attribute("max"))
    assert k >= 2
    shots: dict[int, tuple[float, np.ndarray]] = {k: (_psnr(d), _image(d, "decode-image")[1])}
    rng = d.find_element(By.CSS_SELECTOR, "#band-slider input[type=range]")
    rng.send_keys(Keys.HOME)
    _wait(
        d,
        lambda d: "band 0**" in _text(d, "#decode-psnr") or "band 0 (" in _text(d, "#decode-psnr"),
        "band 0",
    )
    shots[1] = (_psnr(d), _image(d, "decode-image")[1])
    d.save_screenshot(str(artifacts / "2_band0_only.png"))
    for n in range(2, k):
        rng.send_keys(Keys.ARROW_RIGHT)
        _wait(d, lambda d, n=n: f"bands 0..{n - 1}" in _text(d, "#decode-psnr"), f"bands 0..{n - 1}")
        shots[n] = (_psnr(d), _image(d, "decode-image")[1])
        d.save_screenshot(str(artifacts / f"3_bands_0_to_{n - 1}.png"))
    psnrs = [shots[n][0] for n in range(1, k + 1)]
    assert all(a < b for a, b in zip(psnrs, psnrs[1:])), f"PSNR must grow with the bands: {psnrs}"
    for n in range(1, k):
        diff = np.abs(shots[n][1] - shots[n + 1][1]).mean()
        assert diff > 1.0, f"decodes with {n} and {n + 1} bands look the same (mean |diff| {diff:.2f})"

    # 3. high-pass filter: the filtered input and its band energies change
    before = _image(d, "energy-chart")[1]
    d.find_element(By.XPATH, "//*[@id='filter-kind']//label[contains(., 'high-pass')]").click()
    _wait(d, lambda d: "high-pass r=" in _text(d, "#filter-text"), "the high-pass analysis")
    _wait(d, lambda d: np.abs(_image(d, "energy-chart")[1] - before).mean() > 0.5, "a new energy chart")
    d.save_screenshot(str(artifacts / "4_high_pass.png"))

    # 4. a bad upload: a message on the page, no traceback, and the server keeps serving
    bad = tmp_path / "holiday.png"
    bad.write_bytes(b"this is not a picture\n" * 10)
    clear = d.find_elements(
        By.CSS_SELECTOR, "#upload button[aria-label*='Clear'], #upload button[aria-label*='Remove']"
    )
    assert clear, "no button to remove the uploaded file"
    clear[0].click()
    _wait(d, lambda d: d.find_elements(By.CSS_SELECTOR, "#upload input[type=file]"), "an empty upload field")
    d.find_element(By.CSS_SELECTOR, "#upload input[type=file]").send_keys(str(bad))
    _wait(d, lambda d: "Could not use this input" in _text(d, "#status"), "the bad-upload message")
    status = _text(d, "#status")
    assert "holiday.png: not an image" in status, status
    assert "Traceback" not in d.page_source
    d.save_screenshot(str(artifacts / "5_bad_upload.png"))
    thumbs = d.find_elements(By.CSS_SELECTOR, "#photos [aria-label^='Thumbnail']")
    assert thumbs, "no bundled photographs on the page"
    thumbs[0].click()
    _wait(d, lambda d: "Loaded" in _text(d, "#status"), "a bundled photograph after the bad upload")
    d.save_screenshot(str(artifacts / "6_bundled_photo.png"))
    assert proc.poll() is None
