"""DiffAugment (Zhao et al., 2020, "Differentiable Augmentation for Data-Efficient GAN Training"): the same
random colour / translation / cutout family applied to the real and the fake images the discriminator sees,
differentiable so that the generator's gradient flows through it. Used by stage 3.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from uae.errors import InputError


def diff_augment(
    x: torch.Tensor, policy: str = "color,translation,cutout", generator: torch.Generator | None = None
) -> torch.Tensor:
    """Differentiable augmentation (Zhao et al., 2020) applied identically-distributed to real and fake.

    Args:
        x: ``(B, C, H, W)`` images (any scale; colour ops assume roughly ``[0, 1]``).
        policy: Comma-separated subset of ``color``, ``translation``, ``cutout``.
        generator: Optional RNG.

    Returns:
        Augmented images, same shape; gradients flow to ``x``.
    """
    if not policy:
        return x
    b, _, h, w = x.shape
    dev = x.device

    def rand(*shape: int) -> torch.Tensor:
        return torch.rand(*shape, device=dev, generator=generator, dtype=x.dtype)

    for op in (p.strip() for p in policy.split(",") if p.strip()):
        if op == "color":
            x = x + (rand(b, 1, 1, 1) - 0.5)  # brightness
            mean = x.mean(dim=1, keepdim=True)
            x = (x - mean) * (rand(b, 1, 1, 1) * 2) + mean  # saturation
            mean = x.mean(dim=(1, 2, 3), keepdim=True)
            x = (x - mean) * (rand(b, 1, 1, 1) + 0.5) + mean  # contrast
        elif op == "translation":
            sh, sw = int(h * 0.125 + 0.5), int(w * 0.125 + 0.5)
            tx = (rand(b) * (2 * sh + 1)).long() - sh
            ty = (rand(b) * (2 * sw + 1)).long() - sw
            gy, gx = torch.meshgrid(torch.arange(h, device=dev), torch.arange(w, device=dev), indexing="ij")
            iy = (gy.unsqueeze(0) + tx.view(b, 1, 1) + 1).clamp(0, h + 1)
            ix = (gx.unsqueeze(0) + ty.view(b, 1, 1) + 1).clamp(0, w + 1)
            padded = F.pad(x, [1, 1, 1, 1])  # zero border
            flat = padded.flatten(2)  # (B, C, (H+2)*(W+2))
            idx = (iy * (w + 2) + ix).flatten(1).unsqueeze(1).expand(-1, x.shape[1], -1)
            x = flat.gather(2, idx).view_as(x)
        elif op == "cutout":
            ch, cw = int(h * 0.5 + 0.5), int(w * 0.5 + 0.5)
            oy = (rand(b) * (h + (1 - ch % 2))).long()
            ox = (rand(b) * (w + (1 - cw % 2))).long()
            gy = torch.arange(h, device=dev).view(1, h, 1)
            gx = torch.arange(w, device=dev).view(1, 1, w)
            y0 = (oy - ch // 2).view(b, 1, 1)
            x0 = (ox - cw // 2).view(b, 1, 1)
            inside = (gy >= y0) & (gy < y0 + ch) & (gx >= x0) & (gx < x0 + cw)
            x = x * (~inside).unsqueeze(1).to(x.dtype)
        else:
            raise InputError(
                f"unknown DiffAugment op {op!r} in diff_aug; use color, translation, cutout", param="diff_aug"
            )
    return x


__all__ = ["diff_augment"]
