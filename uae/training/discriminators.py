"""Discriminators of stage 3: RAE's frozen-DINO discriminator with trainable heads, and a small PatchGAN.

Both take ``(B, 3, H, W)`` images in ``[0, 1]`` and return logits; :func:`build_discriminator` picks one.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import timm
import torch
import torch.nn.functional as F
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from timm.models.vision_transformer import checkpoint_filter_fn
from torch import nn

from uae.errors import UAELoadError
from uae.models.dinov2 import read_dinov2_weights

logger = logging.getLogger(__name__)


class PatchDiscriminator(nn.Module):
    """A small PatchGAN discriminator (used when no DINO weights are given).

    Strided 4x4 convs with GroupNorm and LeakyReLU; outputs a logit map.

    Args:
        in_channels: Image channels.
        base_channels: Width of the first conv.
        num_layers: Strided conv layers after the first one.
    """

    def __init__(self, in_channels: int = 3, base_channels: int = 64, num_layers: int = 3) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(in_channels, base_channels, 4, 2, 1), nn.LeakyReLU(0.2, True)]
        ch = base_channels
        for i in range(1, num_layers + 1):
            out = base_channels * min(2**i, 8)
            stride = 2 if i < num_layers else 1
            layers += [
                nn.Conv2d(ch, out, 4, stride, 1),
                nn.GroupNorm(min(32, out // 4) or 1, out),
                nn.LeakyReLU(0.2, True),
            ]
            ch = out
        layers.append(nn.Conv2d(ch, 1, 3, 1, 1))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, 3, H, W)`` images in ``[0, 1]`` -> logits ``(B, 1, h', w')``."""
        return self.net(x * 2.0 - 1.0)


class DinoDiscriminator(nn.Module):
    """RAE-style discriminator: a frozen DINO ViT (timm) and trainable per-layer heads on its tokens.

    Args:
        weights: File with the ViT weights (timm or original DINO key names), or a timm Hub id
            (``"timm/vit_small_patch8_224.dino"``) read from the Hub cache; required.
        arch: timm architecture name (RAE: DINO-S/8, ``"vit_small_patch8_224"``).
        layers: Block indices whose token features feed a head (default: 4 evenly spaced).
        img_size: Input side the images are resized to.
        arch_kwargs: Extra timm ``create_model`` arguments (e.g. for tiny test models).

    Raises:
        MissingFileError: ``weights`` not available (the message names what to supply).
        UAELoadError: The weights do not fit ``arch``.
    """

    def __init__(
        self,
        weights: str,
        arch: str = "vit_small_patch8_224",
        layers: Sequence[int] | None = None,
        img_size: int = 224,
        arch_kwargs: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        # A local file, or a timm Hub id read from the Hub cache (the reader of the encoder's DINOv2 weights).
        state = read_dinov2_weights(str(weights))
        kwargs = dict(arch_kwargs or {})
        kwargs.setdefault("img_size", img_size)
        self.backbone = timm.create_model(
            arch, pretrained=False, num_classes=0, dynamic_img_size=True, **kwargs
        )
        state = checkpoint_filter_fn(state, self.backbone)
        state = {k: v for k, v in state.items() if not k.startswith("head")}
        missing, unexpected = self.backbone.load_state_dict(state, strict=False)
        if missing or unexpected:
            raise UAELoadError(
                f"DINO discriminator weights {weights} do not match {arch}: missing {missing}, "
                f"unexpected {unexpected}",
                param="disc_weights",
            )
        self.backbone.requires_grad_(False)
        self.backbone.eval()
        depth = len(self.backbone.blocks)
        self.layers = (
            list(layers) if layers is not None else sorted({round(i * (depth - 1) / 3) for i in range(4)})
        )
        dim = self.backbone.embed_dim
        self.img_size = img_size
        self.heads = nn.ModuleList(
            nn.Sequential(nn.Conv1d(dim, dim, 1), nn.LeakyReLU(0.2, True), nn.Conv1d(dim, 1, 1))
            for _ in self.layers
        )
        self.register_buffer("mean", torch.tensor(IMAGENET_DEFAULT_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_DEFAULT_STD).view(1, 3, 1, 1), persistent=False)

    def train(self, mode: bool = True) -> DinoDiscriminator:  # the backbone stays in eval mode
        super().train(mode)
        self.backbone.eval()
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, 3, H, W)`` images in ``[0, 1]`` -> logits ``(B, n_layers * tokens)``."""
        if x.shape[-1] != self.img_size or x.shape[-2] != self.img_size:
            x = F.interpolate(
                x, size=(self.img_size, self.img_size), mode="bilinear", align_corners=False, antialias=True
            )
        x = (x - self.mean) / self.std
        feats = self.backbone.forward_intermediates(
            x, indices=self.layers, output_fmt="NLC", intermediates_only=True
        )
        logits = [head(f.transpose(1, 2)).flatten(1) for head, f in zip(self.heads, feats)]
        return torch.cat(logits, dim=1)


def build_discriminator(
    weights: str | None = None,
    arch: str = "vit_small_patch8_224",
    img_size: int = 224,
    arch_kwargs: dict[str, Any] | None = None,
    patch_channels: int = 64,
    patch_layers: int = 3,
) -> nn.Module:
    """A :class:`DinoDiscriminator` when ``weights`` is given, else a :class:`PatchDiscriminator`."""
    if weights:
        return DinoDiscriminator(weights, arch=arch, img_size=img_size, arch_kwargs=arch_kwargs)
    logger.info("No DINO discriminator weights given: using a PatchGAN discriminator")
    return PatchDiscriminator(base_channels=patch_channels, num_layers=patch_layers)


__all__ = ["DinoDiscriminator", "PatchDiscriminator", "build_discriminator"]
