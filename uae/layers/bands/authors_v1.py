"""The authors' v1 band split (``band_scheme="authors_v1"``), for their converted weights.

Hard, inclusive rings on the integer FFT frequency radius up to ``max_radius = min(H // 2, W // 2)``,
radii from their ``v_patch_nums`` schedule (:func:`authors_v1_radii`). Their split projects the running
residual onto each ring in turn; corner frequencies outside every ring stay in the final residual,
which they drop, so these bands do not sum back to ``z``. Their decoder was trained on exactly this
split, so a converted v1 model must run it to reproduce their outputs.
"""

from __future__ import annotations

import math

import torch

from uae.errors import InputError
from uae.layers.bands.base import BandScheme, iterated_masks
from uae.layers.spectral import fft_integer_frequencies


def check_authors_v1_schedule(schedule: tuple[float, ...] | None, num_bands: int, transform: str) -> None:
    """Raise :class:`~uae.errors.InputError` unless ``schedule`` is a valid ``authors_v1`` radius schedule.

    Valid: ``None`` (evenly spaced radii) or ``K`` finite values, non-decreasing, the last one positive;
    the scheme runs on the FFT only.
    """
    if transform != "fft":
        raise InputError(
            f"band scheme 'authors_v1' runs on the FFT, not band_transform={transform!r}", param="transform"
        )
    if schedule is None:
        return
    values = [float(v) for v in schedule]
    if len(values) != num_bands:
        raise InputError(
            f"the authors_v1 schedule needs num_bands={num_bands} values, got {len(values)}", param="schedule"
        )
    if not all(math.isfinite(v) and v >= 0 for v in values) or values[-1] <= 0:
        raise InputError(
            f"the authors_v1 schedule must be finite, >= 0 and end above 0; got {values}", param="schedule"
        )
    if any(b < a for a, b in zip(values, values[1:])):
        raise InputError(f"the authors_v1 schedule must be non-decreasing, got {values}", param="schedule")


def authors_v1_radii(
    schedule: tuple[float, ...] | None,
    num_bands: int,
    height: int,
    width: int,
    device: torch.device | None = None,
) -> torch.Tensor:
    """Ring radii ``(K + 1,)`` of the authors' v1 split on an ``H x W`` grid (float32, as they compute them).

    ``max_radius = min(H // 2, W // 2)`` in integer frequency units; the schedule is scaled so that its
    last value lands on ``max_radius`` (``radii = [0, s_0 / s_{K-1} * max_radius, ..., max_radius]``).
    Without a schedule the radii are evenly spaced on ``[0, max_radius]``.
    """
    max_radius = float(min(height // 2, width // 2))
    if schedule is None:
        return torch.linspace(0.0, max_radius, num_bands + 1, device=device, dtype=torch.float32)
    s = torch.tensor([float(v) for v in schedule[:num_bands]], device=device, dtype=torch.float32)
    radii = s / s[-1].clamp_min(1e-6) * max_radius
    return torch.cat([torch.zeros(1, device=device, dtype=torch.float32), radii])


def _rings(radius: torch.Tensor, radii: torch.Tensor) -> list[torch.Tensor]:
    """The inclusive rings ``[r_k <= radius <= r_{k+1}]`` as float masks."""
    return [((radius >= radii[k]) & (radius <= radii[k + 1])).float() for k in range(len(radii) - 1)]


def authors_v1_ring_masks(
    height: int,
    width: int,
    num_bands: int,
    schedule: tuple[float, ...] | None,
    device: torch.device | None = None,
) -> torch.Tensor:
    """The hard, inclusive rings ``M_k = [r_k <= |f| <= r_{k+1}]`` on the real-FFT half spectrum.

    ``|f|`` is the radius of the signed integer frequency pair (``-H//2 .. (H-1)//2`` per axis, as after
    ``fftshift``). Neighbouring rings share their boundary radius; frequencies with ``|f| > r_K`` (the
    grid's corners) lie in no ring.

    Returns:
        ``(K, H, W // 2 + 1)`` float32 masks of zeros and ones.
    """
    fy = fft_integer_frequencies(height, device)
    fx = torch.arange(width // 2 + 1, device=device, dtype=torch.float32)
    radius = torch.sqrt(fy[:, None].square() + fx[None, :].square())
    return torch.stack(_rings(radius, authors_v1_radii(schedule, num_bands, height, width, device=device)))


def authors_v1_band_masks(
    height: int,
    width: int,
    num_bands: int,
    schedule: tuple[float, ...] | None,
    device: torch.device | None = None,
) -> torch.Tensor:
    """Effective masks ``E_k = M_k * prod_{j<k} (1 - M_j)`` of the authors' iterative ring split.

    Their split projects the running residual onto ring ``k`` (``b_k = P_k(r_k)``, ``r_{k+1} = r_k - b_k``),
    so a boundary frequency shared by two rings goes to the lower band, and the frequencies outside
    every ring stay in the final residual, which they drop. The masks therefore sum to 1 inside
    ``max_radius`` and to 0 at the corners.

    Returns:
        ``(K, H, W // 2 + 1)`` float32 masks.
    """
    rings = authors_v1_ring_masks(height, width, num_bands, schedule, device=device)
    return iterated_masks(rings, torch.ones_like(rings[0]), keep_residual=False)


def authors_v1_split_iterative(
    z: torch.Tensor, num_bands: int, schedule: tuple[float, ...] | None
) -> torch.Tensor:
    """The authors' v1 split as they run it: project the residual onto each ring in turn, drop the rest.

    Full complex FFT, ``fftshift``, ring mask, ``ifftshift``, inverse FFT, real part, in float32.

    Args:
        z: Latent grid ``(B, C, H, W)``.
        num_bands: ``K``.
        schedule: Their ``v_patch_nums`` (or ``None``).

    Returns:
        Bands ``(B, K, C, H, W)``; their sum misses the frequencies beyond ``min(H, W) // 2``.
    """
    z = z.float()
    h, w = z.shape[-2:]
    ch, cw = h // 2, w // 2
    y = torch.arange(-ch, h - ch, device=z.device, dtype=torch.float32)
    x = torch.arange(-cw, w - cw, device=z.device, dtype=torch.float32)
    radius = torch.sqrt(y[:, None].square() + x[None, :].square())  # centred (fftshift) layout
    residual, bands = z, []
    for ring in _rings(radius, authors_v1_radii(schedule, num_bands, h, w, device=z.device)):
        spec = torch.fft.fftshift(torch.fft.fft2(residual.to(torch.complex64)), dim=(-2, -1))
        band = torch.fft.ifft2(torch.fft.ifftshift(spec * ring, dim=(-2, -1))).real
        bands.append(band)
        residual = residual - band
    return torch.stack(bands, dim=1)


class AuthorsV1Bands(BandScheme):
    """The authors' v1 hard-ring split on the FFT; every band from its own effective mask, no residual band.

    Args:
        num_bands: ``K`` (>= 1).
        schedule: The release's ``v_patch_nums`` radius schedule (``K`` values); ``None`` gives evenly
            spaced radii.
        grid_size: Default latent grid side (its masks are precomputed).
    """

    scheme = "authors_v1"

    def __init__(
        self, num_bands: int, schedule: tuple[float, ...] | None = None, grid_size: int = 16
    ) -> None:
        super().__init__(num_bands, "fft", grid_size)
        check_authors_v1_schedule(schedule, num_bands, "fft")
        self.schedule = tuple(float(v) for v in schedule) if schedule is not None else None
        self._precompute_masks()

    def extra_repr(self) -> str:
        return f"num_bands={self.num_bands}, scheme='authors_v1', schedule={self.schedule}"

    def make_masks(self, height: int, width: int, device: torch.device | None = None) -> torch.Tensor:
        """The effective ring masks ``(K, H, W // 2 + 1)`` (:func:`authors_v1_band_masks`)."""
        return authors_v1_band_masks(height, width, self.num_bands, self.schedule, device=device)

    def split(self, z: torch.Tensor) -> torch.Tensor:
        """Every band ``(B, K, C, H, W)`` from its effective mask: one FFT and one batched inverse (one matrix
        product on small grids, :meth:`masked_bands`)."""
        return self.masked_bands(z)

    def _split_iterative(self, z: torch.Tensor) -> torch.Tensor:
        return authors_v1_split_iterative(z, self.num_bands, self.schedule)


__all__ = [
    "AuthorsV1Bands",
    "authors_v1_band_masks",
    "authors_v1_radii",
    "authors_v1_ring_masks",
    "authors_v1_split_iterative",
    "check_authors_v1_schedule",
]
