"""Building blocks of the DiT-DH generator (a diffusion transformer with a wide "DDT head").

The same arithmetic as ``src/stage2/models/DDT.py`` and ``model_utils.py`` of bytetriper/RAE and
WeichenFan/UAE (``LightningDDTBlock``, ``DDTFinalLayer``, ``GaussianFourierEmbedding``,
``NormAttention``, ``SwiGLUFFN``, ``RMSNorm``), written with ``F.scaled_dot_product_attention``:

* adaLN-Zero blocks: ``x + gate * attn(norm(x) * (1 + scale) + shift)``, then the same for the MLP, with
  ``shift, scale, gate`` from ``Linear(SiLU(c))``; ``c`` is one vector per image ``(B, 1, D)`` in the
  trunk and one per token ``(B, N, D)`` in the head;
* RMSNorm (eps 1e-6, learned weight; :class:`RMSNorm`) or LayerNorm without affine; optional q/k norm;
* SwiGLU MLP (hidden ``int(2/3 * mlp_ratio * D)``, one fused input projection ``[gate | value]``) or a
  tanh-GELU MLP;
* RoPE on queries and keys (:mod:`uae.layers.rope`);
* the time embedding is a Gaussian Fourier feature map ``[sin, cos](2 pi t w)`` of a fixed random
  ``w`` followed by a two-layer MLP.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from uae.layers.rope import RotaryEmbedding

NormKind = Literal["rmsnorm", "layernorm"]
MlpKind = Literal["swiglu", "gelu"]
#: eps of every norm of the released generators (``RMSNorm(dim, eps=1e-6)`` / ``LayerNorm(eps=1e-6)``).
NORM_EPS = 1e-6


class RMSNorm(nn.Module):
    """``x / sqrt(mean(x^2) + eps) * weight`` over the last dimension, computed in float32.

    The originals' formula, op for op. ``torch.nn.RMSNorm`` gives the same values but a contiguous
    output where the input is a transposed view (the patch embedding's tokens); the following matmuls then
    round differently (1 ulp per op), which random full-size weights amplify to 5e-5 relative on a
    sampled latent. Keeping the layout keeps uae bit-identical to the originals on the CPU.

    Args:
        dim: Normalised width.
        eps: Added to the mean square.
    """

    def __init__(self, dim: int, eps: float = NORM_EPS) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        xf = x.float()
        return (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)).type_as(x) * self.weight


def make_norm(dim: int, kind: NormKind, eps: float = NORM_EPS) -> nn.Module:
    """RMSNorm with a learned weight, or LayerNorm without affine parameters."""
    if kind == "rmsnorm":
        return RMSNorm(dim, eps=eps)
    return nn.LayerNorm(dim, eps=eps, elementwise_affine=False)


def modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """adaLN modulation ``x * (1 + scale) + shift``; ``shift, scale`` broadcast over tokens."""
    return x * (1 + scale) + shift


def swiglu_hidden(dim: int, mlp_ratio: float) -> int:
    """Hidden width of the released SwiGLU MLP: ``int(2/3 * int(dim * mlp_ratio))``."""
    return int(2 / 3 * int(dim * mlp_ratio))


def sincos_table(dim: int, rows: int, cols: int) -> torch.Tensor:
    """The fixed 2-D sin-cos position table ``(rows * cols, dim)`` (MAE / DiT layout, float64 -> float32).

    Channels ``[sin(x w), cos(x w), sin(y w), cos(y w)]`` with ``x`` the column, ``y`` the row and
    ``w_i = 10000^(-i / (dim / 4))``.
    """
    if dim % 4:
        raise ValueError(f"the sin-cos position table needs a width divisible by 4, got {dim}")
    quarter = dim // 4
    omega = 1.0 / 10000 ** (torch.arange(quarter, dtype=torch.float64) / quarter)
    ys, xs = torch.meshgrid(
        torch.arange(rows, dtype=torch.float64), torch.arange(cols, dtype=torch.float64), indexing="ij"
    )
    ax = xs.reshape(-1, 1) * omega
    ay = ys.reshape(-1, 1) * omega
    return torch.cat([ax.sin(), ax.cos(), ay.sin(), ay.cos()], dim=1).float()


class FourierTimeEmbedding(nn.Module):
    """Time ``t (B,)`` -> ``(B, dim)``: ``MLP([sin, cos](2 pi t w))`` with a fixed Gaussian ``w``.

    ``freqs`` is a parameter with ``requires_grad=False`` (as in the originals, whose training script
    turns gradients back on for every parameter).

    Args:
        dim: Output width.
        size: Number of Fourier frequencies (256 in the releases).
        scale: Standard deviation of the initial frequencies.
    """

    def __init__(self, dim: int, size: int = 256, scale: float = 1.0) -> None:
        super().__init__()
        self.freqs = nn.Parameter(torch.randn(size) * scale, requires_grad=False)
        self.fc1 = nn.Linear(2 * size, dim)
        self.fc2 = nn.Linear(dim, dim)

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        angles = t[:, None] * self.freqs[None, :] * 2 * torch.pi
        return self.fc2(F.silu(self.fc1(torch.cat([angles.sin(), angles.cos()], dim=-1))))


class SwiGLU(nn.Module):
    """``fc_out(SiLU(a) * b)`` with ``[a | b] = fc_in(x)``."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc_in = nn.Linear(dim, 2 * hidden)
        self.fc_out = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, b = self.fc_in(x).chunk(2, dim=-1)
        return self.fc_out(F.silu(a) * b)


class GeluMlp(nn.Module):
    """``fc2(GELU_tanh(fc1(x)))`` (the originals' ``use_swiglu: false`` option)."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x), approximate="tanh"))


class RopeAttention(nn.Module):
    """Multi-head self-attention with RoPE on queries and keys and an optional q/k norm.

    Args:
        dim: Width.
        num_heads: Heads (``dim`` must be divisible).
        qk_norm: Normalise queries and keys per head (RMSNorm, or LayerNorm with affine and torch's
            default eps 1e-5 when ``norm="layernorm"``, as the originals build it).
        norm: Norm kind of the block.
    """

    def __init__(self, dim: int, num_heads: int, qk_norm: bool = False, norm: NormKind = "rmsnorm") -> None:
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.q_norm = self._qk_norm(qk_norm, norm)
        self.k_norm = self._qk_norm(qk_norm, norm)
        self.proj = nn.Linear(dim, dim)

    def _qk_norm(self, enabled: bool, norm: NormKind) -> nn.Module:
        if not enabled:
            return nn.Identity()
        return RMSNorm(self.head_dim) if norm == "rmsnorm" else nn.LayerNorm(self.head_dim)

    def forward(self, x: torch.Tensor, rope: RotaryEmbedding) -> torch.Tensor:
        """``x (B, N, D)`` -> ``(B, N, D)``."""
        b, n, c = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4).unbind(0)
        q, k = rope(self.q_norm(q)).to(v.dtype), rope(self.k_norm(k)).to(v.dtype)
        x = F.scaled_dot_product_attention(q, k, v)
        return self.proj(x.transpose(1, 2).reshape(b, n, c))


class DiTBlock(nn.Module):
    """adaLN-Zero transformer block (attention + MLP, both gated).

    Args:
        dim: Width.
        num_heads: Attention heads.
        mlp_ratio: MLP width ratio (SwiGLU uses two thirds of it, see :func:`swiglu_hidden`).
        mlp: ``"swiglu"`` or ``"gelu"``.
        norm: ``"rmsnorm"`` or ``"layernorm"``.
        qk_norm: q/k normalisation.
    """

    def __init__(
        self,
        dim: int,
        num_heads: int,
        mlp_ratio: float = 4.0,
        mlp: MlpKind = "swiglu",
        norm: NormKind = "rmsnorm",
        qk_norm: bool = False,
    ) -> None:
        super().__init__()
        self.norm1 = make_norm(dim, norm)
        self.attn = RopeAttention(dim, num_heads, qk_norm=qk_norm, norm=norm)
        self.norm2 = make_norm(dim, norm)
        if mlp == "swiglu":
            self.mlp: nn.Module = SwiGLU(dim, swiglu_hidden(dim, mlp_ratio))
        else:
            self.mlp = GeluMlp(dim, int(dim * mlp_ratio))
        self.modulation = nn.Linear(dim, 6 * dim)

    def forward(self, x: torch.Tensor, c: torch.Tensor, rope: RotaryEmbedding) -> torch.Tensor:
        """``x (B, N, D)``, condition ``c (B, 1, D)`` or ``(B, N, D)`` -> ``(B, N, D)``."""
        shift1, scale1, gate1, shift2, scale2, gate2 = self.modulation(F.silu(c)).chunk(6, dim=-1)
        x = x + self.attn(modulate(self.norm1(x), shift1, scale1), rope) * gate1
        return x + self.mlp(modulate(self.norm2(x), shift2, scale2)) * gate2


class FinalLayer(nn.Module):
    """``linear(norm(x) * (1 + scale) + shift)`` with ``shift, scale`` from ``Linear(SiLU(c))`` (no gate)."""

    def __init__(self, dim: int, out_dim: int, norm: NormKind = "rmsnorm") -> None:
        super().__init__()
        self.norm = make_norm(dim, norm)
        self.modulation = nn.Linear(dim, 2 * dim)
        self.linear = nn.Linear(dim, out_dim)

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        shift, scale = self.modulation(F.silu(c)).chunk(2, dim=-1)
        return self.linear(modulate(self.norm(x), shift, scale))


def init_dit_linear(module: nn.Module, std: float | None = None) -> None:
    """Re-initialise a linear/conv layer: ``N(0, std)`` weights or Xavier-uniform (flattened), zero bias."""
    weight = module.weight.data
    if std is None:
        nn.init.xavier_uniform_(weight.view(weight.shape[0], -1))
    else:
        nn.init.normal_(weight, std=std)
    if getattr(module, "bias", None) is not None:
        nn.init.zeros_(module.bias)


def zero_module(module: nn.Module) -> None:
    """Set every parameter of ``module`` to zero (adaLN-Zero)."""
    for p in module.parameters():
        nn.init.zeros_(p)


__all__ = [
    "NORM_EPS",
    "DiTBlock",
    "RMSNorm",
    "FinalLayer",
    "FourierTimeEmbedding",
    "GeluMlp",
    "RopeAttention",
    "SwiGLU",
    "init_dit_linear",
    "make_norm",
    "modulate",
    "sincos_table",
    "swiglu_hidden",
    "zero_module",
]
