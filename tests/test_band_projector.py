"""The FFT/DCT band projector: exact split, full spectral coverage, smooth masks, real low band."""

from __future__ import annotations

import pytest
import torch

from uae.layers.bands import build_band_scheme
from uae.layers.bands.smooth import band_masks
from uae.layers.spectral import lowpass_filter, radial_frequency


@pytest.mark.parametrize("transform", ["fft", "dct"])
@pytest.mark.parametrize("k", list(range(1, 11)))
@pytest.mark.parametrize("hw", [(8, 8), (7, 7), (5, 9), (16, 16)])
def test_bands_sum_back_to_latent(transform: str, k: int, hw: tuple[int, int]) -> None:
    torch.manual_seed(k)
    z = torch.randn(2, 6, *hw) * 3 + 1
    proj = build_band_scheme(k, transform=transform, grid_size=hw[0])
    bands = proj(z)
    assert bands.shape == (2, k, 6, *hw)
    assert bands.dtype == torch.float32
    rel = (bands.sum(1) - z).norm() / z.norm()
    assert rel < 1e-5


@pytest.mark.parametrize("transform", ["fft", "dct"])
@pytest.mark.parametrize("k", [2, 3, 4, 7])
@pytest.mark.parametrize("hw", [(8, 8), (7, 7), (6, 9)])
def test_fused_split_equals_iterative_reference(transform: str, k: int, hw: tuple[int, int]) -> None:
    torch.manual_seed(0)
    z = torch.randn(3, 5, *hw)
    proj = build_band_scheme(k, transform=transform, grid_size=8)
    torch.testing.assert_close(proj(z), proj.split_iterative(z), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("transform", ["fft", "dct"])
def test_masks_partition_the_whole_spectrum_including_corners(transform: str) -> None:
    rho = radial_frequency(16, 16, transform)
    masks = band_masks(rho, 4, softness=0.5)
    torch.testing.assert_close(masks.sum(0), torch.ones_like(rho))
    assert rho.max() > 1.2  # corner frequencies beyond the axis Nyquist radius exist ...
    corner = rho > 1.0
    assert torch.all(masks[-1][corner] == 1.0)  # ... and belong entirely to the last band


def test_nyquist_checkerboard_goes_to_last_band_and_constant_to_band0() -> None:
    proj = build_band_scheme(4, grid_size=16)
    ii, jj = torch.meshgrid(torch.arange(16), torch.arange(16), indexing="ij")
    checker = ((-1.0) ** (ii + jj)).expand(1, 2, 16, 16)
    bands = proj(checker)
    torch.testing.assert_close(bands[:, -1], checker, atol=1e-5, rtol=0)
    assert bands[:, :-1].abs().max() < 1e-5
    const = torch.full((1, 2, 16, 16), 2.5)
    bands = proj(const)
    torch.testing.assert_close(bands[:, 0], const, atol=1e-5, rtol=0)
    assert bands[:, 1:].abs().max() < 1e-5


def test_band0_is_a_low_frequency_disc_not_only_dc() -> None:
    proj = build_band_scheme(4, grid_size=16)
    m0 = proj.masks[0]  # rfft half spectrum (16, 9)
    # Frequencies (0, 1), (1, 0), (1, 1) (one cycle per grid) are fully in band 0, not only DC.
    assert m0[0, 0] == 1 and m0[0, 1] == 1 and m0[1, 0] == 1 and m0[1, 1] == 1
    assert int((m0 > 0.5).sum()) >= 5
    # A slowly varying cosine stays in band 0.
    x = torch.cos(2 * torch.pi * torch.arange(16) / 16).view(1, 1, 1, 16).expand(1, 1, 16, 16)
    bands = proj(x)
    assert bands[:, 0].norm() / x.norm() > 0.999


def test_masks_are_smooth_unless_softness_zero() -> None:
    rho = radial_frequency(32, 32, "fft")
    soft = band_masks(rho, 4, softness=0.5)
    assert ((soft > 0.01) & (soft < 0.99)).any()
    hard = band_masks(rho, 4, softness=0.0)
    assert torch.all((hard == 0) | (hard == 1))


def test_split_runs_in_float32_under_autocast() -> None:
    proj = build_band_scheme(3, grid_size=8)
    z = torch.randn(2, 4, 8, 8)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        bands = proj(z.bfloat16())
    assert bands.dtype == torch.float32
    torch.testing.assert_close(bands.sum(1), z.bfloat16().float(), rtol=1e-5, atol=1e-5)


def test_band_energy_shares_sum_to_one_and_follow_the_content() -> None:
    proj = build_band_scheme(4, grid_size=16)
    energy = proj.band_energy(torch.randn(3, 4, 16, 16))
    assert energy.shape == (3, 4)
    torch.testing.assert_close(energy.sum(1), torch.ones(3))
    const = proj.band_energy(torch.ones(1, 2, 16, 16))
    assert const[0, 0] > 0.999


def test_lowpass_plus_highpass_is_identity() -> None:
    x = torch.rand(2, 3, 32, 32)
    low = lowpass_filter(x, 0.25)
    high = x - low
    torch.testing.assert_close(low + high, x)
    assert low.std() < x.std()


def test_bad_inputs() -> None:
    with pytest.raises(ValueError, match="num_bands"):
        build_band_scheme(0)
    with pytest.raises(ValueError, match="band transform"):
        build_band_scheme(2, transform="wavelet")
    with pytest.raises(ValueError, match=r"\(B, C, H, W\)"):
        build_band_scheme(2, grid_size=4)(torch.randn(4, 4, 4))
