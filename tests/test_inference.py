"""Inference helpers and band pictures (uae.inference, uae.visualize)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

import uae
from uae.factory import load_model
from uae.inference import load_image, load_images, psnr, reconstruct
from uae.visualize import band_figure, progressive_decodes, save_image, to_pil


def test_load_image_centre_crops_and_resizes(tmp_path):
    arr = np.zeros((40, 80, 3), dtype=np.uint8)
    arr[:, 20:60] = 255  # the centre square is white, the sides black
    Image.fromarray(arr).save(tmp_path / "wide.png")
    out = load_image(tmp_path / "wide.png", 16, out_size=32)
    assert out["image"].shape == (3, 16, 16) and out["target"].shape == (3, 32, 32)
    assert out["image"].min() > 0.95  # only the centre crop is kept


def test_load_image_errors_name_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.png"):
        load_image(tmp_path / "missing.png", 32)
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"\xff\xd8 definitely not a jpeg")
    with pytest.raises(ValueError, match="broken.jpg"):
        load_image(bad, 32)


def test_progressive_decodes_end_with_the_reconstruction(tiny_model, photos32):
    decodes, energy = progressive_decodes(tiny_model, photos32)
    k = tiny_model.config.num_bands
    assert decodes.shape == (len(photos32), k, 3, 32, 32)
    assert torch.allclose(decodes[:, -1], tiny_model(photos32).sample, atol=1e-6)
    assert not torch.allclose(decodes[:, 0], decodes[:, -1], atol=1e-3)  # band 0 alone is not everything
    assert energy.shape == (len(photos32), k)
    assert torch.allclose(energy.sum(1), torch.ones(len(photos32)), atol=1e-5)


def test_band_figure_is_a_picture_of_all_rows(tiny_model, photos32):
    decodes, energy = progressive_decodes(tiny_model, photos32[:2])
    im = band_figure(photos32[:2], decodes, energy, titles=["a", "b"])
    arr = np.asarray(im)
    assert im.mode == "RGB" and arr.shape[1] > arr.shape[0] > 100
    assert arr.std() > 10  # not a blank canvas
    with pytest.raises(ValueError, match="inconsistent"):
        band_figure(photos32[:3], decodes, energy)


def test_to_pil_and_save_round_trip(tmp_path, photos32):
    path = save_image(photos32[0], tmp_path / "x" / "a.png")
    back = torch.from_numpy(np.array(Image.open(path))).permute(2, 0, 1).float() / 255
    assert torch.allclose(back, photos32[0], atol=1 / 255 + 1e-6)
    with pytest.raises(ValueError, match=r"\(3, H, W\)"):
        to_pil(photos32)


def test_load_model_sources(tiny_model, tmp_path, photos32):
    tiny_model.save_pretrained(tmp_path / "m")
    m = load_model(str(tmp_path / "m"))
    assert not m.training
    assert torch.allclose(reconstruct(m, photos32, batch_size=3), tiny_model(photos32).sample, atol=1e-5)
    with pytest.raises(FileNotFoundError, match="uae_large_p14_dinov2"):
        load_model("uae_large_p14_dinov2")  # registered, recipe only
    with pytest.raises(ValueError, match="unknown model"):
        load_model("no such model")


def test_psnr_and_load_images(photo_paths):
    images, targets = load_images(photo_paths[:2], 32, 64)
    assert images.shape == (2, 3, 32, 32) and targets.shape == (2, 3, 64, 64)
    assert torch.isinf(psnr(images, images)).sum() == 0  # clamped, finite
    assert float(psnr(images, images)[0]) > 100
    noisy = (images + 0.1).clamp(0, 1)
    assert 15 < float(psnr(noisy, images).mean()) < 25


def test_compare_with_bicubic_baselines(tiny_model, photos32):
    from uae.inference import bicubic_round_trip, compare_with_bicubic

    res = compare_with_bicubic(tiny_model, photos32)
    assert res["bicubic_grid"]["side"] == 8
    assert res["bicubic_equal_values"]["side"] == int((32 * 64 / 3) ** 0.5) == 26
    # more kept resolution -> better baseline; the untrained tiny model is worse than both
    assert res["bicubic_equal_values"]["psnr"] > res["bicubic_grid"]["psnr"] > res["uae"]["psnr"]
    assert 0 < res["uae"]["ssim"] < res["bicubic_grid"]["ssim"] < 1
    assert bicubic_round_trip(photos32, 32).sub(photos32).abs().max() < 1e-5  # same size: identity
    wide = uae.create_model("uae_test", decoder_patch_size=8).eval()
    with pytest.raises(ValueError, match="output size"):
        compare_with_bicubic(wide, photos32)


def test_psnr_is_the_mse_formula_per_image():
    g = torch.Generator().manual_seed(0)
    a = torch.rand(6, 3, 16, 16, generator=g)
    b = (a + 0.05 * torch.randn(a.shape, generator=g)).clamp(0, 1)
    mse = (a - b).pow(2).flatten(1).mean(1)
    torch.testing.assert_close(psnr(a, b), 10 * torch.log10(1 / mse), atol=1e-4, rtol=0)
    assert psnr(a, a).tolist() == [120.0] * 6  # identical images: the 1e-12 MSE floor, not infinity
