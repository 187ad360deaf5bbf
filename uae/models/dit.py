"""DiT-DH: the class-conditional latent generator of RAE and of the authors (a DiT with a wide "DDT head").

The architecture of ``DiTwDDTHead`` (``src/stage2/models/DDT.py`` in bytetriper/RAE and
WeichenFan/UAE), with the same arithmetic; :mod:`uae.convert.dit` maps their checkpoints here.

Forward pass for latents ``x (B, C, H, W)``, times ``t (B,)`` and labels ``y (B,)``:

1. ``c = SiLU(time(t) + label(y))`` ``(B, D)``: one condition vector per image.
2. Trunk: ``s = patchify_s(x) + pos``, ``depth`` adaLN blocks of width ``D`` conditioned on ``c``, then
   ``s = SiLU(time(t) + s)`` per token and a linear map to the head width ``D'``.
3. Head: ``h = patchify_x(x)`` (a second patch embedding of the same input), ``head_depth`` blocks of
   width ``D'`` whose adaLN condition is the trunk output ``s`` token by token, a final adaLN layer,
   unpatchify to ``(B, C, H, W)``.

The output is the flow-matching velocity (or the clean latent for the authors' ``prediction: x``
models); the samplers in :mod:`uae.generation` integrate it. Labels are never dropped inside
``forward`` (the originals drop them in training mode from the global RNG); training code calls
:func:`uae.generation.flow.drop_labels` explicitly.
"""

from __future__ import annotations

import torch
from torch import nn

from uae.errors import InputError
from uae.layers.dit import (
    DiTBlock,
    FinalLayer,
    FourierTimeEmbedding,
    init_dit_linear,
    sincos_table,
    zero_module,
)
from uae.layers.rope import RotaryEmbedding
from uae.models.dit_config import DiTDHConfig
from uae.models.dit_hub import DiTDHHubMixin


class DiTDH(nn.Module, DiTDHHubMixin):
    """Diffusion transformer with a DDT head.

    ``save_pretrained``, ``from_pretrained`` (strict) and ``push_to_hub`` come from
    :class:`~uae.models.dit_hub.DiTDHHubMixin`, the tokenizers' Hub mixin with the DiT-DH config.

    Args:
        config: The architecture (:class:`~uae.models.dit_config.DiTDHConfig`); defaults to DiT-DH-XL.

    Attributes:
        config: The config.
        null_class: Label of the unconditional class (``config.num_classes``), or ``None``.
    """

    def __init__(self, config: DiTDHConfig | None = None) -> None:
        super().__init__()
        config = config if config is not None else DiTDHConfig()
        self.config = config
        c, p = config.in_channels, config.patch_size
        d, dh = config.hidden_size, config.head_hidden_size
        grid = config.token_grid
        self.s_embed = nn.Conv2d(c, d, kernel_size=p, stride=p)
        self.x_embed = nn.Conv2d(c, dh, kernel_size=p, stride=p)
        self.s_proj = nn.Linear(d, dh) if d != dh else nn.Identity()
        self.t_embed = FourierTimeEmbedding(d, config.fourier_size, config.fourier_scale)
        self.y_embed = nn.Embedding(config.num_classes + (config.null_class is not None), d)
        if config.pos_embed != "none":
            table = sincos_table(d, *grid).unsqueeze(0)
            self.pos_embed = nn.Parameter(table, requires_grad=config.pos_embed == "learned")
        else:
            self.register_parameter("pos_embed", None)
        block = {
            "mlp_ratio": config.mlp_ratio,
            "mlp": config.mlp,
            "norm": config.norm,
            "qk_norm": config.qk_norm,
        }
        self.trunk = nn.ModuleList([DiTBlock(d, config.num_heads, **block) for _ in range(config.depth)])
        self.head = nn.ModuleList(
            [DiTBlock(dh, config.head_num_heads, **block) for _ in range(config.head_depth)]
        )
        self.final = FinalLayer(dh, p * p * c, norm=config.norm)
        self.trunk_rope = RotaryEmbedding(d // config.num_heads, grid, config.rope, config.rope_theta)
        self.head_rope = RotaryEmbedding(dh // config.head_num_heads, grid, config.rope, config.rope_theta)
        self.reset_parameters()

    @property
    def null_class(self) -> int | None:
        return self.config.null_class

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """The originals' initialisation (``initialize_weights``): Xavier patch embeddings, label table
        ``N(0, 0.02)``, time MLP weights ``N(0, 0.02)``, zero adaLN and output layers; other linear layers
        keep torch's default; the position table is the sin-cos table."""
        init_dit_linear(self.s_embed)
        init_dit_linear(self.x_embed)
        nn.init.normal_(self.y_embed.weight, std=0.02)
        nn.init.normal_(self.t_embed.fc1.weight, std=0.02)
        nn.init.normal_(self.t_embed.fc2.weight, std=0.02)
        for blk in (*self.trunk, *self.head):
            zero_module(blk.modulation)
        zero_module(self.final.modulation)
        zero_module(self.final.linear)
        if self.pos_embed is not None:
            self.pos_embed.copy_(sincos_table(self.config.hidden_size, *self.config.token_grid).unsqueeze(0))

    # ------------------------------------------------------------------ forward
    def _check(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor) -> None:
        want = self.config.latent_shape
        if x.ndim != 4 or tuple(x.shape[1:]) != want:
            raise InputError(
                f"expected latents x of shape (B, {', '.join(map(str, want))}), got {tuple(x.shape)}"
            )
        b = x.shape[0]
        if t.shape != (b,) or not t.is_floating_point():
            raise InputError(f"expected float times t of shape ({b},), got {tuple(t.shape)} {t.dtype}")
        if y.shape != (b,) or y.is_floating_point():
            raise InputError(f"expected integer labels y of shape ({b},), got {tuple(y.shape)} {y.dtype}")

    def forward(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Predict the velocity (or clean latent) of noisy latents.

        Args:
            x: ``(B, C, H, W)`` latents at time ``t`` (``t = 1`` noise, ``t = 0`` data).
            t: ``(B,)`` float times.
            y: ``(B,)`` integer labels in ``0 .. num_classes`` (``num_classes`` = the null class).

        Returns:
            ``(B, C, H, W)``.

        Raises:
            InputError: Wrong shapes or dtypes.
        """
        self._check(x, t, y)
        t_emb = self.t_embed(t)  # (B, D)
        c = nn.functional.silu(t_emb + self.y_embed(y)).unsqueeze(1)  # (B, 1, D)
        s = self.s_embed(x).flatten(2).transpose(1, 2)  # (B, N, D)
        if self.pos_embed is not None:
            s = s + self.pos_embed
        for blk in self.trunk:
            s = blk(s, c, self.trunk_rope)
        # the originals repeat t over the tokens (a contiguous tensor; keeps the matmuls bit-identical)
        s = self.s_proj(nn.functional.silu(t_emb.unsqueeze(1).repeat(1, s.shape[1], 1) + s))  # (B, N, D')
        h = self.x_embed(x).flatten(2).transpose(1, 2)  # (B, N, D')
        for blk in self.head:
            h = blk(h, s, self.head_rope)
        return self.unpatchify(self.final(h, s))

    def unpatchify(self, tokens: torch.Tensor) -> torch.Tensor:
        """``(B, N, p*p*C)`` -> ``(B, C, H, W)``."""
        c, p = self.config.in_channels, self.config.patch_size
        rows, cols = self.config.token_grid
        x = tokens.reshape(tokens.shape[0], rows, cols, p, p, c)
        return torch.einsum("nhwpqc->nchpwq", x).reshape(tokens.shape[0], c, rows * p, cols * p)


__all__ = ["DiTDH"]
