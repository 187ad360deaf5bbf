"""Spectral helpers shared by the band schemes, the pictures and the spectrum tools.

Frequencies are *normalised*: ``rho = 1`` is the Nyquist frequency along one axis, so the corners of a
2-D grid reach ``sqrt(2)``. Transforms are orthonormal (Parseval holds), over the last two axes:

* ``"fft"``: the real FFT's half spectrum ``(H, W // 2 + 1)`` (:func:`torch.fft.rfft2`, ``norm="ortho"``);
* ``"dct"``: the DCT-II coefficient grid ``(H, W)`` as two matrix products with :func:`dct_matrix`.

:class:`SpectralTransform` runs either one (with its DCT matrices cached per size and device);
:func:`lowpass_filter` is the ideal radial low-pass of an image or latent; :func:`radial_power` bins a
latent's full-FFT power by radius (``uae spectrum``, the app's spectrum chart).
"""

from __future__ import annotations

import math

import torch

from uae.errors import InputError

#: The spectral transforms a band split can run on.
TRANSFORMS = ("fft", "dct")


def check_transform(transform: str) -> None:
    """Raise :class:`~uae.errors.InputError` unless ``transform`` is ``"fft"`` or ``"dct"``."""
    if transform not in TRANSFORMS:
        raise InputError(
            f"unknown band transform {transform!r}: transform must be 'fft' or 'dct'", param="transform"
        )


def radial_frequency(
    height: int, width: int, transform: str, device: torch.device | None = None
) -> torch.Tensor:
    """Normalised radial frequency of each spectral coefficient.

    Args:
        height: Grid height ``H``.
        width: Grid width ``W``.
        transform: ``"fft"`` (real-FFT half spectrum, shape ``(H, W // 2 + 1)``) or ``"dct"``
            (DCT-II index grid, shape ``(H, W)``).
        device: Device of the result.

    Returns:
        ``rho`` in ``[0, sqrt(2)]`` where 1 is the Nyquist frequency along an axis.
    """
    check_transform(transform)
    if transform == "fft":
        fy = torch.fft.fftfreq(height, device=device).abs() * 2.0
        fx = torch.fft.rfftfreq(width, device=device) * 2.0
    else:
        fy = torch.arange(height, device=device, dtype=torch.float32) / height
        fx = torch.arange(width, device=device, dtype=torch.float32) / width
    return torch.sqrt(fy[:, None] ** 2 + fx[None, :] ** 2)


def fft_integer_frequencies(n: int, device: torch.device | None = None) -> torch.Tensor:
    """Signed integer FFT frequencies ``0, 1, .., -1`` of ``n`` samples (``fftfreq(n) * n``, exact), float32."""
    f = torch.arange(n, device=device)
    return torch.where(f >= (n + 1) // 2, f - n, f).to(torch.float32)


def dct_matrix(
    n: int, device: torch.device | None = None, dtype: torch.dtype = torch.float32
) -> torch.Tensor:
    """Orthonormal DCT-II matrix ``D`` (``n x n``): coefficients ``X = D @ x``, inverse ``x = D.T @ X``."""
    k = torch.arange(n, device=device, dtype=torch.float64)[:, None]
    i = torch.arange(n, device=device, dtype=torch.float64)[None, :]
    d = torch.cos(math.pi * (2 * i + 1) * k / (2 * n)) * math.sqrt(2.0 / n)
    d[0] /= math.sqrt(2.0)
    return d.to(dtype)


def zigzag_order(height: int, width: int) -> torch.Tensor:
    """Zigzag scan of an ``H x W`` DCT coefficient grid, starting at DC (the authors' v2 order).

    Anti-diagonals ``s = y + x`` are visited in increasing order; even ``s`` run from the top-right
    end down-left (``x`` decreasing), odd ``s`` from the bottom-left end up-right (``y`` decreasing).
    As ``(y, x)``: ``(0,0), (1,0), (0,1), (0,2), (1,1), (2,0), (3,0), ...`` (JPEG's zigzag, transposed).

    Args:
        height: Grid height ``H``.
        width: Grid width ``W``.

    Returns:
        ``(H*W,)`` long tensor of row-major linear indices ``y * W + x`` in scan order.
    """
    if height < 1 or width < 1:
        raise InputError(f"zigzag_order needs a non-empty grid, got {height}x{width}", param="height")
    order = []
    for s in range(height + width - 1):
        ys = range(max(0, s - width + 1), min(s, height - 1) + 1)  # rows on this anti-diagonal
        if s % 2 == 0:
            cells = [(y, s - y) for y in ys]  # x decreasing
        else:
            cells = [(y, s - y) for y in reversed(ys)]  # y decreasing
        order.extend(y * width + x for y, x in cells)
    return torch.tensor(order, dtype=torch.long)


def zigzag_rank(height: int, width: int, device: torch.device | None = None) -> torch.Tensor:
    """Position of every coefficient in the zigzag scan, as an ``(H, W)`` long grid (DC has rank 0)."""
    order = zigzag_order(height, width)
    rank = torch.empty_like(order)
    rank[order] = torch.arange(order.numel())
    return rank.view(height, width).to(device)


def _dct_dtype(x: torch.Tensor) -> torch.dtype:
    """The DCT matrices' dtype for ``x``: float64 for float64 grids, float32 otherwise."""
    return torch.float64 if x.dtype == torch.float64 else torch.float32


class SpectralTransform:
    """An orthonormal 2-D transform over the last two axes: ``"fft"`` (real half spectrum) or ``"dct"``.

    The DCT runs as two broadcast matrix products ``X = D_h x D_w^T`` (about 2x faster than the
    equivalent einsum), with the float32 matrices built once per size and device.

    Args:
        transform: ``"fft"`` or ``"dct"``.
    """

    def __init__(self, transform: str) -> None:
        check_transform(transform)
        self.transform = transform
        self.dct_cache: dict[tuple[int, str], torch.Tensor] = {}

    def dct(self, n: int, device: torch.device, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """Cached DCT-II matrix ``(n, n)`` on ``device`` (float32, or float64 for float64 inputs)."""
        key = (n, str(device)) if dtype == torch.float32 else (n, str(device), str(dtype))
        if key not in self.dct_cache:
            # Cached tensors must not be inference tensors, or a later autograd pass could not save them.
            with torch.inference_mode(False):
                self.dct_cache[key] = dct_matrix(n, device, dtype)
        return self.dct_cache[key]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Coefficients of ``x (..., H, W)``: complex ``(..., H, W // 2 + 1)`` (fft) or real ``(..., H, W)`` (dct)."""
        if self.transform == "fft":
            if 0 in x.stride():  # an expanded input: MKL's FFT (torch < 2.9 on the CPU) rejects zero strides
                x = x.contiguous()
            return torch.fft.rfft2(x, norm="ortho")
        dtype = _dct_dtype(x)
        return self.dct(x.shape[-2], x.device, dtype) @ x @ self.dct(x.shape[-1], x.device, dtype).mT

    def inverse(self, spec: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        """The grid ``(..., H, W)`` of coefficients ``spec``; ``size`` is ``(H, W)``."""
        if self.transform == "fft":
            return torch.fft.irfft2(spec, s=size, norm="ortho")
        dtype = _dct_dtype(spec)
        return self.dct(size[0], spec.device, dtype).mT @ spec @ self.dct(size[1], spec.device, dtype)

    def power(self, x: torch.Tensor) -> torch.Tensor:
        """``|X|^2`` of every coefficient ``(..., H, W')``, each half-spectrum column weighted by how often
        it stands in the full spectrum, so that ``power(x).sum() == (x ** 2).sum()`` (Parseval)."""
        power = self.forward(x).abs().pow(2)
        w = x.shape[-1]
        if self.transform == "fft" and w > 1:
            weight = torch.full((power.shape[-1],), 2.0, device=x.device)
            weight[0] = 1.0
            if w % 2 == 0:
                weight[-1] = 1.0
            power = power * weight
        return power


def lowpass_filter(x: torch.Tensor, radius: float, transform: str = "fft") -> torch.Tensor:
    """Ideal radial low-pass of an image or latent grid (``rho <= radius``); ``x - lowpass`` is the high-pass.

    Args:
        x: ``(..., H, W)`` tensor.
        radius: Cut-off in units of the Nyquist frequency (0..sqrt(2)).
        transform: ``"fft"`` or ``"dct"``.

    Returns:
        Tensor of the same shape and dtype.
    """
    h, w = x.shape[-2:]
    mask = (radial_frequency(h, w, transform, device=x.device) <= radius).float()
    spectral = SpectralTransform(transform)
    return spectral.inverse(spectral.forward(x.float()) * mask, (h, w)).to(x.dtype)


def radial_bins(
    height: int, width: int, device: torch.device | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Integer radial bin of every full-FFT coefficient of an ``H x W`` grid and the bins' ``rho``.

    Bin ``i`` holds coefficients with normalised radius in ``[(i - 0.5) d, (i + 0.5) d)`` where
    ``d = 2 / max(H, W)`` is one frequency step (in units of the Nyquist frequency).

    Returns:
        ``(bin_index (H, W) long, rho_centers (R,))``.
    """
    fy = torch.fft.fftfreq(height, device=device) * 2.0
    fx = torch.fft.fftfreq(width, device=device) * 2.0
    rho = torch.sqrt(fy[:, None] ** 2 + fx[None, :] ** 2)
    step = 2.0 / max(height, width)
    idx = torch.round(rho / step).long()
    centers = torch.arange(int(idx.max()) + 1, device=device, dtype=torch.float32) * step
    return idx, centers


def radial_power(z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-image radial power spectrum of latent grids.

    Args:
        z: ``(B, C, H, W)``.

    Returns:
        ``(bin_power (B, R), bin_count (R,), rho (R,))``: summed power ``|Z|^2`` (orthonormal FFT,
        summed over channels) of the coefficients in each radial bin, the number of coefficients per
        bin, and the bins' normalised frequency. ``bin_power.sum(1)`` equals ``(z ** 2).sum((1, 2, 3))``
        (Parseval).
    """
    if z.ndim != 4:
        raise InputError(f"expected a latent grid z of shape (B, C, H, W), got {tuple(z.shape)}", param="z")
    z = z.float()
    power = torch.fft.fft2(z, norm="ortho").abs().pow(2).sum(1)  # (B, H, W)
    idx, rho = radial_bins(z.shape[-2], z.shape[-1], z.device)
    r = len(rho)
    flat = idx.flatten()
    bin_power = torch.zeros(z.shape[0], r, device=z.device).index_add_(1, flat, power.flatten(1))
    count = torch.bincount(flat, minlength=r).float()
    return bin_power, count, rho


def relative_power(bin_power: torch.Tensor, count: torch.Tensor) -> torch.Tensor:
    """Mean power per coefficient in each radial bin, relative to the image's mean power per coefficient.

    White noise gives about 1 in every bin; a smooth field is far above 1 at low ``rho`` and below it at
    high ``rho``.

    Args:
        bin_power: ``(B, R)`` from :func:`radial_power`.
        count: ``(R,)`` coefficients per bin, from :func:`radial_power`.

    Returns:
        ``(B, R)``.
    """
    total = bin_power.sum(1, keepdim=True).clamp_min(1e-30)
    return bin_power / count / (total / count.sum())


__all__ = [
    "TRANSFORMS",
    "SpectralTransform",
    "check_transform",
    "dct_matrix",
    "fft_integer_frequencies",
    "lowpass_filter",
    "radial_bins",
    "radial_frequency",
    "radial_power",
    "relative_power",
    "zigzag_order",
    "zigzag_rank",
]
