"""The band schemes as objects chosen once, the spectral helpers they share, the one progressive decode and
the one spectrum chart."""

from __future__ import annotations

import math

import pytest
import torch

import uae
from uae.errors import InputError
from uae.layers.bands import (
    SCHEMES,
    AuthorsV1Bands,
    BandScheme,
    SmoothBands,
    ZigzagLowpass,
    build_band_scheme,
)
from uae.layers.spectral import SpectralTransform, lowpass_filter, radial_power, relative_power
from uae.visualize import (
    FREQUENCY_AXIS_LABEL,
    POWER_AXIS_LABEL,
    draw_radial_spectrum,
    progressive_decodes,
)

ZIGZAG = {
    "band_scheme": "dct_zigzag",
    "band_transform": "dct",
    "num_bands": 2,
    "band_mixing": True,
    "zigzag_keep_count": 5,
}
V1 = {"band_scheme": "authors_v1", "num_bands": 2, "band_schedule": (0.32, 16.0)}


@pytest.mark.parametrize(
    ("overrides", "cls"),
    [
        ({}, SmoothBands),
        ({"band_transform": "dct"}, SmoothBands),
        (V1, AuthorsV1Bands),
        (ZIGZAG, ZigzagLowpass),
    ],
)
def test_the_model_builds_the_configured_scheme_once(overrides: dict, cls: type[BandScheme]) -> None:
    model = uae.create_model("uae_test", **overrides)
    scheme = model.band_projector
    assert type(scheme) is cls and scheme.scheme == model.config.band_scheme
    assert SCHEMES[model.config.band_scheme] is cls
    assert scheme.num_bands == model.config.num_bands and scheme.transform == model.config.band_transform
    h = model.config.grid_size
    assert scheme.masks.shape[:2] == (model.config.num_bands, h)
    assert not list(scheme.parameters()) and not scheme.state_dict()  # no weights: checkpoints unchanged
    bands = model.split(torch.randn(2, model.config.latent_dim, h, h))
    assert bands.shape == (2, model.config.num_bands, model.config.latent_dim, h, h)


def test_only_the_zigzag_scheme_changes_the_initial_band_mixing() -> None:
    assert SmoothBands(2).initial_mixing() is None and AuthorsV1Bands(2).initial_mixing() is None
    torch.testing.assert_close(
        ZigzagLowpass(keep_count=3).initial_mixing(), torch.diag(torch.tensor([1.0, 0.0]))
    )
    model = uae.create_model("uae_test", **ZIGZAG)
    torch.testing.assert_close(model.modulator.mix_in.detach(), torch.diag(torch.tensor([1.0, 0.0])))
    smooth = uae.create_model("uae_test", band_mixing=True)
    torch.testing.assert_close(smooth.modulator.mix_in.detach(), torch.eye(smooth.config.num_bands))


@pytest.mark.parametrize(
    ("kwargs", "param", "match"),
    [
        ({"num_bands": 2, "scheme": "wavelets"}, "band_scheme", "band_scheme must be one of"),
        ({"num_bands": 0}, "num_bands", "num_bands"),
        ({"num_bands": 2, "transform": "wavelet"}, "transform", "band transform"),
        ({"num_bands": 2, "schedule": (1.0, 2.0)}, "schedule", "only used by scheme='authors_v1'"),
        ({"num_bands": 2, "scheme": "authors_v1", "schedule": (2.0, 1.0)}, "schedule", "non-decreasing"),
        ({"num_bands": 2, "scheme": "authors_v1", "transform": "dct"}, "transform", "runs on the FFT"),
        ({"num_bands": 3, "scheme": "dct_zigzag", "transform": "dct"}, "num_bands", "num_bands=2"),
        ({"num_bands": 2, "zigzag": {"keep_count": 1}}, "zigzag", "only used"),
    ],
)
def test_bad_settings_are_input_errors_naming_the_parameter(kwargs: dict, param: str, match: str) -> None:
    with pytest.raises(InputError, match=match) as e:
        build_band_scheme(**kwargs)
    assert e.value.param == param


def test_split_errors_name_the_latent() -> None:
    with pytest.raises(InputError, match=r"\(B, C, H, W\)") as e:
        SmoothBands(3, grid_size=4)(torch.randn(4, 4, 4))
    assert e.value.param == "z"
    with pytest.raises(InputError, match=r"\(B, C, H, W\)"):
        AuthorsV1Bands(2, grid_size=4).split_iterative(torch.randn(4, 4))


@pytest.mark.parametrize("transform", ["fft", "dct"])
@pytest.mark.parametrize("hw", [(8, 8), (7, 9), (5, 1), (6, 2)])
def test_spectral_transform_is_orthonormal_and_its_power_obeys_parseval(
    transform: str, hw: tuple[int, int]
) -> None:
    x = torch.randn(2, 3, *hw, generator=torch.Generator().manual_seed(0))
    t = SpectralTransform(transform)
    torch.testing.assert_close(t.inverse(t.forward(x), hw), x, atol=1e-5, rtol=0)
    torch.testing.assert_close(t.power(x).sum((-2, -1)), x.pow(2).sum((-2, -1)), atol=1e-4, rtol=1e-5)
    if transform == "dct":
        assert set(t.dct_cache) == {(hw[0], "cpu"), (hw[1], "cpu")}


def test_lowpass_filter_keeps_dtype_and_its_extremes() -> None:
    x = torch.rand(2, 3, 16, 12, dtype=torch.float64)
    for transform in ("fft", "dct"):
        everything = lowpass_filter(x, math.sqrt(2) + 0.01, transform)
        assert everything.dtype == torch.float64
        torch.testing.assert_close(everything, x, atol=1e-5, rtol=0)
    dc = lowpass_filter(x, 0.0)  # the FFT's DC term alone: the mean over the grid
    torch.testing.assert_close(dc, x.mean((-2, -1), keepdim=True).expand_as(x), atol=1e-5, rtol=0)


def test_relative_power_is_about_one_for_white_noise() -> None:
    z = torch.randn(64, 8, 16, 16, generator=torch.Generator().manual_seed(1))
    bin_power, count, _ = radial_power(z)
    rel = relative_power(bin_power, count)
    assert rel.shape == bin_power.shape
    torch.testing.assert_close(
        (rel * count).sum(1) / count.sum(), torch.ones(64)
    )  # the mean is 1 by definition
    assert 0.8 < float(rel.mean(0)[1:].min()) and float(rel.mean(0)[1:].max()) < 1.2


def test_progressive_decodes_from_images_or_bands_are_the_same(
    tiny_model: uae.UAE, photos32: torch.Tensor
) -> None:
    x = photos32[:2]
    decodes, energy = progressive_decodes(tiny_model, x)
    k = tiny_model.config.num_bands
    assert decodes.shape[:2] == (2, k) and energy.shape == (2, k)
    bands = tiny_model.encode(x).bands
    again, none = progressive_decodes(tiny_model, bands=bands)
    assert none is None and torch.equal(again, decodes)
    some, _ = progressive_decodes(tiny_model, bands=bands, upto=[k - 1, 0])
    assert torch.equal(some[:, 0], decodes[:, -1]) and torch.equal(some[:, 1], decodes[:, 0])
    torch.testing.assert_close(decodes[:, 0], tiny_model.decode_bands(bands, upto=0).sample)
    for bad in ({}, {"x": x, "bands": bands}):
        with pytest.raises(InputError, match="either x"):
            progressive_decodes(tiny_model, **bad)
    with pytest.raises(InputError, match="upto") as e:
        progressive_decodes(tiny_model, bands=bands, upto=[k])
    assert e.value.param == "upto"
    with pytest.raises(InputError, match="bands of shape") as e:
        tiny_model.decode_bands(bands[:, :1])
    assert e.value.param == "bands"


def test_radial_spectrum_is_drawn_with_labelled_axes_legend_and_band_shading() -> None:
    from matplotlib.figure import Figure

    ax = Figure().subplots()
    rho = torch.linspace(0, 1.4, 8)
    draw_radial_spectrum(ax, {"uae": (rho, torch.ones(8)), "vae": (rho.tolist(), [0.0] * 8)}, num_bands=3)
    assert ax.get_xlabel() == FREQUENCY_AXIS_LABEL and ax.get_ylabel() == POWER_AXIS_LABEL
    assert ax.get_yscale() == "log"
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["uae", "vae", "white noise"]
    assert [t.get_text() for t in ax.texts] == ["band 0", "band 1", "band 2"]
    assert float(ax.lines[1].get_ydata().min()) == pytest.approx(
        1e-12
    )  # zero power is clipped for the log axis
