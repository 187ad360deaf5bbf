"""Smoke tests of uae as users get it, run by ``.ci/run`` from a folder outside the checkout.

``python smoke.py wheel [APP_PY]``: in a fresh virtual environment where ``pip install uae-*.whl[app]`` is
all that happened: the package is the installed one, the demo loads, ``uae reconstruct`` reads a bundled
photo, ``uae recipes`` lists the recipes and ``uae fit --config finetune_folder`` resolves one by name, and
``uae app`` serves a page that analyses a photo; with ``APP_PY``, so does that ``app.py`` copied alone into
an empty folder (a Space whose requirements install the package).

``python smoke.py space SPACE_DIR``: in a fresh virtual environment where only the Space's
``requirements.txt`` was installed: ``python app.py`` in ``SPACE_DIR`` (its own copy of the package)
serves the band explorer, answers an analysis through Gradio's API, and stops cleanly on SIGTERM,
removing its temp folder.

Only the standard library and what those environments hold (uae's dependencies, Gradio) are used.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "GRADIO_ANALYTICS_ENABLED": "False", "MPLBACKEND": "Agg"}
ENV.pop("PYTHONPATH", None)
ENV.pop("GRADIO_TEMP_DIR", None)
BIN = Path(sys.executable).parent


def step(what: str) -> None:
    print(f"smoke: {what}", flush=True)


def run(*cmd: str | Path, cwd: Path) -> str:
    """Run a command, fail with its output unless it exits 0; return its stdout."""
    res = subprocess.run([str(c) for c in cmd], cwd=cwd, env=ENV, capture_output=True, text=True, timeout=600)
    if res.returncode != 0:
        sys.exit(f"smoke: {' '.join(map(str, cmd))} exited {res.returncode}:\n{res.stdout}\n{res.stderr}")
    return res.stdout


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve_and_probe(cmd: list[str], cwd: Path, port: int, photo: Path) -> None:
    """Start a band-explorer server, analyse ``photo`` through Gradio's API, stop it with SIGTERM.

    Checks that it answers, exits 0 without a traceback, and removes its own temp folder.
    """
    from gradio_client import Client, handle_file

    tmp = Path(tempfile.mkdtemp(prefix="uae-smoke-"))
    env = {**ENV, "TMPDIR": str(tmp), "GRADIO_SERVER_PORT": str(port)}
    proc = subprocess.Popen(
        cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.monotonic() + 300
        while True:
            try:
                with urllib.request.urlopen(url, timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                sys.exit(f"smoke: {' '.join(cmd)} did not serve:\n{proc.communicate()[0]}")
            time.sleep(0.5)
        status, *_ = Client(url, verbose=False).predict(handle_file(str(photo)), 3, api_name="/analyse_file")
        if f"Loaded **{photo.name}**" not in status:
            sys.exit(f"smoke: the page did not analyse {photo.name}: {status!r}")
        folders = list(tmp.glob("uae-app-*"))
        if len(folders) != 1:
            sys.exit(f"smoke: expected the app's own temp folder under {tmp}, found {folders}")
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            out, _ = proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, _ = proc.communicate()
    if proc.returncode != 0 or "Traceback" in out:
        sys.exit(f"smoke: {' '.join(cmd)} did not stop cleanly (exit {proc.returncode}):\n{out}")
    if folders[0].exists():
        sys.exit(f"smoke: {folders[0]} was kept after exit")
    shutil.rmtree(tmp, ignore_errors=True)


def wheel(work: Path, app_py: Path | None = None) -> None:
    import uae
    from uae.explorer import bundled_photos
    from uae.models.pretrained import checkpoint_root

    installed = Path(uae.__file__).resolve().parent
    step(f"uae {uae.__version__} imported from {installed}")
    if "site-packages" not in installed.parts:
        sys.exit(f"smoke: uae is not the installed package: {installed}")
    if installed not in checkpoint_root().parents:
        sys.exit(f"smoke: the embedded checkpoints are not the package's: {checkpoint_root()}")
    model = uae.create_model("uae_demo", pretrained=True)
    photos = bundled_photos()
    if len(photos) < 3 or any(installed not in p.parents for p in photos):
        sys.exit(f"smoke: bundled photos missing: {photos}")
    step(f"uae_demo loaded ({sum(p.numel() for p in model.parameters()):,} parameters), {len(photos)} photos")

    out = run(BIN / "uae", "reconstruct", photos[1], "--out", "rec", cwd=work)
    if not any((work / "rec").iterdir()) or "PSNR" not in out:
        sys.exit(f"smoke: uae reconstruct wrote nothing:\n{out}")
    step("uae reconstruct: " + out.strip().splitlines()[-1])

    out = run(BIN / "uae", "recipes", cwd=work)
    if "finetune_folder" not in out or "stage1_decoder_dinov2_b" not in out:
        sys.exit(f"smoke: uae recipes lists no recipes:\n{out}")
    step(f"uae recipes: {len(out.splitlines()) - 3} recipes")
    run(BIN / "uae", "recipes", "finetune_folder", "--copy", "mine", cwd=work)
    out = run(BIN / "uae", "fit", "--config", "finetune_folder", "--print_config", cwd=work)
    if "Stage1DecoderModule" not in out:
        sys.exit(f"smoke: uae fit --config finetune_folder did not resolve the recipe:\n{out[-2000:]}")
    step("uae fit --config finetune_folder --print_config: the bundled recipe")
    (work / "photos").mkdir()
    for p in photos:
        shutil.copy2(p, work / "photos" / p.name)
    tiny = ["--data.batch_size", "2", "--data.num_workers", "0", "--data.val_fraction", "0.25"]
    tiny += [
        "--trainer.max_steps",
        "2",
        "--trainer.val_check_interval",
        "2",
        "--trainer.limit_val_batches",
        "1",
    ]
    tiny += [
        "--trainer.accelerator",
        "cpu",
        "--trainer.enable_progress_bar",
        "false",
    ]
    tiny += ["--trainer.default_root_dir", "run", "--model.export_dir", "run/export"]
    run(
        BIN / "uae",
        "fit",
        "--config",
        "finetune_folder",
        "--data.root",
        "photos",
        "--model.pretrained",
        "uae_demo",  # a registered name: the installed package's weights, as the README says
        *tiny,
        cwd=work,
    )
    from uae.models.card import check_card

    card = check_card((work / "run" / "export" / "README.md").read_text())
    uae.UAE.from_pretrained(work / "run" / "export")
    step(
        f"uae fit --config finetune_folder --model.pretrained uae_demo: 2 steps, exported; card {card.data.tags}"
    )
    out = run(BIN / "uae", "models", "--pretrained", "uae_demo*", cwd=work)
    step("uae models: " + out.strip())

    port = free_port()
    serve_and_probe([str(BIN / "uae"), "app", "--port", str(port), "--threads", "1"], work, port, photos[1])
    step("uae app: served and analysed a photo; stopped cleanly")
    if app_py is not None:
        alone = work / "space"
        alone.mkdir()
        shutil.copy2(app_py, alone / "app.py")
        serve_and_probe([sys.executable, "app.py"], alone, free_port(), photos[1])
        step("app.py alone in an empty folder, with the installed package: served and analysed a photo")


def space(folder: Path) -> None:
    try:
        import uae  # noqa: F401
    except ImportError:
        pass
    else:
        sys.exit("smoke: uae is installed in the Space's environment; the Space must run from its own files")
    port = free_port()
    serve_and_probe([sys.executable, "app.py"], folder, port, folder / "tests" / "assets" / "chelsea.png")
    step(f"python app.py in {folder}: served and analysed a photo; stopped cleanly")


def main() -> None:
    mode = sys.argv[1] if len(sys.argv) > 1 else ""
    if mode == "wheel" and len(sys.argv) <= 3:
        work = Path(tempfile.mkdtemp(prefix="uae-wheel-smoke-"))
        wheel(work, Path(sys.argv[2]).resolve() if len(sys.argv) == 3 else None)
        shutil.rmtree(work, ignore_errors=True)
    elif mode == "space" and len(sys.argv) == 3:
        space(Path(sys.argv[2]).resolve())
    else:
        sys.exit("usage: smoke.py wheel [APP_PY] | smoke.py space SPACE_DIR")
    print("smoke: ok", flush=True)


if __name__ == "__main__":
    main()
