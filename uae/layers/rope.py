"""Rotary position embeddings (RoPE) of the DiT-DH generator.

The released generators (``DiTwDDTHead`` in RAE's and the authors' ``src/stage2/models/DDT.py``) rotate
queries and keys with EVA-style tables: channel pairs ``(2i, 2i+1)`` rotate together
(``rotate_half`` pairs neighbours, not halves), with the frequencies ``theta^(-2i/d)``.

* ``"2d"`` (both releases): the first half of a head's channels rotates with the token's row, the
  second half with its column; a square ``n x n`` grid, tokens in row-major order.
* ``"1d"`` (the authors' copy, ``rope_mode: 1d``): the whole head rotates with the token's index in the
  flattened sequence; any grid, also rectangular.

The tables are computed here with the same float32 operations as the original code, so they are
bit-identical; they are not stored in uae's checkpoints (the converter checks the stored copies).
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

RopeMode = Literal["2d", "1d"]
ROPE_MODES = ("2d", "1d")


def rope_frequencies(dim: int, theta: float = 10000.0) -> torch.Tensor:
    """``1 / theta^(2i / dim)`` for ``i < dim // 2`` (float32, ``(dim // 2,)``)."""
    return 1.0 / (theta ** (torch.arange(0, dim, 2)[: dim // 2].float() / dim))


def rope_positions(length: int) -> torch.Tensor:
    """Token positions ``0 .. length-1`` as the originals compute them (``arange(n) / n * n``, float32)."""
    return torch.arange(length) / length * length


def _angles(dim: int, length: int, theta: float) -> torch.Tensor:
    """``(length, dim)`` rotation angles, each frequency repeated for its channel pair."""
    angles = rope_positions(length)[:, None] * rope_frequencies(dim, theta)[None, :]
    return angles.repeat_interleave(2, dim=-1)


def rope_table(
    head_dim: int, grid: tuple[int, int], mode: RopeMode = "2d", theta: float = 10000.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """The cosine and sine tables for a token grid.

    Args:
        head_dim: Channels per attention head (a multiple of 4 for ``"2d"``, of 2 for ``"1d"``).
        grid: ``(rows, cols)`` of the token grid (square for ``"2d"``).
        mode: ``"2d"`` (row / column halves) or ``"1d"`` (flattened index).
        theta: Frequency base.

    Returns:
        ``(cos, sin)``, each ``(rows * cols, head_dim)`` float32, tokens in row-major order.

    Raises:
        ValueError: A head size or grid the mode cannot rotate.
    """
    rows, cols = grid
    if mode == "2d":
        if rows != cols:
            raise ValueError(f"2-D RoPE needs a square token grid, got {rows}x{cols} (use the 1-D mode)")
        if head_dim % 4:
            raise ValueError(f"2-D RoPE needs a head size divisible by 4, got {head_dim}")
        per_axis = _angles(head_dim // 2, rows, theta)  # (n, head_dim / 2)
        angles = torch.cat(
            [
                per_axis[:, None, :].expand(rows, cols, -1),  # row position: first half of each head
                per_axis[None, :, :].expand(rows, cols, -1),  # column position: second half
            ],
            dim=-1,
        ).reshape(rows * cols, head_dim)
    elif mode == "1d":
        if head_dim % 2:
            raise ValueError(f"1-D RoPE needs an even head size, got {head_dim}")
        angles = _angles(head_dim, rows * cols, theta)
    else:
        raise ValueError(f"RoPE mode must be one of {ROPE_MODES}, got {mode!r}")
    return angles.cos(), angles.sin()


def rotate_pairs(x: torch.Tensor) -> torch.Tensor:
    """``(x0, x1, x2, x3, ...) -> (-x1, x0, -x3, x2, ...)`` over the last dimension."""
    x1, x2 = x.unflatten(-1, (-1, 2)).unbind(-1)
    return torch.stack((-x2, x1), dim=-1).flatten(-2)


class RotaryEmbedding(nn.Module):
    """Applies fixed RoPE tables to queries or keys ``(B, heads, N, head_dim)``.

    The tables are non-persistent buffers (rebuilt from the arguments, never saved).

    Args:
        head_dim: Channels per head.
        grid: ``(rows, cols)`` token grid.
        mode: ``"2d"`` or ``"1d"``.
        theta: Frequency base.
    """

    def __init__(self, head_dim: int, grid: tuple[int, int], mode: RopeMode = "2d", theta: float = 10000.0):
        super().__init__()
        cos, sin = rope_table(head_dim, grid, mode, theta)
        self.register_buffer("cos", cos, persistent=False)
        self.register_buffer("sin", sin, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Rotate ``x (B, heads, N, head_dim)``; ``N`` must be the table's token count."""
        if x.shape[-2:] != self.cos.shape:
            raise ValueError(
                f"RoPE table is {tuple(self.cos.shape)} (tokens, head_dim), got {tuple(x.shape)}"
            )
        return x * self.cos + rotate_pairs(x) * self.sin
