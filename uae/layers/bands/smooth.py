"""The paper's band split (``band_scheme="smooth"``): K smooth radial masks and the iterative residual split.

A latent grid ``z: (B, C, H, W)`` is split into ``K`` frequency bands ``(B, K, C, H, W)``:

    r_0 = z,   b_k = P_k(r_k),   r_{k+1} = r_k - b_k,   b_{K-1} = r_{K-1}

where ``P_k`` multiplies the spectrum (orthonormal real FFT, or DCT-II) by a smooth radial low-pass
``L_k`` with cut-off ``(k + 1) / K`` (in units of the Nyquist frequency along one axis). Because every
``P_k`` is diagonal in the frequency domain, the iteration collapses to effective masks

    E_k = L_k * prod_{j<k} (1 - L_j),      E_{K-1} = prod_{j<K-1} (1 - L_j),

which sum to one everywhere, *including the grid's corner frequencies* (radius up to sqrt(2)): the
last band takes the whole residual, so the bands always sum back to ``z``. :meth:`SmoothBands.split`
computes all bands from one forward transform and one batched inverse;
:meth:`SmoothBands.split_iterative` is the literal iteration (the reference the fused path is tested
against).
"""

from __future__ import annotations

import math

import torch

from uae.layers.bands.base import BandScheme, iterated_masks
from uae.layers.spectral import radial_frequency


def lowpass_masks(rho: torch.Tensor, num_bands: int, softness: float) -> torch.Tensor:
    """The ``K - 1`` raised-cosine low-pass masks ``L_k`` with cut-offs ``(k + 1) / K``.

    Args:
        rho: Radial frequency grid ``(H, W')`` (:func:`uae.layers.spectral.radial_frequency`).
        num_bands: ``K``.
        softness: Transition width as a fraction of a band's width (0 = hard step).

    Returns:
        ``(K - 1, H, W')`` masks with values in ``[0, 1]``, equal to 1 at DC.
    """
    width = softness / num_bands
    masks = []
    for k in range(num_bands - 1):
        cutoff = (k + 1) / num_bands
        if width == 0:
            m = (rho <= cutoff).to(rho.dtype)
        else:
            t = ((rho - (cutoff - width / 2)) / width).clamp(0.0, 1.0)
            m = 0.5 * (1.0 + torch.cos(math.pi * t))
        masks.append(m)
    if not masks:
        return rho.new_zeros((0, *rho.shape))
    return torch.stack(masks)


def band_masks(rho: torch.Tensor, num_bands: int, softness: float) -> torch.Tensor:
    """Effective per-band masks ``E_k`` of the iterative split; they sum to exactly one.

    Args:
        rho: Radial frequency grid ``(H, W')``.
        num_bands: ``K``.
        softness: Transition width as a fraction of a band's width (0 = hard step).

    Returns:
        ``(K, H, W')`` masks.
    """
    return iterated_masks(lowpass_masks(rho, num_bands, softness), torch.ones_like(rho), keep_residual=True)


class SmoothBands(BandScheme):
    """Split a latent grid into ``K`` frequency bands with smooth radial masks; the bands sum back to it.

    Args:
        num_bands: ``K`` (>= 1).
        transform: ``"fft"`` or ``"dct"``.
        softness: Raised-cosine transition width as a fraction of a band's width (0 = hard rings).
        grid_size: Default latent grid side; its masks are precomputed as a buffer, other sizes are
            computed on first use and cached.
    """

    scheme = "smooth"

    def __init__(
        self, num_bands: int, transform: str = "fft", softness: float = 0.5, grid_size: int = 16
    ) -> None:
        super().__init__(num_bands, transform, grid_size)
        self.softness = softness
        self._precompute_masks()

    def extra_repr(self) -> str:
        return f"num_bands={self.num_bands}, transform={self.transform!r}, softness={self.softness}"

    def make_masks(self, height: int, width: int, device: torch.device | None = None) -> torch.Tensor:
        """The effective masks ``E_k`` ``(K, H, W')`` of an ``H x W`` grid."""
        rho = radial_frequency(height, width, self.transform, device=device)
        return band_masks(rho, self.num_bands, self.softness)

    def split(self, z: torch.Tensor) -> torch.Tensor:
        """Fused split: bands ``0..K-2`` from one transform and one batched inverse (one matrix product on
        small grids, :meth:`masked_bands`), the last as the residual.

        Args:
            z: Float32 latent grid ``(B, C, H, W)``.

        Returns:
            Bands ``(B, K, C, H, W)`` with ``bands.sum(1) == z`` up to float rounding.
        """
        if self.num_bands == 1:
            return z.unsqueeze(1)
        lower = self.masked_bands(z, self.num_bands - 1)  # (B, K-1, C, H, W)
        last = z - lower.sum(dim=1)
        return torch.cat([lower, last.unsqueeze(1)], dim=1)

    def _split_iterative(self, z: torch.Tensor) -> torch.Tensor:
        h, w = z.shape[-2:]
        rho = radial_frequency(h, w, self.transform, device=z.device)
        residual = z
        bands = []
        for low in lowpass_masks(rho, self.num_bands, self.softness):
            band = self.spectral.inverse(self.spectral.forward(residual) * low, (h, w))
            bands.append(band)
            residual = residual - band
        bands.append(residual)
        return torch.stack(bands, dim=1)


__all__ = ["SmoothBands", "band_masks", "lowpass_masks"]
