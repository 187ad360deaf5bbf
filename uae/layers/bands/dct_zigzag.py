"""The authors' v2 band split (``band_scheme="dct_zigzag"``): a keep-``N`` zigzag low-pass of the DCT.

Orthonormal DCT-II of the latent grid, keep the first ``N`` coefficients of the zigzag scan
(:func:`uae.layers.spectral.zigzag_order`), inverse DCT. ``K = 2`` bands: band 0 is the kept low-pass
latent (what the v2 decoder sees), band 1 the rest, so the bands sum to the latent as for every scheme.
"""

from __future__ import annotations

import torch

from uae.errors import InputError
from uae.layers.bands.base import BandScheme
from uae.layers.spectral import zigzag_rank


def zigzag_keep_mask(height: int, width: int, keep: int | torch.Tensor) -> torch.Tensor:
    """Hard low-pass mask keeping the first ``keep`` coefficients of the zigzag scan.

    Args:
        height: Grid height ``H``.
        width: Grid width ``W``.
        keep: Number of kept coefficients ``N`` (clipped to ``0..H*W``), or a ``(B,)`` tensor of them.

    Returns:
        ``(H, W)`` float mask for an int ``keep``, ``(B, 1, H, W)`` for a tensor; exactly ``N`` ones each.
    """
    if isinstance(keep, torch.Tensor):
        rank = zigzag_rank(height, width, keep.device)
        return (rank[None, None] < keep.view(-1, 1, 1, 1)).float()
    return (zigzag_rank(height, width) < int(keep)).float()


class ZigzagLowpass(BandScheme):
    """The authors' v2 band split: orthonormal DCT-II, keep the first ``N`` zigzag coefficients, inverse DCT.

    ``N`` at evaluation is ``keep_count`` (``None``: the mask is off and band 0 is the whole latent).
    In training mode the mask is applied with probability ``apply_prob`` (one draw per batch, as the
    authors do) and, when ``count_min``/``count_max`` are given, each sample draws its own ``N``
    uniformly from ``count_min..count_max`` (inclusive); without a range training uses ``keep_count``.
    ``N`` is clipped to the grid's ``H*W`` coefficients. The masks (:meth:`band_masks`, used by
    :meth:`band_energy`) are the evaluation-time split into kept and dropped coefficients.

    Args:
        keep_count: Evaluation-time ``N`` (``None`` = off).
        count_min: Smallest training-time ``N`` (with ``count_max``), or ``None``.
        count_max: Largest training-time ``N`` (with ``count_min``), or ``None``.
        apply_prob: Probability that a training batch is low-passed at all.
        grid_size: Default latent grid side (its masks are precomputed).
    """

    scheme = "dct_zigzag"

    def __init__(
        self,
        keep_count: int | None = None,
        count_min: int | None = None,
        count_max: int | None = None,
        apply_prob: float = 1.0,
        grid_size: int = 16,
    ) -> None:
        super().__init__(2, "dct", grid_size)
        if (count_min is None) != (count_max is None):
            raise InputError("count_min and count_max must be given together", param="count_min")
        if count_min is not None and not 0 <= count_min <= count_max:
            raise InputError(
                f"need 0 <= count_min <= count_max, got {count_min}, {count_max}", param="count_min"
            )
        if keep_count is not None and keep_count < 0:
            raise InputError(f"keep_count must be >= 0, got {keep_count}", param="keep_count")
        if not 0.0 <= apply_prob <= 1.0:
            raise InputError(f"apply_prob must be in [0, 1], got {apply_prob}", param="apply_prob")
        self.keep_count = keep_count
        self.count_min = count_min
        self.count_max = count_max
        self.apply_prob = float(apply_prob)
        self._precompute_masks()

    def extra_repr(self) -> str:
        return (
            f"keep_count={self.keep_count}, count_min={self.count_min}, count_max={self.count_max}, "
            f"apply_prob={self.apply_prob}"
        )

    def make_masks(self, height: int, width: int, device: torch.device | None = None) -> torch.Tensor:
        """The evaluation-time split ``(2, H, W)``: kept and dropped coefficients."""
        keep = height * width if self.keep_count is None else self.keep_count
        low = zigzag_keep_mask(height, width, keep).to(device)
        return torch.stack([low, 1.0 - low])

    def initial_mixing(self) -> torch.Tensor:
        """``diag(1, 0)``: the decoder sees the kept coefficients only (band 0), as in v2."""
        return torch.diag(torch.tensor([1.0, 0.0]))

    def keep_counts(self, batch: int, height: int, width: int, device: torch.device) -> torch.Tensor:
        """``N`` for each sample of a batch, ``(B,)`` long; ``H*W`` means nothing is dropped.

        Deterministic outside training mode; in training mode drawn from the global torch RNG.
        """
        total = height * width
        full = torch.full((batch,), total, dtype=torch.long, device=device)
        if not self.training:
            return full if self.keep_count is None else full.clamp(max=self.keep_count)
        if self.apply_prob < 1.0 and float(torch.rand(())) >= self.apply_prob:
            return full
        if self.count_min is not None:
            low, high = min(self.count_min, total), min(self.count_max, total)
            return torch.randint(low, high + 1, (batch,), device=device)
        return full if self.keep_count is None else full.clamp(max=self.keep_count)

    def split(self, z: torch.Tensor) -> torch.Tensor:
        """``(B, C, H, W)`` -> ``(B, 2, C, H, W)``: the kept low-pass latent and the rest."""
        b, _, h, w = z.shape
        keep = self.keep_counts(b, h, w, z.device)
        if bool((keep >= h * w).all()):
            low = z
        else:
            mask = zigzag_keep_mask(h, w, keep)  # (B, 1, H, W)
            low = self.spectral.inverse(self.spectral.forward(z) * mask, (h, w))
        return torch.stack([low, z - low], dim=1)


__all__ = ["ZigzagLowpass", "zigzag_keep_mask"]
