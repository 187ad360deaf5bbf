"""Output dataclasses of :class:`uae.UAE` (named fields, not tuples)."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class EncoderOutput:
    """Result of :meth:`uae.UAE.encode`.

    Attributes:
        latent: Encoder latent grid ``z`` of shape ``(B, C, h, w)`` (float32).
        bands: Its frequency bands ``(B, K, C, h, w)``; ``bands.sum(1) == latent``.
    """

    latent: torch.Tensor
    bands: torch.Tensor


@dataclass
class DecoderOutput:
    """Result of :meth:`uae.UAE.decode` and :meth:`uae.UAE.decode_bands`.

    Attributes:
        sample: Images ``(B, 3, H, W)`` in ``[0, 1]`` (clamped outside training).
    """

    sample: torch.Tensor


@dataclass
class UAEOutput:
    """Result of ``UAE.forward`` (reconstruction).

    Attributes:
        sample: Reconstruction ``(B, 3, H, W)`` in ``[0, 1]`` (clamped outside training).
        latent: Encoder latent ``(B, C, h, w)``.
        bands: Bands ``(B, K, C, h, w)``.
        fused: Modulator output ``q`` fed to the decoder ``(B, C, h, w)``.
    """

    sample: torch.Tensor
    latent: torch.Tensor
    bands: torch.Tensor
    fused: torch.Tensor
