"""Latency of the band explorer (``uae app``): every interaction, as a person sees it in the browser.

Run from the repository root (needs the ``app`` extra, Selenium and Debian's ``chromium`` +
``chromium-driver``)::

    python -m benchmarks.app_latency --model uae_demo --repeats 5

Two measurements:

* **page** (what the target is about): ``uae app`` runs in a subprocess on a free loopback port and
  headless Chromium drives the page. Each repetition uploads a *new* image (a bundled photograph with a
  little noise added, so nothing is cached), moves the band slider to band 0, one step up and back to all
  bands, switches the filter between low- and high-pass and changes the radius. The time runs from the
  key press / click / file hand-over until the page shows the new result (the text that names it).
* **library**: the same steps called directly on :class:`uae.explorer.BandExplorer` and the chart
  functions (no server, no browser), to show where the time goes.

Results go to ``benchmarks/results/app_latency_<model>.{json,md}``; ``benchmarks/RESULTS.md`` has the
numbers and the device.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
TARGET_S = 1.0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _noisy_copies(n: int, out: Path, seed: int = 0) -> list[Path]:
    """``n`` new images: bundled photographs with a little noise (each a cache miss for the app)."""
    from uae.explorer import bundled_photos

    rng = np.random.default_rng(seed)
    photos = bundled_photos()
    paths = []
    for i in range(n):
        arr = np.asarray(Image.open(photos[i % len(photos)]).convert("RGB"), dtype=np.float32)
        arr = np.clip(arr + rng.normal(0, 2.0, arr.shape), 0, 255).astype(np.uint8)
        path = out / f"photo_{i:02d}.png"
        Image.fromarray(arr).save(path)
        paths.append(path)
    return paths


def _stats(xs: list[float]) -> dict[str, float]:
    return {
        "median_s": statistics.median(xs),
        "max_s": max(xs),
        "min_s": min(xs),
        "n": len(xs),
    }


def library_latency(model_name: str, images: list[Path]) -> dict[str, dict[str, float]]:
    """Time the library calls behind each interaction (fresh image per repetition)."""
    from uae.explorer import BandExplorer, open_image
    from uae.factory import load_model
    from uae.visualize import band_energy_chart, band_figure, enlarge, radial_spectrum_chart

    explorer = BandExplorer(load_model(model_name))
    explorer.warmup()
    k = explorer.num_bands
    times: dict[str, list[float]] = {}

    def timed(name, fn):
        t = time.perf_counter()
        out = fn()
        times.setdefault(name, []).append(time.perf_counter() - t)
        return out

    for path in images:
        im, _ = timed("open_image", lambda path=path: open_image(path))
        a = timed("analyse (encode + full decode + PSNR/SSIM)", lambda im=im: explorer.analyse(im))
        timed("decode band 0 (slider)", lambda a=a: explorer.decode(a, 0))
        decodes, psnrs = timed("all progressive decodes", lambda a=a: explorer.progressive(a))
        timed(
            "band figure (strip)",
            lambda a=a, decodes=decodes, psnrs=psnrs: band_figure(
                a.image[None], decodes[None], a.energy[None], psnrs=psnrs[None]
            ),
        )
        timed("energy chart", lambda a=a: band_energy_chart({"x": a.energy}))
        timed("radial spectrum chart", lambda a=a: radial_spectrum_chart({"x": a.latent}, num_bands=k))
        timed("band-0 PCA picture", lambda a=a: enlarge(explorer.band0_rgb(a), 256))
        timed("filtered analysis (low-pass r=0.25)", lambda a=a: explorer.filtered(a, "lfc", 0.25))
    return {name: _stats(xs) for name, xs in times.items()}


def page_latency(model_name: str, images: list[Path], threads: int) -> dict[str, dict[str, float]]:
    """Drive the page in headless Chromium and time each interaction until its result is shown."""
    os.environ.setdefault("SE_OFFLINE", "true")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait

    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    driver_path = shutil.which("chromedriver")
    if not browser or not driver_path:
        raise SystemExit("needs Debian's chromium and chromium-driver")
    port = _free_port()
    env = dict(os.environ, PYTHONPATH=str(REPO), HF_HUB_OFFLINE="1")
    cmd = [
        sys.executable,
        "-m",
        "uae.cli",
        "app",
        "--model",
        model_name,
        "--port",
        str(port),
        "--threads",
        str(threads),
    ]
    server = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    opts = webdriver.ChromeOptions()
    opts.binary_location = browser
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--window-size=1280,2400",
    ):
        opts.add_argument(arg)
    d = webdriver.Chrome(service=Service(executable_path=driver_path), options=opts)
    times: dict[str, list[float]] = {}
    try:
        url = f"http://127.0.0.1:{port}/"
        deadline = time.monotonic() + 120
        while True:
            try:
                urllib.request.urlopen(url, timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise SystemExit("uae app did not start") from None
                time.sleep(0.2)
        d.get(url)

        def text(css):
            els = d.find_elements(By.CSS_SELECTOR, css)
            return els[0].text if els else ""

        def timed(name, action, done):
            t = time.perf_counter()
            action()
            WebDriverWait(d, 30, poll_frequency=0.01).until(lambda _: done())
            times.setdefault(name, []).append(time.perf_counter() - t)

        def shown(elem_ids, before):
            """All pictures in these components have a new source and finished loading."""
            srcs = d.execute_script(JS_IMAGES, [f"#{e} img" for e in elem_ids])
            return all(src and ok and src != before.get(e) for e, (src, ok) in zip(elem_ids, srcs))

        def sources(elem_ids):
            return {
                e: src
                for e, (src, _) in zip(elem_ids, d.execute_script(JS_IMAGES, [f"#{e} img" for e in elem_ids]))
            }

        all_pictures = [
            "input-image",
            "recon-image",
            "pca-image",
            "decode-image",
            "strip-image",
            "filtered-input",
            "filtered-recon",
            "energy-chart",
            "spectrum-chart",
        ]
        first = ["input-image", "recon-image", "decode-image", "pca-image"]
        filter_pictures = ["filtered-input", "filtered-recon", "energy-chart", "spectrum-chart"]
        WebDriverWait(d, 30).until(lambda _: d.find_elements(By.CSS_SELECTOR, "#upload input[type=file]"))
        for i, path in enumerate(images):
            if i:
                d.find_element(By.CSS_SELECTOR, "#upload button[aria-label*='Clear']").click()
                WebDriverWait(d, 10).until(
                    lambda _: d.find_elements(By.CSS_SELECTOR, "#upload input[type=file]")
                )
            before = sources(all_pictures)
            t = time.perf_counter()
            d.find_element(By.CSS_SELECTOR, "#upload input[type=file]").send_keys(str(path))
            WebDriverWait(d, 30, poll_frequency=0.01).until(
                lambda _, path=path, before=before: path.name in text("#status") and shown(first, before)
            )
            times.setdefault(
                "upload a new image: first pictures (input, reconstruction, decode, PCA)", []
            ).append(time.perf_counter() - t)
            WebDriverWait(d, 30, poll_frequency=0.01).until(
                lambda _, before=before: shown(all_pictures, before)
            )
            times.setdefault("upload a new image: all 9 pictures and charts", []).append(
                time.perf_counter() - t
            )
            rng = d.find_element(By.CSS_SELECTOR, "#band-slider input[type=range]")
            for name, key, label in (
                ("band slider: all -> band 0", Keys.HOME, "band 0"),
                ("band slider: one band more", Keys.ARROW_RIGHT, "bands 0..1"),
                ("band slider: -> all bands", Keys.END, "all "),
            ):
                before = sources(["decode-image"])
                timed(
                    name,
                    lambda rng=rng, key=key: rng.send_keys(key),
                    lambda label=label, before=before: (
                        text("#decode-psnr").startswith(label) and shown(["decode-image"], before)
                    ),
                )
            kind = "high-pass" if i % 2 == 0 else "low-pass"
            before = sources(filter_pictures)
            timed(
                "filter: switch low/high-pass",
                lambda kind=kind: d.find_element(
                    By.XPATH, f"//*[@id='filter-kind']//label[contains(., '{kind}')]"
                ).click(),
                lambda kind=kind, before=before: (
                    text("#filter-text").startswith(kind) and shown(filter_pictures, before)
                ),
            )
            radius = d.find_element(By.CSS_SELECTOR, "#filter-radius input[type=range]")
            before = sources(filter_pictures)
            timed(
                "filter: radius one step",
                lambda radius=radius, i=i: radius.send_keys(
                    Keys.ARROW_RIGHT if i % 2 == 0 else Keys.ARROW_LEFT
                ),
                lambda before=before: shown(filter_pictures, before),
            )
    finally:
        d.quit()
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
    return {name: _stats(xs) for name, xs in times.items()}


JS_IMAGES = """
return arguments[0].map(sel => {
  const img = document.querySelector(sel);
  return img ? [img.getAttribute('src'), img.complete && img.naturalWidth > 0] : [null, false];
});
"""


def _markdown(result: dict) -> str:
    lines = [
        f"# band explorer latency: {result['model']}",
        "",
        f"{result['device']}; {result['threads']} torch thread(s); {result['repeats']} repetitions, each on a new image; "
        f"load average before the run {result['load_average']}. Target: every interaction < {TARGET_S:.0f} s.",
        "",
        "## On the page (headless Chromium, action -> result shown)",
        "",
        "| interaction | median (s) | max (s) | < 1 s |",
        "|---|---|---|---|",
    ]
    for name, s in result["page"].items():
        lines.append(
            f"| {name} | {s['median_s']:.3f} | {s['max_s']:.3f} | {'yes' if s['max_s'] < TARGET_S else 'NO'} |"
        )
    lines += [
        "",
        "## Library calls behind them (no server, no browser)",
        "",
        "| call | median (s) | max (s) |",
        "|---|---|---|",
    ]
    for name, s in result["library"].items():
        lines.append(f"| {name} | {s['median_s']:.4f} | {s['max_s']:.4f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="uae_demo")
    parser.add_argument("--repeats", type=int, default=5, help="new images (default 5)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads of the app and the library run")
    parser.add_argument("--out-dir", default=str(REPO / "benchmarks" / "results"))
    parser.add_argument("--skip-page", action="store_true", help="library timings only (no browser)")
    args = parser.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    load = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        for sub in ("lib", "page"):
            (Path(tmp) / sub).mkdir()
        lib_images = _noisy_copies(args.repeats, Path(tmp) / "lib", seed=1)
        page_images = _noisy_copies(args.repeats, Path(tmp) / "page", seed=2)
        library = library_latency(args.model, lib_images)
        page = {} if args.skip_page else page_latency(args.model, page_images, args.threads)
    result = {
        "model": args.model,
        "device": f"CPU: {platform.processor() or platform.machine()}, {os.cpu_count()} cores (shared machine)",
        "threads": args.threads,
        "repeats": args.repeats,
        "load_average": [round(x, 2) for x in load],
        "torch": torch.__version__,
        "page": page,
        "library": library,
    }
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    stem = out / f"app_latency_{Path(args.model).name}"
    stem.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
    stem.with_suffix(".md").write_text(_markdown(result))
    print(_markdown(result))
    worst = max((s["max_s"] for s in page.values()), default=0.0)
    return 0 if worst < TARGET_S else 1


if __name__ == "__main__":
    sys.exit(main())
