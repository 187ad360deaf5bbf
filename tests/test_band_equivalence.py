"""Optimised band-projector paths equal their references within float tolerance.

The fused split (one real FFT / DCT, precomputed effective masks, one batched inverse) must equal the
literal iterative split ``BandScheme.split_iterative``; the cached, matmul-based DCT must equal the
plain einsum with freshly built DCT matrices; caches built under ``torch.inference_mode`` must still
work with autograd.
"""

from __future__ import annotations

import pytest
import torch

import uae
from uae.layers.bands import build_band_scheme
from uae.layers.spectral import dct_matrix


def _einsum_dct(z: torch.Tensor) -> torch.Tensor:
    """Reference forward DCT-II over the last two axes (matrices rebuilt each call)."""
    return torch.einsum("uh,...hw,vw->...uv", dct_matrix(z.shape[-2]), z, dct_matrix(z.shape[-1]))


def _einsum_idct(spec: torch.Tensor) -> torch.Tensor:
    """Reference inverse DCT-II."""
    return torch.einsum("uh,...uv,vw->...hw", dct_matrix(spec.shape[-2]), spec, dct_matrix(spec.shape[-1]))


@pytest.mark.parametrize("shape", [(2, 5, 16, 16), (3, 4, 7, 9), (2, 3, 4, 8, 8)])
def test_cached_matmul_dct_equals_einsum_reference(shape: tuple[int, ...]) -> None:
    torch.manual_seed(0)
    z = torch.randn(shape)
    proj = build_band_scheme(4, transform="dct", grid_size=16)
    spec = proj._forward_transform(z)
    torch.testing.assert_close(spec, _einsum_dct(z), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(
        proj._inverse_transform(spec, z.shape[-2:]), _einsum_idct(spec), rtol=1e-5, atol=1e-5
    )
    torch.testing.assert_close(proj._inverse_transform(spec, z.shape[-2:]), z, rtol=1e-5, atol=1e-5)


def test_dct_matrices_are_cached_once_per_size_and_device() -> None:
    proj = build_band_scheme(3, transform="dct", grid_size=8)
    d16 = proj._dct(16, torch.device("cpu"))
    assert proj._dct(16, torch.device("cpu")) is d16  # built once
    torch.testing.assert_close(d16 @ d16.T, torch.eye(16), atol=1e-6, rtol=0)  # orthonormal
    torch.testing.assert_close(d16, dct_matrix(16))
    proj(torch.randn(1, 2, 16, 16))
    proj(torch.randn(1, 2, 9, 12))  # above MATRIX_MAX_CELLS: the transform runs on every call
    assert set(proj._dct_cache) == {(16, "cpu"), (9, "cpu"), (12, "cpu")}


@pytest.mark.parametrize("transform", ["fft", "dct"])
@pytest.mark.parametrize("k", [1, 2, 4, 8])
@pytest.mark.parametrize("hw", [(16, 16), (9, 12), (8, 8), (7, 9), (4, 6), (1, 1)])
def test_fused_split_equals_iterative_reference(transform: str, k: int, hw: tuple[int, int]) -> None:
    torch.manual_seed(k)
    z = torch.randn(2, 64, *hw) * 2 + 0.5
    proj = build_band_scheme(k, transform=transform, grid_size=16)
    fused = proj(z)
    ref = proj.split_iterative(z)
    assert fused.shape == ref.shape == (2, k, 64, *hw)
    torch.testing.assert_close(fused, ref, rtol=1e-5, atol=2e-5)
    torch.testing.assert_close(fused.sum(1), z, rtol=1e-5, atol=2e-5)


@pytest.mark.parametrize("transform", ["fft", "dct"])
def test_split_stays_float32_and_equal_under_bf16_autocast(transform: str) -> None:
    torch.manual_seed(1)
    z = torch.randn(2, 16, 16, 16)
    proj = build_band_scheme(4, transform=transform, grid_size=16)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        fused = proj(z.bfloat16())
    assert fused.dtype == torch.float32
    torch.testing.assert_close(fused, proj.split_iterative(z.bfloat16().float()), rtol=1e-5, atol=2e-5)


@pytest.mark.parametrize("transform", ["fft", "dct"])
def test_caches_built_in_inference_mode_still_support_backward(transform: str) -> None:
    proj = build_band_scheme(4, transform=transform, grid_size=8)
    with torch.inference_mode():  # first use of a 6x6 grid fills the mask (and DCT) caches
        proj(torch.randn(1, 2, 6, 6))
    torch.manual_seed(2)
    z = torch.randn(1, 2, 6, 6, requires_grad=True)
    w = torch.randn(1, 4, 2, 6, 6)
    (grad,) = torch.autograd.grad((proj(z) * w).sum(), z)
    (grad_ref,) = torch.autograd.grad((proj.split_iterative(z) * w).sum(), z)
    torch.testing.assert_close(grad, grad_ref, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("transform", ["fft", "dct"])
def test_model_bands_and_decode_equal_the_reference_split(transform: str, photos32: torch.Tensor) -> None:
    torch.manual_seed(0)
    model = uae.create_model("uae_test", band_transform=transform).eval()
    # A non-zero spectral transform, so the fused latent depends on every band.
    torch.nn.init.normal_(model.modulator.conv_out.weight, std=0.02)
    with torch.no_grad():
        enc = model.encode(photos32)
        ref_bands = model.band_projector.split_iterative(enc.latent)
        torch.testing.assert_close(enc.bands, ref_bands, rtol=1e-5, atol=1e-5)
        out = model.decode(enc.latent).sample
        ref = model.render(model.fuse(ref_bands))
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize(
    ("scheme", "transform"), [("smooth", "fft"), ("smooth", "dct"), ("authors_v1", "fft")]
)
def test_small_grids_split_by_one_matrix_product_equal_the_transform(scheme: str, transform: str) -> None:
    torch.manual_seed(3)
    proj = build_band_scheme(3, transform=transform, grid_size=8, scheme=scheme)
    count = None if scheme == "authors_v1" else 2
    for hw in [(8, 8), (5, 7), (9, 12)]:
        z = torch.randn(4, 32, *hw) * 3 + 1
        masks = proj.band_masks(*hw, z.device)
        via_transform = proj.apply_masks(z, masks if count is None else masks[:count])
        bands = proj.masked_bands(z, count)
        assert bands.shape == via_transform.shape and bands.is_contiguous()
        torch.testing.assert_close(bands, via_transform, rtol=0, atol=4e-6)
        torch.testing.assert_close(proj(z), proj.split_iterative(z), rtol=0, atol=4e-6)
    # the operator is built once per grid, device and count, for the grids up to MATRIX_MAX_CELLS only
    assert set(proj._operators) == {(8, 8, "cpu", count), (5, 7, "cpu", count)}
    op = proj._operators[(8, 8, "cpu", count)]
    proj(torch.randn(1, 32, 8, 8))
    assert proj._operators[(8, 8, "cpu", count)] is op and op.dtype == torch.float32
    assert op.shape == (64, (3 if count is None else count) * 64)


@pytest.mark.parametrize("scheme", ["smooth", "authors_v1"])
@pytest.mark.parametrize("shape", [(0, 4, 8, 8), (2, 0, 8, 8), (0, 4, 16, 16), (2, 0, 16, 16)])
def test_empty_batches_split_into_empty_bands(scheme: str, shape: tuple[int, ...]) -> None:
    proj = build_band_scheme(3, grid_size=8, scheme=scheme)
    bands = proj(torch.zeros(shape))
    assert bands.shape == (shape[0], 3, *shape[1:])
