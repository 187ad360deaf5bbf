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


def test_build_app_wires_the_library_and_guards_errors(tiny_model, tmp_path, photo_paths):
    gr = pytest.importorskip("gradio")
    import os

    from uae.app import _guarded, build_app, launch_kwargs

    demo = build_app(tiny_model, photos=photo_paths[:2])
    assert isinstance(demo, gr.Blocks)
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
