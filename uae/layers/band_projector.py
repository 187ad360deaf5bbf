"""FFT (or DCT) band projector: K smooth radial masks and the iterative residual split.

A latent grid ``z: (B, C, H, W)`` is split into ``K`` frequency bands ``(B, K, C, H, W)``:

    r_0 = z,   b_k = P_k(r_k),   r_{k+1} = r_k - b_k,   b_{K-1} = r_{K-1}

where ``P_k`` multiplies the spectrum by a smooth radial low-pass ``L_k`` with cut-off
``(k + 1) / K`` (in units of the Nyquist frequency along one axis). Because every ``P_k`` is
diagonal in the frequency domain, the iteration collapses to effective masks

    E_k = L_k * prod_{j<k} (1 - L_j),      E_{K-1} = prod_{j<K-1} (1 - L_j),

which sum to one everywhere, *including the grid's corner frequencies* (radius up to sqrt(2)):
the last band takes the whole residual. :meth:`BandProjector.forward` computes all bands from one
real FFT and one batched inverse; :meth:`BandProjector.split_iterative` is the literal iteration
(kept as the reference the fused path is tested against).

``scheme="authors_v1"`` runs the authors' v1 split instead (for their converted weights): hard,
inclusive rings on the integer FFT frequency radius up to ``min(H // 2, W // 2)``, radii from their
``v_patch_nums`` schedule; corner frequencies outside every ring are dropped, so those bands do not
sum back to ``z``. See :func:`authors_v1_radii` and :func:`authors_v1_band_masks`.
"""

from __future__ import annotations

import math

import torch
from torch import nn


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
    if transform == "fft":
        fy = torch.fft.fftfreq(height, device=device).abs() * 2.0
        fx = torch.fft.rfftfreq(width, device=device) * 2.0
    elif transform == "dct":
        fy = torch.arange(height, device=device, dtype=torch.float32) / height
        fx = torch.arange(width, device=device, dtype=torch.float32) / width
    else:
        raise ValueError(f"unknown band transform {transform!r}; expected 'fft' or 'dct'")
    return torch.sqrt(fy[:, None] ** 2 + fx[None, :] ** 2)


def lowpass_masks(rho: torch.Tensor, num_bands: int, softness: float) -> torch.Tensor:
    """The ``K - 1`` raised-cosine low-pass masks ``L_k`` with cut-offs ``(k + 1) / K``.

    Args:
        rho: Radial frequency grid ``(H, W')``.
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

    Returns:
        ``(K, H, W')`` masks.
    """
    lows = lowpass_masks(rho, num_bands, softness)
    remaining = torch.ones_like(rho)
    out = []
    for low in lows:
        out.append(low * remaining)
        remaining = remaining * (1.0 - low)
    out.append(remaining)
    return torch.stack(out)


def dct_matrix(
    n: int, device: torch.device | None = None, dtype: torch.dtype = torch.float32
) -> torch.Tensor:
    """Orthonormal DCT-II matrix ``D`` (``n x n``): coefficients ``X = D @ x``, inverse ``x = D.T @ X``."""
    k = torch.arange(n, device=device, dtype=torch.float64)[:, None]
    i = torch.arange(n, device=device, dtype=torch.float64)[None, :]
    d = torch.cos(math.pi * (2 * i + 1) * k / (2 * n)) * math.sqrt(2.0 / n)
    d[0] /= math.sqrt(2.0)
    return d.to(dtype)


class BandProjector(nn.Module):
    """Split a latent grid into ``K`` frequency bands that sum back to it.

    Args:
        num_bands: ``K`` (>= 1).
        transform: ``"fft"`` or ``"dct"``.
        softness: Raised-cosine transition width as a fraction of a band's width.
        grid_size: Default latent grid side; its masks are precomputed as a buffer, other sizes are
            computed on first use and cached.
        scheme: ``"smooth"`` (this module's split) or ``"authors_v1"`` (the authors' v1 hard rings,
            see :func:`authors_v1_band_masks`; needs ``transform="fft"``). Selected through
            :class:`uae.UAEConfig.band_scheme`.
        schedule: ``authors_v1`` only: the release's ``v_patch_nums`` radius schedule (``K`` values);
            ``None`` gives evenly spaced radii.
    """

    def __init__(
        self,
        num_bands: int,
        transform: str = "fft",
        softness: float = 0.5,
        grid_size: int = 16,
        scheme: str = "smooth",
        schedule: tuple[float, ...] | None = None,
    ) -> None:
        super().__init__()
        if num_bands < 1:
            raise ValueError(f"num_bands must be >= 1, got {num_bands}")
        if scheme not in ("smooth", "authors_v1"):
            raise NotImplementedError(f"band scheme {scheme!r} is not implemented yet")
        if scheme == "authors_v1":
            check_authors_v1_schedule(schedule, num_bands, transform)
        elif schedule is not None:
            raise ValueError(f"a band schedule is only used by scheme='authors_v1', not {scheme!r}")
        self.scheme = scheme
        self.schedule = tuple(float(v) for v in schedule) if schedule is not None else None
        self.num_bands = num_bands
        self.transform = transform
        self.softness = softness
        self.grid_size = grid_size
        self.register_buffer("masks", self._make_masks(grid_size, grid_size), persistent=False)
        self._cache: dict[tuple[int, int, str], torch.Tensor] = {}
        self._dct_cache: dict[tuple[int, str], torch.Tensor] = {}

    def extra_repr(self) -> str:
        if self.scheme == "authors_v1":
            return f"num_bands={self.num_bands}, scheme='authors_v1', schedule={self.schedule}"
        return f"num_bands={self.num_bands}, transform={self.transform!r}, softness={self.softness}"

    def _make_masks(self, height: int, width: int, device: torch.device | None = None) -> torch.Tensor:
        if self.scheme == "authors_v1":
            return authors_v1_band_masks(height, width, self.num_bands, self.schedule, device=device)
        rho = radial_frequency(height, width, self.transform, device=device)
        return band_masks(rho, self.num_bands, self.softness)

    def band_masks(self, height: int, width: int, device: torch.device) -> torch.Tensor:
        """Effective masks ``(K, H, W')`` for a grid, from the buffer or the cache."""
        if (height, width) == (self.grid_size, self.grid_size) and self.masks.device == device:
            return self.masks
        key = (height, width, str(device))
        if key not in self._cache:
            # Cached tensors must not be inference tensors, or a later autograd pass could not save them.
            with torch.inference_mode(False):
                self._cache[key] = self._make_masks(height, width, device=device)
        return self._cache[key]

    # ------------------------------------------------------------------ transforms
    def _dct(self, n: int, device: torch.device) -> torch.Tensor:
        """Cached float32 DCT-II matrix ``(n, n)`` on ``device`` (built once per size and device)."""
        key = (n, str(device))
        if key not in self._dct_cache:
            with torch.inference_mode(False):
                self._dct_cache[key] = dct_matrix(n, device)
        return self._dct_cache[key]

    def _forward_transform(self, z: torch.Tensor) -> torch.Tensor:
        if self.transform == "fft":
            return torch.fft.rfft2(z, norm="ortho")
        # X = D_h z D_w^T as two broadcast matmuls (about 2x faster than the equivalent einsum).
        return self._dct(z.shape[-2], z.device) @ z @ self._dct(z.shape[-1], z.device).mT

    def _inverse_transform(self, spec: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        if self.transform == "fft":
            return torch.fft.irfft2(spec, s=size, norm="ortho")
        return self._dct(size[0], spec.device).mT @ spec @ self._dct(size[1], spec.device)

    # ------------------------------------------------------------------ splits
    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """Fused band split.

        Args:
            z: Latent grid ``(B, C, H, W)``.

        Returns:
            Bands ``(B, K, C, H, W)`` in float32 with ``bands.sum(1) == z`` up to float rounding.
            The transform always runs in float32, also inside ``torch.autocast``.
        """
        if z.ndim != 4:
            raise ValueError(f"BandProjector expects a latent grid (B, C, H, W), got shape {tuple(z.shape)}")
        with torch.autocast(device_type=z.device.type, enabled=False):
            z = z.float()
            if self.scheme == "authors_v1":
                return self._split_all_masked(z)
            if self.num_bands == 1:
                return z.unsqueeze(1)
            h, w = z.shape[-2:]
            masks = self.band_masks(h, w, z.device)[:-1]  # (K-1, H, W')
            spec = self._forward_transform(z)  # (B, C, H, W')
            lower = self._inverse_transform(
                spec.unsqueeze(1) * masks[None, :, None], (h, w)
            )  # (B, K-1, C, H, W)
            last = z - lower.sum(dim=1)
            return torch.cat([lower, last.unsqueeze(1)], dim=1)

    def _split_all_masked(self, z: torch.Tensor) -> torch.Tensor:
        """Every band from its own effective mask (no residual band): the ``authors_v1`` split."""
        h, w = z.shape[-2:]
        masks = self.band_masks(h, w, z.device)  # (K, H, W')
        spec = self._forward_transform(z)
        return self._inverse_transform(spec.unsqueeze(1) * masks[None, :, None], (h, w))

    def split_iterative(self, z: torch.Tensor) -> torch.Tensor:
        """The literal iterative residual split ``b_k = P_k(r_k), r_{k+1} = r_k - b_k`` (reference).

        Args:
            z: Latent grid ``(B, C, H, W)``.

        Returns:
            Bands ``(B, K, C, H, W)``, equal to :meth:`forward` within float tolerance.
        """
        with torch.autocast(device_type=z.device.type, enabled=False):
            z = z.float()
            h, w = z.shape[-2:]
            if self.scheme == "authors_v1":
                return authors_v1_split_iterative(z, self.num_bands, self.schedule)
            rho = radial_frequency(h, w, self.transform, device=z.device)
            residual = z
            bands = []
            for low in lowpass_masks(rho, self.num_bands, self.softness):
                band = self._inverse_transform(self._forward_transform(residual) * low, (h, w))
                bands.append(band)
                residual = residual - band
            bands.append(residual)
            return torch.stack(bands, dim=1)

    def band_energy(self, z: torch.Tensor) -> torch.Tensor:
        """Share of the latent's spectral energy in each band (sums to 1).

        Args:
            z: Latent grid ``(B, C, H, W)``.

        Returns:
            ``(B, K)`` energy fractions computed from the orthonormal spectrum.
        """
        with torch.autocast(device_type=z.device.type, enabled=False):
            z = z.float()
            h, w = z.shape[-2:]
            masks = self.band_masks(h, w, z.device)
            power = self._forward_transform(z).abs().pow(2)  # (B, C, H, W')
            if self.transform == "fft" and w > 1:
                # The half spectrum stores each interior column once; weight by its multiplicity.
                weight = torch.full((power.shape[-1],), 2.0, device=z.device)
                weight[0] = 1.0
                if w % 2 == 0:
                    weight[-1] = 1.0
                power = power * weight
            # Energy of band k is sum |E_k X|^2; normalise by the total band energy.
            energy = torch.einsum("bchw,khw->bk", power, masks.pow(2))
            return energy / energy.sum(dim=1, keepdim=True).clamp_min(1e-12)


# ---------------------------------------------------------------------------------------------- authors' v1
def check_authors_v1_schedule(schedule: tuple[float, ...] | None, num_bands: int, transform: str) -> None:
    """Raise ``ValueError`` unless ``schedule`` is a valid ``authors_v1`` radius schedule for ``K`` bands.

    Valid: ``None`` (evenly spaced radii) or ``K`` finite values, non-decreasing, the last one positive.
    """
    if transform != "fft":
        raise ValueError(f"band scheme 'authors_v1' runs on the FFT, not band_transform={transform!r}")
    if schedule is None:
        return
    values = [float(v) for v in schedule]
    if len(values) != num_bands:
        raise ValueError(f"the authors_v1 schedule needs num_bands={num_bands} values, got {len(values)}")
    if not all(math.isfinite(v) and v >= 0 for v in values) or values[-1] <= 0:
        raise ValueError(f"the authors_v1 schedule must be finite, >= 0 and end above 0; got {values}")
    if any(b < a for a, b in zip(values, values[1:])):
        raise ValueError(f"the authors_v1 schedule must be non-decreasing, got {values}")


def fft_integer_frequencies(n: int, device: torch.device | None = None) -> torch.Tensor:
    """Signed integer FFT frequencies ``0, 1, .., -1`` of ``n`` samples (``fftfreq(n) * n``, exact), float32."""
    f = torch.arange(n, device=device)
    return torch.where(f >= (n + 1) // 2, f - n, f).to(torch.float32)


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
    radii = authors_v1_radii(schedule, num_bands, height, width, device=device)
    return torch.stack([((radius >= radii[k]) & (radius <= radii[k + 1])).float() for k in range(num_bands)])


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
    remaining = torch.ones_like(rings[0])
    out = []
    for ring in rings:
        out.append(ring * remaining)
        remaining = remaining * (1.0 - ring)
    return torch.stack(out)


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
    radii = authors_v1_radii(schedule, num_bands, h, w, device=z.device)
    residual, bands = z, []
    for k in range(num_bands):
        ring = ((radius >= radii[k]) & (radius <= radii[k + 1])).float()
        spec = torch.fft.fftshift(torch.fft.fft2(residual.to(torch.complex64)), dim=(-2, -1))
        band = torch.fft.ifft2(torch.fft.ifftshift(spec * ring, dim=(-2, -1))).real
        bands.append(band)
        residual = residual - band
    return torch.stack(bands, dim=1)


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
    rho = radial_frequency(h, w, transform, device=x.device)
    mask = (rho <= radius).float()
    proj = BandProjector(1, transform=transform, grid_size=1)
    xf = x.float()
    out = proj._inverse_transform(proj._forward_transform(xf) * mask, (h, w))
    return out.to(x.dtype)


__all__ = [
    "BandProjector",
    "authors_v1_band_masks",
    "authors_v1_radii",
    "authors_v1_ring_masks",
    "authors_v1_split_iterative",
    "band_masks",
    "dct_matrix",
    "lowpass_filter",
    "lowpass_masks",
    "radial_frequency",
]
