"""What every band scheme does: split a latent grid ``(B, C, H, W)`` into ``K`` frequency bands.

A scheme is chosen once, when the model is built (:func:`uae.layers.bands.build_band_scheme`), and
the model calls it without asking which one it is. Each scheme gives:

* ``scheme(z)`` -> bands ``(B, K, C, H, W)`` in float32 (also inside ``torch.autocast``);
* :meth:`BandScheme.split_iterative` -> the same bands from the literal iteration (a reference);
* :meth:`BandScheme.band_masks` -> the effective spectral masks ``(K, H, W')``;
* :meth:`BandScheme.band_energy` -> each band's share of the latent's spectral energy ``(B, K)``.
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import nn

from uae.errors import InputError
from uae.layers.spectral import SpectralTransform


def iterated_masks(passes: torch.Tensor, remaining: torch.Tensor, keep_residual: bool) -> torch.Tensor:
    """Effective masks of projections applied in turn to the running residual (``b_k = P_k(r_k)``).

    ``E_k = P_k * prod_{j<k} (1 - P_j)``: a frequency passed by an earlier projection is gone from the
    residual a later one sees.

    Args:
        passes: ``(N, H, W')`` pass masks ``P_k`` in the order they are applied.
        remaining: ``(H, W')`` ones (what the first projection sees).
        keep_residual: Append the final residual ``prod_j (1 - P_j)`` as one more band.

    Returns:
        ``(N + keep_residual, H, W')`` masks.
    """
    out = []
    for p in passes:
        out.append(p * remaining)
        remaining = remaining * (1.0 - p)
    if keep_residual:
        out.append(remaining)
    return torch.stack(out)


class BandScheme(nn.Module):
    """Base of the band schemes; a subclass implements :meth:`make_masks` and :meth:`split`.

    The masks of the default ``grid_size x grid_size`` grid are a (non-persistent) buffer ``masks``;
    other grid sizes are built on first use and cached per device. A scheme has no weights.

    Args:
        num_bands: ``K`` (>= 1).
        transform: ``"fft"`` or ``"dct"``: the spectral transform the scheme runs on.
        grid_size: Default latent grid side.
    """

    #: The scheme's name in ``UAEConfig.band_scheme``.
    scheme: ClassVar[str] = ""

    #: Grids of at most this many cells are split by one matrix product with the split's operator
    #: (:meth:`band_operator`) instead of a transform and its inverse: ``uae_demo``'s 8x8 grid of 32 x 128
    #: channels 0.3 vs 2.3 ms on 2 CPU cores. The product costs ``(H W)^2`` per channel against the
    #: transform's ``H W log(H W)``, so larger grids (16x16 in every release) stay on the transform.
    MATRIX_MAX_CELLS: ClassVar[int] = 64

    def __init__(self, num_bands: int, transform: str, grid_size: int) -> None:
        super().__init__()
        if num_bands < 1:
            raise InputError(f"num_bands must be >= 1, got {num_bands}", param="num_bands")
        self.num_bands = num_bands
        self.transform = transform
        self.grid_size = grid_size
        self.spectral = SpectralTransform(transform)
        self._cache: dict[tuple[int, int, str], torch.Tensor] = {}
        self._operators: dict[tuple[int, int, str, int | None], torch.Tensor] = {}

    def _precompute_masks(self) -> None:
        """Register the default grid's masks as the ``masks`` buffer (call at the end of ``__init__``)."""
        self.register_buffer("masks", self.make_masks(self.grid_size, self.grid_size), persistent=False)

    # ------------------------------------------------------------------ what a scheme implements
    def make_masks(self, height: int, width: int, device: torch.device | None = None) -> torch.Tensor:
        """Effective masks ``(K, H, W')`` of an ``H x W`` grid (``W' = W // 2 + 1`` on the FFT)."""
        raise NotImplementedError

    def split(self, z: torch.Tensor) -> torch.Tensor:
        """The fused split of a float32 latent ``(B, C, H, W)`` -> ``(B, K, C, H, W)`` (autocast is off)."""
        raise NotImplementedError

    def _split_iterative(self, z: torch.Tensor) -> torch.Tensor:
        """The literal iteration, where it differs from :meth:`split` (same arguments)."""
        return self.split(z)

    def initial_mixing(self) -> torch.Tensor | None:
        """The ``K x K`` band-mixing matrix the modulator must start from for this scheme (``None``: identity)."""
        return None

    # ------------------------------------------------------------------ the interface the model uses
    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """Split a latent grid into bands.

        Args:
            z: Latent grid ``(B, C, H, W)``.

        Returns:
            Bands ``(B, K, C, H, W)`` in float32. The transform always runs in float32, also inside
            ``torch.autocast``.
        """
        self._check_latent(z)
        with torch.autocast(device_type=z.device.type, enabled=False):
            return self.split(z.float())

    def split_iterative(self, z: torch.Tensor) -> torch.Tensor:
        """The bands from the literal iterative split ``b_k = P_k(r_k), r_{k+1} = r_k - b_k`` (reference).

        Args:
            z: Latent grid ``(B, C, H, W)``.

        Returns:
            Bands ``(B, K, C, H, W)``, equal to ``self(z)`` within float tolerance.
        """
        self._check_latent(z)
        with torch.autocast(device_type=z.device.type, enabled=False):
            return self._split_iterative(z.float())

    def apply_masks(self, z: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        """``z (B, C, H, W)`` filtered by each of ``masks (N, H, W')`` -> ``(B, N, C, H, W)``: one forward
        transform, one batched inverse."""
        if z.numel() == 0:  # an empty batch (MKL's FFT rejects it)
            return z.new_zeros((z.shape[0], masks.shape[0], *z.shape[1:]))
        spec = self.spectral.forward(z)  # (B, C, H, W')
        return self.spectral.inverse(spec.unsqueeze(1) * masks[None, :, None], tuple(z.shape[-2:]))

    def masked_bands(self, z: torch.Tensor, count: int | None = None) -> torch.Tensor:
        """``z (B, C, H, W)`` filtered by the grid's first ``count`` effective masks (``None``: all) ->
        ``(B, count, C, H, W)``, what :meth:`apply_masks` gives with :meth:`band_masks`.

        A grid of at most :attr:`MATRIX_MAX_CELLS` cells is filtered by one matrix product with the
        split's operator (:meth:`band_operator`), a larger one by the transform and its batched inverse.
        """
        h, w = z.shape[-2:]
        if h * w > self.MATRIX_MAX_CELLS:
            masks = self.band_masks(h, w, z.device)
            return self.apply_masks(z, masks if count is None else masks[:count])
        op = self.band_operator(h, w, z.device, count)  # (H*W, N*H*W)
        b, c = z.shape[:2]
        out = z.reshape(b * c, h * w) @ op
        return out.view(b, c, op.shape[1] // (h * w), h, w).transpose(1, 2).contiguous()

    def band_operator(
        self, height: int, width: int, device: torch.device, count: int | None = None
    ) -> torch.Tensor:
        """The linear map of the first ``count`` effective masks (``None``: all) on an ``H x W`` grid.

        Filtering is linear, so the bands of a grid are ``z.reshape(-1, H * W) @ op`` with ``op``
        ``(H * W, N * H * W)``: row ``i`` holds the ``N`` bands of the unit impulse at cell ``i``. It is
        built once per grid, device and ``count``, from the transform of every impulse in float64 on
        the CPU, and cached in float32 (its entries exact to float32 rounding).
        """
        key = (height, width, str(device), count)
        if key not in self._operators:
            masks = self.make_masks(height, width).double()
            masks = masks if count is None else masks[:count]
            cells = height * width
            with torch.inference_mode(False), torch.autocast("cpu", enabled=False):
                impulses = torch.eye(cells, dtype=torch.float64).view(cells, 1, height, width)
                op = self.apply_masks(impulses, masks)  # (cells, N, 1, H, W)
                self._operators[key] = op.reshape(cells, -1).to(device=device, dtype=torch.float32)
        return self._operators[key]

    def band_masks(self, height: int, width: int, device: torch.device) -> torch.Tensor:
        """Effective masks ``(K, H, W')`` for a grid, from the buffer or the cache."""
        if (height, width) == (self.grid_size, self.grid_size) and self.masks.device == device:
            return self.masks
        key = (height, width, str(device))
        if key not in self._cache:
            # Cached tensors must not be inference tensors, or a later autograd pass could not save them.
            with torch.inference_mode(False):
                self._cache[key] = self.make_masks(height, width, device=device)
        return self._cache[key]

    def band_energy(self, z: torch.Tensor) -> torch.Tensor:
        """Share of the latent's spectral energy in each band (sums to 1).

        Args:
            z: Latent grid ``(B, C, H, W)``.

        Returns:
            ``(B, K)`` energy fractions ``sum |E_k X|^2 / sum_k sum |E_k X|^2`` from the orthonormal
            spectrum ``X`` and the effective masks ``E_k``.
        """
        with torch.autocast(device_type=z.device.type, enabled=False):
            z = z.float()
            h, w = z.shape[-2:]
            masks = self.band_masks(h, w, z.device)
            power = self.spectral.power(z)  # (B, C, H, W')
            energy = torch.einsum("bchw,khw->bk", power, masks.pow(2))
            return energy / energy.sum(dim=1, keepdim=True).clamp_min(1e-12)

    def _check_latent(self, z: torch.Tensor) -> None:
        if z.ndim != 4:
            raise InputError(
                f"the band split expects a latent grid z of shape (B, C, H, W), got shape {tuple(z.shape)}",
                param="z",
            )

    # ------------------------------------------------------------------ the transform, by its old names
    def _dct(self, n: int, device: torch.device) -> torch.Tensor:
        return self.spectral.dct(n, device)

    @property
    def _dct_cache(self) -> dict[tuple[int, str], torch.Tensor]:
        return self.spectral.dct_cache

    def _forward_transform(self, z: torch.Tensor) -> torch.Tensor:
        return self.spectral.forward(z)

    def _inverse_transform(self, spec: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        return self.spectral.inverse(spec, size)
