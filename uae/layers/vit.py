"""Vision Transformer parts with timm's parameter names and timm's arithmetic, without importing timm.

``import timm`` costs about 2 s on a CPU because timm imports torchvision, whose ``ops`` import
``torch._dynamo``; uae's encoder and decoder need only a plain ViT. These modules compute exactly what
timm 1.x's ``VisionTransformer`` / ``Block`` / ``Attention`` / ``Mlp`` / ``LayerScale`` / ``PatchEmbed``
compute for the options uae uses (the same operations in the same order, so outputs are bit-identical;
``tests/test_vit_layers.py`` checks outputs, parameter names and seeded initialisation against timm),
and their state dicts use timm's key names, so weights in timm's layout load unchanged (timm's
``checkpoint_filter_fn`` works on :class:`VisionTransformer`).

Not covered (uae never uses them): dropout and stochastic depth, q/k norm, attention pooling, heads,
gradient checkpointing.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from uae.errors import InputError

#: Builds a norm layer from its width (e.g. ``partial(nn.LayerNorm, eps=1e-6)``).
NormLayer = Callable[[int], nn.Module]


class QuickGELU(nn.Module):
    """CLIP's ``x * sigmoid(1.702 x)``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Elementwise, any shape."""
        return x * torch.sigmoid(1.702 * x)


class GELUTanh(nn.Module):
    """GELU with the tanh approximation (SigLIP)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Elementwise, any shape."""
        return F.gelu(x, approximate="tanh")


#: Activation names accepted by :class:`VisionTransformer` (``None``: exact GELU).
ACTIVATIONS: dict[str | None, Callable[[], nn.Module]] = {
    None: nn.GELU,
    "gelu": nn.GELU,
    "quick_gelu": QuickGELU,
    "gelu_tanh": GELUTanh,
}


class LayerScale(nn.Module):
    """Per-channel scale ``x * gamma`` (``gamma`` initialised to ``init_values``)."""

    def __init__(self, dim: int, init_values: float = 1e-5) -> None:
        super().__init__()
        self.gamma = nn.Parameter(torch.full((dim,), float(init_values)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(..., dim)`` -> same shape."""
        return x * self.gamma


class Attention(nn.Module):
    """Multi-head self-attention with a fused ``qkv`` projection.

    Attributes:
        fused_attn: ``F.scaled_dot_product_attention`` when true (default), else the explicit softmax
            path (same result within float rounding; the benchmark's SDPA ablation switches it).
    """

    def __init__(self, dim: int, num_heads: int, qkv_bias: bool = True) -> None:
        super().__init__()
        if dim % num_heads:
            raise InputError(f"dim {dim} is not divisible by num_heads {num_heads}", param="num_heads")
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.scale = self.head_dim**-0.5
        self.fused_attn = True
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, N, dim)`` tokens -> ``(B, N, dim)``."""
        b, n, c = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        if self.fused_attn:
            x = F.scaled_dot_product_attention(q, k, v)
        else:
            attn = (q * self.scale) @ k.transpose(-2, -1)
            x = attn.softmax(dim=-1) @ v
        return self.proj(x.transpose(1, 2).reshape(b, n, c))


class Mlp(nn.Module):
    """``fc2(act(fc1(x)))``."""

    def __init__(self, dim: int, hidden: int, act_layer: Callable[[], nn.Module] = nn.GELU) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = act_layer()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(..., dim)`` -> same shape."""
        return self.fc2(self.act(self.fc1(x)))


class Block(nn.Module):
    """Pre-norm transformer block: ``x + ls1(attn(norm1(x)))``, then ``x + ls2(mlp(norm2(x)))``.

    Args:
        dim: Token width.
        num_heads: Attention heads.
        mlp_ratio: MLP hidden width over ``dim`` (hidden = ``int(dim * mlp_ratio)``).
        qkv_bias: Bias of the ``qkv`` projection.
        init_values: LayerScale init; ``None`` or 0: no LayerScale.
        act_layer: MLP activation.
        norm_layer: Norm constructor (default ``nn.LayerNorm``, eps 1e-5).
    """

    def __init__(
        self,
        dim: int,
        num_heads: int,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        init_values: float | None = None,
        act_layer: Callable[[], nn.Module] = nn.GELU,
        norm_layer: NormLayer = nn.LayerNorm,
    ) -> None:
        super().__init__()
        self.norm1 = norm_layer(dim)
        self.attn = Attention(dim, num_heads, qkv_bias=qkv_bias)
        self.ls1 = LayerScale(dim, init_values) if init_values else nn.Identity()
        self.norm2 = norm_layer(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), act_layer)
        self.ls2 = LayerScale(dim, init_values) if init_values else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, N, dim)`` -> ``(B, N, dim)``."""
        x = x + self.ls1(self.attn(self.norm1(x)))
        return x + self.ls2(self.mlp(self.norm2(x)))


class PatchEmbed(nn.Module):
    """Non-overlapping patches -> tokens on their grid, ``(B, 3, H, W)`` -> ``(B, H/p, W/p, dim)`` (NHWC).

    Attributes:
        grid_size: ``(rows, cols)`` of the default input (the position table's grid).
    """

    def __init__(self, img_size: int, patch_size: int, in_chans: int, embed_dim: int, bias: bool) -> None:
        super().__init__()
        self.img_size = (img_size, img_size)
        self.patch_size = (patch_size, patch_size)
        self.grid_size = (img_size // patch_size, img_size // patch_size)
        self.num_patches = self.grid_size[0] * self.grid_size[1]
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=patch_size, stride=patch_size, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C, H, W)``, sides multiples of the patch size -> ``(B, H/p, W/p, dim)``."""
        return self.proj(x).permute(0, 2, 3, 1)


def resample_abs_pos_embed(
    posemb: torch.Tensor, new_size: Sequence[int], old_size: Sequence[int]
) -> torch.Tensor:
    """Resample a patch position table ``(1, old_h * old_w, C)`` to ``new_size`` (timm's rule).

    Bicubic, antialiased, ``align_corners=False``, computed in float32 and returned in the table's
    dtype; the table itself when the grids are equal.

    Returns:
        ``(1, new_h * new_w, C)``.
    """
    if tuple(new_size) == tuple(old_size):
        return posemb
    dim = posemb.shape[-1]
    grid = posemb.float().reshape(1, old_size[0], old_size[1], -1).permute(0, 3, 1, 2)
    grid = F.interpolate(grid, size=tuple(new_size), mode="bicubic", align_corners=None, antialias=True)
    return grid.permute(0, 2, 3, 1).reshape(1, -1, dim).to(posemb.dtype)


def sincos_2d_pos_embed(
    grid: Sequence[int], dim: int, temperature: float = 10000.0, device: torch.device | None = None
) -> torch.Tensor:
    """Fixed 2-D sin-cos positions ``(h * w, dim)`` in timm's channel order ``[sin y, sin x, cos y, cos x]``.

    Row-major over the grid (``y`` the row); frequencies ``temperature ** -(i / (dim / 4))``.
    """
    if dim % 4:
        raise InputError(f"dim must be divisible by 4 for a 2-D sin-cos table, got {dim}", param="dim")
    quarter = dim // 4
    bands = 1.0 / (temperature ** (torch.arange(quarter, device=device).to(torch.float32) / quarter))
    coords = [torch.arange(s, device=device).to(torch.float32) for s in grid]
    pos = torch.stack(torch.meshgrid(*coords, indexing="ij")).flatten(1).transpose(0, 1)  # (h*w, 2)
    angles = pos.unsqueeze(-1) * bands.unsqueeze(0)  # (h*w, 2, dim/4)
    return torch.stack([torch.sin(angles), torch.cos(angles)], dim=1).flatten(1)


def trunc_normal_(tensor: torch.Tensor, std: float = 1.0, a: float = -2.0, b: float = 2.0) -> torch.Tensor:
    """Fill ``tensor`` in place from ``N(0, std^2)`` truncated to ``[a, b]`` by inverse-CDF sampling.

    The method of timm's ``trunc_normal_`` (and of earlier torch releases' ``nn.init.trunc_normal_``):
    one uniform draw per element, so a seeded initialisation gives the same weights as timm's.
    """

    def cdf(v: float) -> float:
        return (1.0 + math.erf(v / math.sqrt(2.0))) / 2.0

    with torch.no_grad():
        tensor.uniform_(2 * cdf(a / std) - 1, 2 * cdf(b / std) - 1)
        tensor.erfinv_()
        tensor.mul_(std * math.sqrt(2.0))
        return tensor.clamp_(min=a, max=b)


def _init_linear(module: nn.Module) -> None:
    if isinstance(module, nn.Linear):
        trunc_normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)


class VisionTransformer(nn.Module):
    """A ViT trunk (timm's ``VisionTransformer`` with ``no_embed_class``, ``dynamic_img_size``, no head).

    Prefix tokens (CLS, then registers) carry no position; the patch position table is stored for
    ``img_size`` and resampled to each input's grid by :meth:`_pos_embed` (timm's rule; subclasses
    may change it).

    Args:
        img_size: Side of the input the position table is stored for.
        patch_size: Patch side.
        embed_dim: Token width.
        depth: Blocks.
        num_heads: Attention heads.
        mlp_ratio: MLP hidden width over ``embed_dim``.
        init_values: LayerScale init, or ``None``.
        reg_tokens: Register tokens.
        class_token: Prepend a CLS token.
        pre_norm: A norm after the embeddings (CLIP); also drops the patch projection's bias.
        act_layer: MLP activation name (:data:`ACTIVATIONS`).
        norm_layer: Norm constructor of every norm (default ``nn.LayerNorm``, eps 1e-5).
        in_chans: Input channels.

    Attributes:
        num_prefix_tokens: CLS + register tokens.
    """

    #: timm's layout flags, read by its ``checkpoint_filter_fn``.
    no_embed_class = True
    dynamic_img_size = True

    def __init__(
        self,
        img_size: int = 224,
        patch_size: int = 16,
        embed_dim: int = 768,
        depth: int = 12,
        num_heads: int = 12,
        mlp_ratio: float = 4.0,
        init_values: float | None = None,
        reg_tokens: int = 0,
        class_token: bool = True,
        pre_norm: bool = False,
        act_layer: str | None = None,
        norm_layer: NormLayer = nn.LayerNorm,
        in_chans: int = 3,
    ) -> None:
        super().__init__()
        if act_layer not in ACTIVATIONS:
            raise InputError(
                f"unknown act_layer {act_layer!r}; expected one of {list(ACTIVATIONS)}", param="act_layer"
            )
        self.embed_dim = embed_dim
        self.num_prefix_tokens = int(class_token) + reg_tokens
        self.num_reg_tokens = reg_tokens
        self.has_class_token = class_token
        self.patch_embed = PatchEmbed(img_size, patch_size, in_chans, embed_dim, bias=not pre_norm)
        self.cls_token = nn.Parameter(torch.empty(1, 1, embed_dim)) if class_token else None
        self.reg_token = nn.Parameter(torch.empty(1, reg_tokens, embed_dim)) if reg_tokens else None
        self.pos_embed = nn.Parameter(torch.empty(1, self.patch_embed.num_patches, embed_dim))
        self.norm_pre = norm_layer(embed_dim) if pre_norm else nn.Identity()
        act = ACTIVATIONS[act_layer]
        self.blocks = nn.Sequential(
            *[
                Block(embed_dim, num_heads, mlp_ratio, True, init_values, act, norm_layer)
                for _ in range(depth)
            ]
        )
        self.norm = norm_layer(embed_dim)
        self.init_weights()

    def init_weights(self) -> None:
        """timm's default ViT init: positions trunc-normal (std 0.02), prefix tokens normal (std 1e-6),
        every ``nn.Linear`` trunc-normal (std 0.02) with zero bias; the rest keep their own init."""
        trunc_normal_(self.pos_embed, std=0.02)
        for token in (self.cls_token, self.reg_token):
            if token is not None:
                nn.init.normal_(token, std=1e-6)
        for module in _depth_first(self):
            _init_linear(module)

    def _pos_embed(self, x: torch.Tensor) -> torch.Tensor:
        """Add positions to the patch grid ``(B, h, w, C)`` and prepend the prefix tokens.

        Returns:
            ``(B, prefix + h*w, C)``.
        """
        b, h, w, c = x.shape
        pos = resample_abs_pos_embed(self.pos_embed, (h, w), self.patch_embed.grid_size)
        x = x.view(b, -1, c) + pos
        prefix = [t.expand(b, -1, -1) for t in (self.cls_token, self.reg_token) if t is not None]
        return torch.cat([*prefix, x], dim=1) if prefix else x

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Images ``(B, C, H, W)`` -> all tokens ``(B, prefix + h*w, embed_dim)`` after the final norm."""
        x = self.norm_pre(self._pos_embed(self.patch_embed(x)))
        return self.norm(self.blocks(x))

    forward = forward_features


def _depth_first(module: nn.Module) -> list[nn.Module]:
    """Descendants in timm's ``named_apply`` order (children before their parent; the root excluded)."""
    out: list[nn.Module] = []
    for child in module.children():
        out += _depth_first(child)
        out.append(child)
    return out


__all__ = [
    "ACTIVATIONS",
    "Attention",
    "Block",
    "GELUTanh",
    "LayerScale",
    "Mlp",
    "PatchEmbed",
    "QuickGELU",
    "VisionTransformer",
    "resample_abs_pos_embed",
    "sincos_2d_pos_embed",
    "trunc_normal_",
]
