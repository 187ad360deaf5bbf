"""The UAE model API: shapes, outputs, features, progressive decoding, validation, precision."""

from __future__ import annotations

import pytest
import torch

import uae
from uae import DecoderOutput, EncoderOutput, UAEOutput


def test_encode_decode_forward_shapes(tiny_model: uae.UAE, photos32: torch.Tensor) -> None:
    b = photos32.shape[0]
    c, h, w = tiny_model.config.latent_shape
    k = tiny_model.config.num_bands
    enc = tiny_model.encode(photos32)
    assert isinstance(enc, EncoderOutput)
    assert enc.latent.shape == (b, c, h, w) and enc.bands.shape == (b, k, c, h, w)
    torch.testing.assert_close(enc.bands.sum(1), enc.latent, rtol=1e-5, atol=1e-5)
    dec = tiny_model.decode(enc.latent)
    assert isinstance(dec, DecoderOutput)
    assert dec.sample.shape == (b, 3, tiny_model.config.output_size, tiny_model.config.output_size)
    out = tiny_model(photos32)
    assert isinstance(out, UAEOutput)
    assert out.sample.shape == dec.sample.shape
    assert out.sample.min() >= 0 and out.sample.max() <= 1  # eval mode clamps
    torch.testing.assert_close(out.sample, dec.sample, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(out.fused, out.latent, rtol=1e-5, atol=1e-5)  # fresh modulator: identity


def test_training_mode_is_unclamped_and_differentiable(photos32: torch.Tensor) -> None:
    torch.manual_seed(0)
    model = uae.create_model("uae_test", noise_std=0.0).train()
    out = model(photos32)
    loss = (out.sample - photos32).abs().mean()
    loss.backward()
    assert model.decoder.pred.weight.grad.abs().sum() > 0
    assert model.encoder.vit.patch_embed.proj.weight.grad.abs().sum() > 0
    assert model.modulator.conv_out.weight.grad.abs().sum() > 0


def test_features(tiny_model: uae.UAE, photos32: torch.Tensor) -> None:
    c, h, w = tiny_model.config.latent_shape
    k = tiny_model.config.num_bands
    enc = tiny_model.encode(photos32)
    f0 = tiny_model.features(photos32)
    assert f0.shape == (len(photos32), c)
    torch.testing.assert_close(f0, enc.bands[:, 0].mean((-2, -1)))
    assert tiny_model.features(photos32, band=1, pool=None).shape == (len(photos32), c, h, w)
    assert tiny_model.features(photos32, band="all").shape == (len(photos32), k * c)
    torch.testing.assert_close(tiny_model.features(photos32, band="latent"), enc.latent.mean((-2, -1)))
    with pytest.raises(ValueError, match="band must be"):
        tiny_model.features(photos32, band=k)
    with pytest.raises(ValueError, match="pool"):
        tiny_model.features(photos32, pool="max")


def test_decode_bands_progressive(tiny_model: uae.UAE, photos32: torch.Tensor) -> None:
    enc = tiny_model.encode(photos32)
    k = tiny_model.config.num_bands
    full = tiny_model.decode_bands(enc.bands, upto=k - 1).sample
    torch.testing.assert_close(full, tiny_model(photos32).sample, rtol=1e-5, atol=1e-5)
    low = tiny_model.decode_bands(enc.bands, upto=0).sample
    only0 = enc.bands.clone()
    only0[:, 1:] = 0
    torch.testing.assert_close(low, tiny_model.decode_bands(only0).sample)
    assert not torch.allclose(low, full)
    with pytest.raises(ValueError, match="upto"):
        tiny_model.decode_bands(enc.bands, upto=k)
    with pytest.raises(ValueError, match="bands of shape"):
        tiny_model.decode_bands(enc.latent)


def test_other_resolutions_divisible_by_patch(tiny_model: uae.UAE) -> None:
    out = tiny_model(torch.rand(1, 3, 48, 40))
    assert out.latent.shape == (1, 32, 12, 10)
    assert out.sample.shape == (1, 3, 48, 40)


@pytest.mark.parametrize(
    ("x", "match"),
    [
        (torch.rand(3, 32, 32), "rank 3"),
        (torch.rand(1, 1, 32, 32), "1 channels"),
        ((torch.rand(1, 3, 32, 32) * 255).to(torch.uint8), "dtype torch.uint8"),
        (torch.rand(1, 3, 30, 32), "spatial size"),
        (torch.full((1, 3, 32, 32), float("nan")), "non-finite"),
        (torch.rand(1, 3, 32, 32) * 255, "0-255"),
        (torch.rand(0, 3, 32, 32), "empty"),
    ],
)
def test_bad_inputs_raise_with_expected_shape(tiny_model: uae.UAE, x: torch.Tensor, match: str) -> None:
    with pytest.raises(ValueError, match=match) as e:
        tiny_model(x)
    assert "expected x of shape (B, 3, H, W)" in str(e.value)


def test_bad_latent_raises(tiny_model: uae.UAE) -> None:
    with pytest.raises(ValueError, match=r"\(B, 32, h, w\)"):
        tiny_model.decode(torch.randn(1, 16, 8, 8))


def test_autocast_bf16_runs_through_model(tiny_model: uae.UAE, photos32: torch.Tensor) -> None:
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = tiny_model(photos32)
    assert out.sample.dtype == torch.float32
    assert out.bands.dtype == torch.float32
    torch.testing.assert_close(out.bands.sum(1), out.latent, rtol=1e-5, atol=1e-5)
    ref = tiny_model(photos32).sample
    assert (out.sample - ref).abs().mean() < 0.05


def test_autocast_dtype_selection(monkeypatch: pytest.MonkeyPatch) -> None:
    assert uae.autocast_dtype("cpu") is None
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert uae.autocast_dtype("cuda") is torch.bfloat16
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    assert uae.autocast_dtype("cuda:0") is torch.float16


def test_latent_stats(tiny_model: uae.UAE, photos32: torch.Tensor) -> None:
    z = tiny_model.encode(photos32).latent
    mean, std = z.mean((0, 2, 3)), z.std((0, 2, 3))
    tiny_model.set_latent_stats(mean, std)
    zn = tiny_model.normalize_latent(z)
    torch.testing.assert_close(zn.mean((0, 2, 3)), torch.zeros_like(mean), atol=1e-5, rtol=0)
    torch.testing.assert_close(tiny_model.denormalize_latent(zn), z, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="positive"):
        tiny_model.set_latent_stats(mean, -std)
