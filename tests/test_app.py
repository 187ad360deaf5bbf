"""The band explorer's library side (uae.explorer.BandExplorer / open_image, uae.visualize charts), no browser."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch
from PIL import Image

from uae.explorer import BandExplorer, bundled_photos, open_image
from uae.visualize import (
    BAND_AXIS_LABEL,
    ENERGY_AXIS_LABEL,
    band_energy_chart,
    band_figure,
    band_label,
    draw_band_energy,
    enlarge,
    pca_rgb,
    radial_spectrum_chart,
)


@pytest.fixture
def explorer(tiny_model):
    return BandExplorer(tiny_model, cache_size=4)


# ---------------------------------------------------------------------- open_image: untrusted uploads
def test_open_image_refuses_non_images_and_oversized_files(tmp_path, photo_paths):
    bad = tmp_path / "notes.png"
    bad.write_text("not a picture")
    with pytest.raises(ValueError, match="cannot read image notes.png"):
        open_image(bad)
    with pytest.raises(FileNotFoundError, match="gone.png"):
        open_image(tmp_path / "gone.png")
    with pytest.raises(ValueError, match=r"128x128 = 16,384 pixels, over the budget"):
        open_image(photo_paths[0], max_pixels=128 * 128 - 1)
    with pytest.raises(ValueError, match="too large: .* MiB"):
        open_image(photo_paths[0], max_bytes=1000)
    im, notes = open_image(photo_paths[0])
    assert im.mode == "RGB" and im.size == (128, 128) and notes == []


def test_open_image_scales_16_bit_instead_of_clipping(tmp_path):
    arr = np.array([[0, 16384], [32768, 65535]], dtype=np.uint16)
    Image.fromarray(arr).save(tmp_path / "deep.png")
    im, notes = open_image(tmp_path / "deep.png")
    got = np.asarray(im)[..., 0]
    np.testing.assert_allclose(got, np.round(arr / 65535 * 255), atol=1)  # convert("RGB") would give 255s
    assert any("16-bit" in n for n in notes)


def test_open_image_takes_the_first_gif_frame_and_flattens_alpha(tmp_path):
    frames = [Image.new("RGB", (8, 8), c) for c in ((255, 0, 0), (0, 0, 255))]
    frames[0].save(tmp_path / "anim.gif", save_all=True, append_images=frames[1:])
    im, notes = open_image(tmp_path / "anim.gif")
    assert np.asarray(im)[0, 0].tolist() == [255, 0, 0]
    assert any("2 frames" in n for n in notes)
    Image.new("RGBA", (4, 4), (0, 0, 0, 0)).save(tmp_path / "clear.png")
    im, notes = open_image(tmp_path / "clear.png")
    assert np.asarray(im).min() == 255 and any("transparent" in n for n in notes)


# ---------------------------------------------------------------------- BandExplorer
def test_explorer_encodes_once_per_image_and_decodes_on_demand(explorer, tiny_model, photos32, monkeypatch):
    calls = {"encode": 0, "decode": 0}
    encode, decode_bands = tiny_model.encode, tiny_model.decode_bands

    def counting_encode(x):
        calls["encode"] += 1
        return encode(x)

    def counting_decode(bands, upto=None, clamp=None):
        calls["decode"] += 1
        return decode_bands(bands, upto=upto, clamp=clamp)

    monkeypatch.setattr(tiny_model, "encode", counting_encode)
    monkeypatch.setattr(tiny_model, "decode_bands", counting_decode)
    a = explorer.analyse(photos32[0])
    assert explorer.analyse(photos32[0].clone()) is a and explorer.get(a.key) is a
    assert calls == {"encode": 1, "decode": 1}
    k = tiny_model.config.num_bands
    img, score = explorer.decode(a, 0)
    explorer.decode(a, 0)
    assert calls["decode"] == 2  # cached per band count; the full decode came with the analysis
    expected = tiny_model.decode_bands(tiny_model.encode(photos32[:1]).bands, upto=0).sample[0]
    torch.testing.assert_close(img, expected, atol=1e-5, rtol=0)
    decodes, psnrs = explorer.progressive(a)
    assert decodes.shape == (k, 3, 32, 32) and psnrs.shape == (k,)
    assert float(psnrs[-1]) == pytest.approx(a.psnr)
    torch.testing.assert_close(decodes[-1], a.reconstruction)
    torch.testing.assert_close(a.bands.sum(0), a.latent, atol=1e-5, rtol=0)
    assert float(a.energy.sum()) == pytest.approx(1.0, abs=1e-5) and 0 < a.ssim <= 1
    with pytest.raises(ValueError, match=f"upto must be in 0..{k - 1}"):
        explorer.decode(a, k)


def test_explorer_cache_is_bounded(tiny_model, photos32):
    ex = BandExplorer(tiny_model, cache_size=2)
    keys = [ex.analyse(p).key for p in photos32[:3]]
    assert ex.get(keys[0]) is None and ex.get(keys[2]) is not None
    assert ex.get("unknown") is None


def test_explorer_cache_bounds_memory_with_filters_and_decodes(tiny_model, photos32):
    """Originals, their filtered variants and every decode count against the bounds; nothing else keeps an
    evicted analysis alive (the cache's memory is really bounded, not only its length)."""
    import gc
    import weakref

    from uae.explorer import analysis_bytes

    ex = BandExplorer(tiny_model, cache_size=3, max_cache_bytes=10**9)
    alive = []
    for i in range(4):
        a = ex.analyse(photos32[i % len(photos32)] * (1 - i / 24))
        ex.progressive(a)
        for kind, r in (("lfc", 0.2 + i / 100), ("hfc", 0.3)):
            alive.append(weakref.ref(ex.filtered(a, kind, r)))
        alive.append(weakref.ref(a))
        assert len(ex) <= 3
    del a
    gc.collect()
    assert sum(r() is not None for r in alive) == 3  # exactly what the cache holds
    one = max(analysis_bytes(r()) for r in alive if r() is not None)
    ex = BandExplorer(tiny_model, cache_size=100, max_cache_bytes=int(2.5 * one))
    for i in range(4):
        a = ex.analyse(photos32[i % len(photos32)] * (1 - i / 12))
        ex.progressive(a)  # decodes grow an analysis after it is cached: the byte budget still holds
        ex.filtered(a, "lfc", 0.5)
        assert ex.cache_bytes <= 2.5 * one and len(ex) <= 3
    assert ex.get(ex.filtered(a, "lfc", 0.5).key) is not None  # the most recent one always stays


def test_explorer_and_decode_bands_take_integer_band_indices(explorer, tiny_model, photos32):
    a = explorer.analyse(photos32[0])
    bands = a.bands[None]
    for bad in (1.5, True, 0.0, "1"):
        with pytest.raises(ValueError, match=r"upto must be in 0\.\.2 \(an integer band index\)"):
            tiny_model.decode_bands(bands, upto=bad)
        with pytest.raises(ValueError, match=r"upto must be in 0\.\.2 \(an integer band index\)"):
            explorer.decode(a, bad)
    import numpy as np

    torch.testing.assert_close(
        tiny_model.decode_bands(bands, upto=np.int64(1)).sample, tiny_model.decode_bands(bands, upto=1).sample
    )


def test_explorer_filters_the_input(explorer, photos32):
    from uae.evaluation.filtered import hfc_image, lfc_image

    a = explorer.analyse(photos32[1])
    assert explorer.filtered(a, "original", 0.3) is a
    low = explorer.filtered(a, "lfc", 0.25)
    torch.testing.assert_close(low.image, lfc_image(a.image, 0.25))
    high = explorer.filtered(a, "hfc", 0.25)
    torch.testing.assert_close(high.image, hfc_image(a.image, 0.25))
    assert low.key != high.key != a.key
    # a low-pass image has less latent energy in the highest band than its high-pass counterpart
    assert float(low.energy[-1]) < float(high.energy[-1])
    full = explorer.filtered(a, "lfc", 2**0.5)  # keeps every frequency
    torch.testing.assert_close(full.image, a.image, atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="radius"):
        explorer.filtered(a, "lfc", 3.0)
    with pytest.raises(ValueError, match="filter kind"):
        explorer.filtered(a, "bandpass", 0.5)


def test_explorer_takes_pil_images_at_any_size(explorer, tiny_model):
    wide = Image.new("RGB", (90, 40), (10, 200, 30))
    a = explorer.analyse(wide)
    assert a.image.shape == (3, 32, 32) and a.target.shape == (3, 32, 32)
    torch.testing.assert_close(a.image[:, 0, 0], torch.tensor([10, 200, 30]) / 255.0, atol=2e-2, rtol=0)


def test_bundled_photos_are_found():
    photos = bundled_photos()
    assert len(photos) >= 3 and all(p.suffix == ".png" for p in photos)


# ---------------------------------------------------------------------- pictures
def test_pca_rgb_follows_the_main_direction_of_the_features():
    h = w = 6
    ramp = torch.linspace(-1, 1, w).expand(h, w)
    direction = torch.randn(16)
    feats = direction[:, None, None] * ramp * 5 + 0.01 * torch.randn(16, h, w)
    rgb = pca_rgb(feats)
    assert rgb.shape == (3, h, w) and rgb.min() >= 0 and rgb.max() <= 1
    first = rgb[0].flatten()
    corr = torch.corrcoef(torch.stack([first, ramp.flatten()]))[0, 1]
    assert abs(float(corr)) > 0.99
    torch.testing.assert_close(pca_rgb(feats), rgb)  # deterministic, including the sign
    assert pca_rgb(feats[None].repeat(2, 1, 1, 1)).shape == (2, 3, h, w)
    with pytest.raises(ValueError, match=r"\(C, h, w\)"):
        pca_rgb(torch.zeros(3, 3))


def test_band_energy_charts_are_labelled(explorer, photos32):
    from matplotlib.figure import Figure

    a = explorer.analyse(photos32[0])
    ax = Figure().subplots()
    draw_band_energy(ax, {"original": a.energy, "filtered": a.energy.flip(0)})
    assert ax.get_xlabel() == BAND_AXIS_LABEL and ax.get_ylabel() == ENERGY_AXIS_LABEL
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["original", "filtered"]
    assert len(ax.patches) == 2 * len(a.energy)
    with pytest.raises(ValueError, match="same number of bands"):
        draw_band_energy(ax, {"a": [0.5, 0.5], "b": [1.0]})
    for im in (band_energy_chart({"x": a.energy}), radial_spectrum_chart({"x": a.latent}, num_bands=3)):
        arr = np.asarray(im)
        assert im.mode == "RGB" and arr.shape[0] > 200 and arr.std() > 10


def test_band_figure_with_psnr_and_band0_column(explorer, photos32):
    a = explorer.analyse(photos32[0])
    decodes, psnrs = explorer.progressive(a)
    plain = band_figure(a.image[None], decodes[None], a.energy[None])
    full = band_figure(
        a.image[None], decodes[None], a.energy[None], psnrs=psnrs[None], band0_rgb=explorer.band0_rgb(a)[None]
    )
    assert full.width > plain.width  # one more column
    with pytest.raises(ValueError, match="psnrs"):
        band_figure(a.image[None], decodes[None], a.energy[None], psnrs=psnrs)


def test_labels_and_enlarge():
    assert [band_label(i, 3) for i in range(3)] == ["band 0", "bands 0..1", "all 3 bands"]
    big = enlarge(torch.rand(3, 8, 4), 64)
    assert big.size == (32, 64)


# ---------------------------------------------------------------------- the CLI and the app wiring
def test_uae_bands_prints_progressive_psnr(tiny_model, tmp_path, photo_paths, capsys):
    from uae.cli import main

    tiny_model.save_pretrained(tmp_path / "m")
    dest = tmp_path / "b.png"
    assert (
        main(["bands", *map(str, photo_paths[:2]), "--model", str(tmp_path / "m"), "--out", str(dest)]) == 0
    )
    lines = [ln for ln in capsys.readouterr().out.splitlines() if "PSNR from bands 0..k" in ln]
    assert len(lines) == 2 and all(len(re.findall(r" \d+\.\d\d", ln.split("|")[1])) == 3 for ln in lines)
    assert Image.open(dest).size[0] > 800


def test_uae_app_bad_port_is_one_line(capsys):
    from uae.cli import main

    assert main(["app", "--port", "0"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "uae app: error: --port must be in 1..65535, got 0"


def test_build_app_wires_the_library_and_guards_errors(tiny_model, tmp_path, photo_paths, monkeypatch):
    gr = pytest.importorskip("gradio")
    import os

    monkeypatch.setenv("GRADIO_TEMP_DIR", str(tmp_path / "gradio"))  # else the process gets its own

    from uae.app import _guarded, build_app, launch_kwargs

    demo = build_app(tiny_model, photos=photo_paths[:2])
    assert isinstance(demo, gr.Blocks)
    assert demo.delete_cache == (60, 300)  # uploads and served pictures go after 5 minutes
    assert os.environ["GRADIO_ANALYTICS_ENABLED"] == "False"
    kw = launch_kwargs()
    assert kw["server_name"] == "127.0.0.1" and kw["share"] is False

    def handler(path):
        return open_image(path)[0], "ok"

    status, other = gr.Markdown(), gr.Image()
    wrapped = _guarded(handler, status, [other, status], gr)
    bad = tmp_path / "x.jpg"
    bad.write_bytes(b"\x00" * 10)
    out = wrapped(str(bad))
    assert len(out) == 2 and "x.jpg: not an image" in out[1] and "Traceback" not in out[1]
    assert wrapped(str(photo_paths[0]))[1] == "ok"
    boom = _guarded(lambda: 1 / 0, status, [other], gr)()
    assert len(boom) == 2 and "ZeroDivisionError" in boom[-1]


# ---------------------------------------------------------------------- serving: host, Gradio's files
@pytest.mark.parametrize(
    ("host", "public"),
    [
        ("127.0.0.1", False),
        ("localhost", False),
        ("::1", False),
        ("0.0.0.0", True),
        ("", True),
        ("myhost", True),
    ],
)
def test_non_loopback_host_is_warned(host, public):
    from uae.commands.app import host_warning

    warning = host_warning(host, 7860)
    assert (warning is not None) == public
    if public:
        assert warning.startswith("warning: --host") and "not loopback" in warning and "7860" in warning


def test_uae_app_host_warning_is_printed(monkeypatch, capsys):
    import uae.app
    from uae.cli import main

    served = {}
    monkeypatch.setattr(
        uae.app, "build_app", lambda model, device, cache_seconds: served.update(cs=cache_seconds)
    )
    monkeypatch.setattr(uae.app, "serve", lambda demo, **kw: served.update(kw))
    assert main(["app", "--host", "0.0.0.0", "--port", "8123"]) == 0
    err = capsys.readouterr().err
    assert "warning: --host 0.0.0.0 is not loopback" in err and served["server_name"] == "0.0.0.0"
    assert served["cs"] == 300
    assert main(["app", "--cache-seconds", "30"]) == 0 and served["cs"] == 30
    assert "warning" not in capsys.readouterr().err  # loopback by default
    assert main(["app", "--cache-seconds", "0"]) == 2


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_uae_app_deletes_uploads_and_removes_its_folder_at_exit(tmp_path, photo_paths):
    """Gradio's folder is the process's own (not a shared /tmp/gradio), uploads older than --cache-seconds are
    deleted while it serves, and SIGTERM stops it cleanly (exit 0) and removes the folder."""
    pytest.importorskip("gradio")
    import os
    import signal
    import subprocess
    import sys
    import time
    import urllib.request
    from pathlib import Path

    import httpx

    repo = Path(__file__).resolve().parents[1]
    env = dict(os.environ, PYTHONPATH=str(repo), HF_HUB_OFFLINE="1", TMPDIR=str(tmp_path))
    env.pop("GRADIO_TEMP_DIR", None)
    port = _free_port()
    cmd = [
        sys.executable,
        "-m",
        "uae.cli",
        "app",
        "--port",
        str(port),
        "--threads",
        "1",
        "--cache-seconds",
        "1",
    ]
    proc = subprocess.Popen(
        cmd, env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(url + "/", timeout=1) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()[0]
            time.sleep(0.2)
        (folder,) = tmp_path.glob("uae-app-*")
        files = [("files", (f"{i}.png", p.read_bytes(), "image/png")) for i, p in enumerate(photo_paths * 5)]
        uploaded = [Path(p) for p in httpx.post(url + "/gradio_api/upload", files=files, timeout=30).json()]
        assert len(uploaded) == len(files) and all(p.is_file() and folder in p.parents for p in uploaded)
        deadline = time.monotonic() + 20
        while any(p.exists() for p in uploaded):
            assert time.monotonic() < deadline, "uploads older than --cache-seconds were not deleted"
            time.sleep(0.25)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            out, _ = proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, _ = proc.communicate()
    assert proc.returncode == 0, out
    assert "Traceback" not in out, out
    assert not folder.exists(), f"{folder} was kept after exit"
