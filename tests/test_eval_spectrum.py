"""Latent spectra, band energy shares, and LFC / HFC image splits."""

from __future__ import annotations

import math

import pytest
import torch
from safetensors.torch import save_file

from uae.evaluation.common import build_dataset, make_loader
from uae.evaluation.filtered import hfc_image, lfc_image, make_filter, split_frequencies
from uae.evaluation.spectrum import (
    LatentEncoder,
    SpectrumAccumulator,
    compute_spectra,
    plot_spectra,
    radial_bins,
    radial_power,
    teacher_encoder,
    uae_encoder,
    write_spectrum_csv,
)


def test_radial_power_obeys_parseval_and_separates_smooth_from_noise():
    g = torch.Generator().manual_seed(0)
    noise = torch.randn(4, 8, 16, 16, generator=g)
    power, count, rho = radial_power(noise)
    torch.testing.assert_close(power.sum(1), noise.pow(2).sum((1, 2, 3)), rtol=1e-4, atol=1e-3)
    assert int(count.sum()) == 16 * 16 and rho[0] == 0 and rho[-1] <= math.sqrt(2) + 1e-6
    # White noise: mean power per coefficient is about flat (relative power near 1 in every populated bin).
    acc = SpectrumAccumulator("noise")
    acc.update(noise)
    rel = torch.tensor(acc.result()["relative_power"])[1:]
    assert rel.min() > 0.5 and rel.max() < 1.6
    # A smooth field puts almost all its energy in the lowest bins.
    yy, xx = torch.meshgrid(
        torch.linspace(0, 2 * math.pi, 16), torch.linspace(0, 2 * math.pi, 16), indexing="ij"
    )
    smooth = (torch.sin(xx) + torch.cos(yy)).expand(2, 3, 16, 16)
    acc2 = SpectrumAccumulator("smooth")
    acc2.update(smooth)
    share = torch.tensor(acc2.result()["energy_share"])
    assert share.sum() == pytest.approx(1.0, abs=1e-6)
    assert share[:3].sum() > 0.95


def test_radial_bins_step_is_one_frequency():
    idx, rho = radial_bins(8, 8)
    assert idx[0, 0] == 0 and idx[0, 1] == 1 and idx[1, 1] == 1 and idx[0, 4] == 4 and idx[4, 4] == 6
    assert rho[1] == pytest.approx(0.25)


def test_spectrum_shares_sum_to_one_for_uae_and_teacher(tiny_model, image_folder, tmp_path):
    # The teacher is the encoder re-initialised from "DINOv2" weights: here the tiny encoder's own weights
    # saved in timm layout, so teacher and UAE latents must agree.
    weights = tmp_path / "teacher.safetensors"
    save_file({k: v.contiguous() for k, v in tiny_model.encoder.vit.state_dict().items()}, str(weights))
    encoders = [uae_encoder(tiny_model), teacher_encoder(tiny_model, weights)]
    ds = build_dataset(image_folder, 32)
    results = compute_spectra(
        encoders, make_loader(ds, 3), band_energy=tiny_model.band_projector.band_energy, progress=False
    )
    assert [r["encoder"] for r in results] == ["uae", "teacher"]
    for r in results:
        assert r["num_images"] == 8 and r["latent_shape"] == [32, 8, 8]
        assert len(r["band_share"]) == tiny_model.config.num_bands
        assert sum(r["band_share"]) == pytest.approx(1.0, abs=1e-6)
        assert sum(r["energy_share"]) == pytest.approx(1.0, abs=1e-6)
        assert all(s >= 0 for s in r["band_share"])
    for a, b in zip(results[0]["band_share"], results[1]["band_share"]):
        assert a == pytest.approx(b, abs=1e-5)
    # Direct: band_energy averaged over the same images.
    x = torch.stack([ds[i]["image"] for i in range(8)])
    direct = tiny_model.band_projector.band_energy(tiny_model.encode(x).latent).mean(0)
    torch.testing.assert_close(torch.tensor(results[0]["band_share"]), direct.float(), rtol=1e-4, atol=1e-5)
    spec_csv, band_csv = write_spectrum_csv(results, tmp_path / "out")
    rows = band_csv.read_text().strip().splitlines()
    assert rows[0] == "encoder,band,share" and len(rows) == 1 + 2 * tiny_model.config.num_bands
    assert sum(float(r.split(",")[2]) for r in rows[1:4]) == pytest.approx(1.0, abs=1e-6)
    assert spec_csv.read_text().startswith("encoder,bin,rho,coefficients,energy_share,relative_power")
    png = plot_spectra(results, tmp_path / "out" / "spectrum.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000


def test_custom_encoder_with_other_grid_size(tiny_model, image_folder):
    """Any encoder (e.g. a pixel autoencoder with a 4x4 grid) gets spectra and UAE-band shares."""
    pool = LatentEncoder("pixels-avg", lambda x: torch.nn.functional.avg_pool2d(x, 4), 16)
    ds = build_dataset(image_folder, 32)
    (r,) = compute_spectra(
        [pool], make_loader(ds, 4), band_energy=tiny_model.band_projector.band_energy, progress=False
    )
    assert r["latent_shape"] == [3, 4, 4] and sum(r["band_share"]) == pytest.approx(1.0, abs=1e-6)


def test_teacher_without_weights_is_a_clear_error(tiny_model):
    with pytest.raises(FileNotFoundError, match="teacher"):
        teacher_encoder(tiny_model)


def test_lfc_plus_hfc_sum_back_to_the_original(photos32):
    for radius in (0.0, 0.25, 0.5, 1.0):
        lfc, hfc = split_frequencies(photos32, radius)
        torch.testing.assert_close(lfc + hfc, photos32, rtol=0, atol=1e-5)
    lfc0, _ = split_frequencies(photos32, 0.0)  # only the DC term: the per-channel mean image
    torch.testing.assert_close(
        lfc0, photos32.mean((-2, -1), keepdim=True).expand_as(photos32), rtol=0, atol=1e-5
    )
    lfc_all, hfc_none = split_frequencies(photos32, math.sqrt(2) + 0.01)
    torch.testing.assert_close(lfc_all, photos32, rtol=0, atol=1e-5)
    assert hfc_none.abs().max() < 1e-5
    # Energy moves from HFC to LFC as the radius grows.
    e = [split_frequencies(photos32, r)[1].pow(2).sum().item() for r in (0.1, 0.3, 0.6)]
    assert e[0] > e[1] > e[2] > 0


def test_filtered_images_are_valid_model_inputs(photos32, tiny_model):
    lo, hi = lfc_image(photos32, 0.25), hfc_image(photos32, 0.25)
    for im in (lo, hi):
        assert im.shape == photos32.shape and im.min() >= 0 and im.max() <= 1
        tiny_model(im)  # accepted by the model's input check
    assert abs(hi.mean().item() - 0.5) < 0.05  # HFC is shown on mid-gray
    assert make_filter("original", 0.5) is None
    torch.testing.assert_close(make_filter("lfc", 0.25)(photos32), lo)
    with pytest.raises(ValueError):
        make_filter("band", 0.5)
