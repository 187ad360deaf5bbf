"""ViT pixel decoder (MAE / RAE style): latent grid -> ImageNet-normalised RGB."""

from __future__ import annotations

from functools import partial

import torch
from einops import rearrange
from torch import nn

from uae.layers.vit import Block, sincos_2d_pos_embed, trunc_normal_


class PixelDecoder(nn.Module):
    """Linear in, transformer blocks with fixed 2-D sin-cos positions and a trainable CLS token,
    linear to patch pixels, unpatchify.

    Args:
        latent_dim: Latent channels ``C``.
        dim: Decoder width.
        depth: Blocks.
        num_heads: Attention heads.
        mlp_ratio: MLP ratio.
        patch_size: Output pixels per latent cell on each side.
        out_chans: Output channels (3).
        grid_size: Default grid side (its position table is precomputed).
        norm_eps: eps of every LayerNorm; ``None`` keeps timm's block default (1e-5) and 1e-6 for the
            final norm (RAE's transformers decoders use 1e-12 everywhere).
    """

    def __init__(
        self,
        latent_dim: int,
        dim: int = 1152,
        depth: int = 28,
        num_heads: int = 16,
        mlp_ratio: float = 4096 / 1152,
        patch_size: int = 16,
        out_chans: int = 3,
        grid_size: int = 16,
        norm_eps: float | None = None,
    ) -> None:
        super().__init__()
        self.dim = dim
        self.patch_size = patch_size
        self.out_chans = out_chans
        self.grid_size = grid_size
        block_norm = nn.LayerNorm if norm_eps is None else partial(nn.LayerNorm, eps=norm_eps)
        self.embed = nn.Linear(latent_dim, dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.blocks = nn.ModuleList(
            [
                Block(dim, num_heads, mlp_ratio=mlp_ratio, qkv_bias=True, norm_layer=block_norm)
                for _ in range(depth)
            ]
        )
        self.norm = nn.LayerNorm(dim, eps=1e-6 if norm_eps is None else norm_eps)
        self.pred = nn.Linear(dim, patch_size * patch_size * out_chans)
        self.register_buffer("pos_embed", self._sincos(grid_size, grid_size), persistent=False)
        self.apply(self._init_weights)
        trunc_normal_(self.cls_token, std=0.02)

    @staticmethod
    def _init_weights(m: nn.Module) -> None:
        if isinstance(m, nn.Linear):
            trunc_normal_(m.weight, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)

    def _sincos(self, h: int, w: int, device: torch.device | None = None) -> torch.Tensor:
        return sincos_2d_pos_embed((h, w), self.dim, device=device).unsqueeze(0)  # (1, h*w, dim)

    def position_embedding(self, h: int, w: int, device: torch.device) -> torch.Tensor:
        """Fixed sin-cos positions ``(1, h*w, dim)``."""
        if (h, w) == (self.grid_size, self.grid_size):
            return self.pos_embed.to(device)
        return self._sincos(h, w, device)

    def forward(self, q: torch.Tensor) -> torch.Tensor:
        """Decode a fused latent.

        Args:
            q: ``(B, C, h, w)``.

        Returns:
            ``(B, 3, h * patch_size, w * patch_size)`` ImageNet-normalised pixels.
        """
        b, _, h, w = q.shape
        x = self.embed(rearrange(q, "b c h w -> b (h w) c"))
        x = x + self.position_embedding(h, w, q.device).to(x.dtype)
        x = torch.cat([self.cls_token.expand(b, -1, -1).to(x.dtype), x], dim=1)
        for blk in self.blocks:
            x = blk(x)
        x = self.pred(self.norm(x[:, 1:]))
        p = self.patch_size
        return rearrange(x, "b (h w) (p1 p2 c) -> b c (h p1) (w p2)", h=h, w=w, p1=p, p2=p)
