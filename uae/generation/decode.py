"""Decoding generated latents to images (the originals' ``decode`` of a sampled latent).

A generator samples in the tokenizer's *normalised* latent space. Both originals decode a sample as
``decoder(denormalize(z))``: RAE's ``RAE.decode`` and the authors' ``UAE.decode`` (through
``Stage2LatentAdapter.from_model_space``, the identity for their spatial 16x16 latents) undo the
latent statistics (``z * sqrt(var + eps) + mean``) and run the pixel decoder, with no frequency
low-pass; ``sample_ddp.py`` then clamps to ``[0, 1]``. :func:`decode_latents` does the same with a uae
tokenizer through :meth:`uae.UAE.decode_latent` with ``normalized=True`` (its ``latent_std`` holds
``sqrt(var + eps)``). ``UAE.decode`` is not used: it re-applies the band split, which changes a latent that
did not come from ``encode`` (by 0.41 on [0, 1] pixels for a sampled 64-token latent).
"""

from __future__ import annotations

import torch

from uae.models.uae import UAE


@torch.no_grad()
def decode_latents(tokenizer: UAE, latents: torch.Tensor, *, clamp: bool = True) -> torch.Tensor:
    """Images from generated (normalised) latents: ``tokenizer.decode_latent(z, normalized=True)``.

    Args:
        tokenizer: The tokenizer the generator was trained on, with its latent statistics.
        latents: ``(B, C, h, w)`` sampled latents.
        clamp: Clamp to ``[0, 1]`` (as the originals' sampling scripts do before saving).

    Returns:
        ``(B, 3, H, W)`` images in ``[0, 1]`` scale (float32).
    """
    return tokenizer.decode_latent(latents, normalized=True, clamp=clamp).sample


__all__ = ["decode_latents"]
