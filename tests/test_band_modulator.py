"""Band modulator: identity at init, noise only on high bands and only in training mode."""

from __future__ import annotations

import pytest
import torch

import uae
from uae.layers.band_modulator import BandModulator


def test_fresh_modulator_is_identity_on_band_sum() -> None:
    mod = BandModulator(8, 3, hidden_dim=16, noise_std=0.7)
    bands = torch.randn(2, 3, 8, 5, 5)
    mod.eval()
    torch.testing.assert_close(mod(bands), bands.sum(1))


@pytest.mark.parametrize("k", [2, 4])
def test_noise_only_on_high_bands_in_training(k: int) -> None:
    mod = BandModulator(8, k, hidden_dim=16, noise_std=0.5)
    bands = torch.randn(4, k, 8, 6, 6)
    mod.train()
    noisy = mod.add_noise(bands)
    assert torch.equal(noisy[:, 0], bands[:, 0])  # band 0 never noised
    for j in range(1, k):  # every high band is noised (also with K=2)
        diff = noisy[:, j] - bands[:, j]
        assert diff.abs().max() > 0
        assert 0.4 < diff.std() < 0.6
    mod.eval()
    assert torch.equal(mod.add_noise(bands), bands)


def test_noise_min_band_selects_bands() -> None:
    mod = BandModulator(4, 4, hidden_dim=8, noise_std=1.0, noise_min_band=2).train()
    bands = torch.zeros(2, 4, 4, 3, 3)
    noisy = mod.add_noise(bands)
    assert torch.equal(noisy[:, :2], bands[:, :2])
    assert (noisy[:, 2:] != 0).all()
    assert mod.noise_mask().tolist() == [0.0, 0.0, 1.0, 1.0]
    with pytest.raises(ValueError, match="never noised"):
        BandModulator(4, 4, noise_min_band=0)


def test_spectral_transform_residual_is_learned() -> None:
    torch.manual_seed(0)
    mod = BandModulator(4, 2, hidden_dim=8).eval()
    bands = torch.randn(2, 2, 4, 5, 5)
    out = mod(bands)
    out.pow(2).mean().backward()
    assert mod.conv_out.weight.grad is not None and mod.conv_out.weight.grad.abs().sum() > 0
    with torch.no_grad():
        mod.conv_out.weight.normal_()
    assert not torch.allclose(mod(bands), bands.sum(1))


def test_band_mixing_starts_at_identity() -> None:
    mod = BandModulator(4, 3, hidden_dim=8, band_mixing=True).eval()
    bands = torch.randn(2, 3, 4, 4, 4)
    torch.testing.assert_close(mod(bands), bands.sum(1))
    assert mod.mix_in.shape == (3, 3)


def test_model_noise_train_vs_eval(photos32: torch.Tensor) -> None:
    torch.manual_seed(0)
    model = uae.create_model("uae_test", noise_std=0.5)
    model.eval()
    a, b = model(photos32).sample, model(photos32).sample
    assert torch.equal(a, b)  # eval: deterministic
    with torch.no_grad():  # make the decoder sensitive to the fused latent's noise
        model.train()
        enc = model.encode(photos32)
        f1, f2 = model.fuse(enc.bands), model.fuse(enc.bands)
    assert not torch.equal(f1, f2)  # train: noise injected
    model.eval()
    torch.testing.assert_close(model.fuse(enc.bands), enc.latent, rtol=1e-5, atol=1e-5)


def test_bad_band_shape() -> None:
    mod = BandModulator(4, 3, hidden_dim=8)
    with pytest.raises(ValueError, match=r"\(B, 3, C, H, W\)"):
        mod(torch.randn(2, 2, 4, 4, 4))
