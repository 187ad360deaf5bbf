"""Low-pass / high-pass filtered evaluation (Wang et al., "High-frequency Component Helps Explain the
Generalization of CNNs"): probe accuracy and reconstruction metrics on LFC-only and HFC-only images.

An image ``x`` is split at radius ``r`` (in units of the Nyquist frequency, ideal radial mask on the
2-D FFT, :func:`uae.layers.band_projector.lowpass_filter`) into ``LFC = lowpass(x, r)`` and
``HFC = x - LFC``, so ``LFC + HFC == x`` exactly (to float error). The high-pass image has zero mean
and negative values; before it is fed to a model it is shown on a mid-gray background
(``HFC + 0.5``, clamped to ``[0, 1]``), the usual way to view and test on HFC images.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import torch

from uae.layers.band_projector import lowpass_filter

#: Gray level added to high-pass images before they are fed to a model.
HFC_OFFSET = 0.5


def split_frequencies(x: torch.Tensor, radius: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Low- and high-frequency components of images.

    Args:
        x: ``(..., H, W)`` images (any range).
        radius: Cut-off in units of the Nyquist frequency (``0..sqrt(2)``; ``>= sqrt(2)`` keeps everything).

    Returns:
        ``(lfc, hfc)`` with ``lfc + hfc == x``; both float tensors of ``x``'s shape.
    """
    if radius < 0:
        raise ValueError(f"radius must be >= 0, got {radius}")
    lfc = lowpass_filter(x.float(), radius)
    return lfc, x.float() - lfc


def lfc_image(x: torch.Tensor, radius: float) -> torch.Tensor:
    """Low-pass image, clamped to ``[0, 1]``."""
    return split_frequencies(x, radius)[0].clamp(0.0, 1.0)


def hfc_image(x: torch.Tensor, radius: float, offset: float = HFC_OFFSET) -> torch.Tensor:
    """High-pass image on a gray background (``HFC + offset``), clamped to ``[0, 1]``."""
    return (split_frequencies(x, radius)[1] + offset).clamp(0.0, 1.0)


def make_filter(kind: str, radius: float) -> Callable[[torch.Tensor], torch.Tensor] | None:
    """``"original"`` -> ``None``; ``"lfc"`` / ``"hfc"`` -> the image filter at ``radius``."""
    if kind == "original":
        return None
    if kind == "lfc":
        return partial(lfc_image, radius=radius)
    if kind == "hfc":
        return partial(hfc_image, radius=radius)
    raise ValueError(f"filter kind must be 'original', 'lfc' or 'hfc', got {kind!r}")
