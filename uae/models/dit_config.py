"""The flat configuration of the DiT-DH generators (saved as JSON) and the released sizes.

A DiT-DH is a diffusion transformer ("trunk") followed by a few wider blocks (the "DDT head") that see
the trunk's per-token output as their adaLN condition. The released generators are
``DiTwDDTHead`` of bytetriper/RAE and WeichenFan/UAE (``src/stage2/models/DDT.py``); their YAML
``stage_2.params`` map to this config with :func:`uae.convert.dit.config_from_original_params`.

Released sizes (``configs/stage2/sampling/`` in RAE, ``configs/stage2/latent_modeling/sampling/
ImageNet256/64token.yaml`` in the authors' repository):

=====================  ==============  =========  ========  ==================  ========
name                   hidden (trunk,   depth      heads     latent (C, H, W)    RoPE
                       head)
=====================  ==============  =========  ========  ==================  ========
``dit_dh_xl``          1152, 2048      28, 2      16, 16    768, 16, 16         2-D
``dit_dh_s``           384, 2048       12, 2      6, 16     768, 16, 16         2-D
``dit_dh_xl_512``      1152, 2048      28, 2      16, 16    768, 32, 32         2-D
``dit_dh_s_512``       384, 2048       12, 2      6, 16     768, 32, 32         2-D
``uae_64token_dit``    1152, 2048      28, 2      16, 16    768, 16, 16         2-D
=====================  ==============  =========  ========  ==================  ========

All use patch size 1, MLP ratio 4 (SwiGLU), RMSNorm, no q/k norm, a fixed sin-cos position table,
1000 classes plus the null class of classifier-free guidance (label dropout 0.1).
"""

from __future__ import annotations

import dataclasses
import logging
import math
from dataclasses import dataclass, fields
from typing import Any, Literal

from uae.errors import ConfigError

logger = logging.getLogger(__name__)

ARCHITECTURE = "DiTDH"
MLP_KINDS = ("swiglu", "gelu")
NORM_KINDS = ("rmsnorm", "layernorm")
ROPE_MODES = ("2d", "1d")
#: ``"sincos"``: the fixed sin-cos table (a parameter without gradient, as released); ``"learned"``: the
#: same table as a trainable initial value; ``"none"``: no absolute positions (RoPE only).
POS_EMBED_KINDS = ("sincos", "learned", "none")

_CHOICES: dict[str, tuple[str, ...]] = {
    "mlp": MLP_KINDS,
    "norm": NORM_KINDS,
    "rope": ROPE_MODES,
    "pos_embed": POS_EMBED_KINDS,
}
_POSITIVE_INTS = (
    "in_channels",
    "patch_size",
    "hidden_size",
    "depth",
    "num_heads",
    "head_hidden_size",
    "head_depth",
    "head_num_heads",
    "num_classes",
    "fourier_size",
)


@dataclass
class DiTDHConfig:
    """Everything needed to build a :class:`uae.models.dit.DiTDH`.

    Attributes:
        name: Name the config was built from (informational).
        in_channels: Latent channels ``C`` (input and output).
        input_size: Latent grid ``(H, W)``.
        patch_size: Latent patch size (1 in every release).
        hidden_size: Trunk width.
        depth: Trunk blocks.
        num_heads: Trunk attention heads.
        head_hidden_size: Width of the DDT head.
        head_depth: Head blocks.
        head_num_heads: Head attention heads.
        mlp_ratio: MLP width ratio (SwiGLU uses ``int(2/3 * int(width * mlp_ratio))``).
        num_classes: Class labels; label ``num_classes`` is the null class of classifier-free guidance
            when ``class_dropout_prob > 0``.
        class_dropout_prob: Label dropout in training (0.1 in the releases); also decides whether the
            label table has the null-class row.
        mlp: ``"swiglu"`` or ``"gelu"`` (tanh GELU).
        norm: ``"rmsnorm"`` (with weight) or ``"layernorm"`` (no affine).
        qk_norm: Normalise queries and keys per head.
        rope: ``"2d"`` (row/column halves, square grids) or ``"1d"`` (flattened index; the authors' mode).
        rope_theta: RoPE frequency base.
        pos_embed: ``"sincos"``, ``"learned"`` or ``"none"`` (see :data:`POS_EMBED_KINDS`).
        fourier_size: Gaussian Fourier frequencies of the time embedding.
        fourier_scale: Standard deviation of their initial values.
    """

    name: str = "dit_dh_xl"
    in_channels: int = 768
    input_size: tuple[int, int] = (16, 16)
    patch_size: int = 1
    hidden_size: int = 1152
    depth: int = 28
    num_heads: int = 16
    head_hidden_size: int = 2048
    head_depth: int = 2
    head_num_heads: int = 16
    mlp_ratio: float = 4.0
    num_classes: int = 1000
    class_dropout_prob: float = 0.1
    mlp: Literal["swiglu", "gelu"] = "swiglu"
    norm: Literal["rmsnorm", "layernorm"] = "rmsnorm"
    qk_norm: bool = False
    rope: Literal["2d", "1d"] = "2d"
    rope_theta: float = 10000.0
    pos_embed: Literal["sincos", "learned", "none"] = "sincos"
    fourier_size: int = 256
    fourier_scale: float = 1.0

    def __post_init__(self) -> None:
        if isinstance(self.input_size, (list, tuple)):
            self.input_size = tuple(self.input_size)  # JSON gives lists
        self.validate()

    # ------------------------------------------------------------------ derived sizes
    @property
    def latent_shape(self) -> tuple[int, int, int]:
        """``(C, H, W)`` of the latents the model denoises."""
        return (self.in_channels, *self.input_size)

    @property
    def token_grid(self) -> tuple[int, int]:
        """``(H / p, W / p)``."""
        return (self.input_size[0] // self.patch_size, self.input_size[1] // self.patch_size)

    @property
    def num_tokens(self) -> int:
        rows, cols = self.token_grid
        return rows * cols

    @property
    def null_class(self) -> int | None:
        """The label of the unconditional (null) class, or ``None`` without label dropout."""
        return self.num_classes if self.class_dropout_prob > 0 else None

    # ------------------------------------------------------------------ validation
    def validate(self) -> None:
        """Check every field; raises :class:`uae.errors.ConfigError` naming the field."""
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name in _POSITIVE_INTS and (
                isinstance(value, bool) or not isinstance(value, int) or value < 1
            ):
                raise ConfigError(f"{f.name} must be a positive int, got {value!r}", param=f.name)
            if f.name in _CHOICES and value not in _CHOICES[f.name]:
                raise ConfigError(f"{f.name} must be one of {_CHOICES[f.name]}, got {value!r}", param=f.name)
        if not isinstance(self.name, str):
            raise ConfigError(f"name must be a string, got {self.name!r}", param="name")
        if not isinstance(self.qk_norm, bool):
            raise ConfigError(f"qk_norm must be true or false, got {self.qk_norm!r}", param="qk_norm")
        size = self.input_size
        if (
            not isinstance(size, tuple)
            or len(size) != 2
            or any(isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in size)
        ):
            raise ConfigError(
                f"input_size must be two positive ints (H, W), got {size!r}", param="input_size"
            )
        if size[0] % self.patch_size or size[1] % self.patch_size:
            raise ConfigError(
                f"input_size {size} must be divisible by patch_size {self.patch_size}", param="input_size"
            )
        for name in ("mlp_ratio", "rope_theta", "fourier_scale"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v <= 0:
                raise ConfigError(f"{name} must be a positive number, got {v!r}", param=name)
        p = self.class_dropout_prob
        if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0 <= p < 1:
            raise ConfigError(f"class_dropout_prob must be in [0, 1), got {p!r}", param="class_dropout_prob")
        for width, heads, what in (
            (self.hidden_size, self.num_heads, "num_heads"),
            (self.head_hidden_size, self.head_num_heads, "head_num_heads"),
        ):
            if width % heads:
                raise ConfigError(f"{what} {heads} must divide the width {width}", param=what)
            head_dim = width // heads
            if self.rope == "2d" and head_dim % 4:
                raise ConfigError(
                    f"{what}: 2-D RoPE needs a head size divisible by 4; {width} / {heads} = {head_dim}",
                    param=what,
                )
            if self.rope == "1d" and head_dim % 2:
                raise ConfigError(
                    f"{what}: 1-D RoPE needs an even head size; {width} / {heads} = {head_dim}", param=what
                )
        rows, cols = self.token_grid
        if self.rope == "2d" and rows != cols:
            raise ConfigError(
                f"2-D RoPE needs a square token grid, got {rows}x{cols}; use rope='1d'", param="rope"
            )
        if self.pos_embed != "none" and self.hidden_size % 4:
            raise ConfigError(
                f"the sin-cos position table needs hidden_size divisible by 4, got {self.hidden_size}",
                param="hidden_size",
            )

    # ------------------------------------------------------------------ (de)serialisation
    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (tuples as lists)."""
        d = dataclasses.asdict(self)
        d["input_size"] = list(self.input_size)
        return d

    @classmethod
    def from_dict(cls, data: dict[str, Any], strict: bool = True) -> DiTDHConfig:
        """Build from :meth:`to_dict` output (a ``config.json``).

        Args:
            data: Field values; the metadata keys ``architecture`` (checked) and ``uae_version`` are dropped.
            strict: Raise on unknown keys instead of ignoring them with a warning.

        Raises:
            ConfigError: Another architecture, invalid values, or unknown keys with ``strict`` (naming them).
        """
        known = {f.name for f in fields(cls)}
        if data.get("architecture", ARCHITECTURE) != ARCHITECTURE:
            raise ConfigError(
                f"not a {ARCHITECTURE} config: architecture={data['architecture']!r}", param="architecture"
            )
        unknown = sorted(set(data) - known - {"architecture", "uae_version"})
        if unknown:
            if strict:
                raise ConfigError(
                    f"unknown DiT-DH config field(s) {unknown}; expected some of {sorted(known)}"
                )
            logger.warning("Ignoring unknown DiT-DH config keys %s", unknown)
        return cls(**{k: v for k, v in data.items() if k in known})

    def replace(self, **changes: Any) -> DiTDHConfig:
        """A validated copy with some fields changed."""
        return dataclasses.replace(self, **changes)


# ---------------------------------------------------------------------------------------------- released sizes
def dit_dh_xl(**overrides: Any) -> DiTDHConfig:
    """RAE's DiT-DH-XL at 256 px (16x16x768 DINOv2-B latents): trunk 1152 x 28, head 2048 x 2, 16 + 16 heads."""
    return DiTDHConfig(**{"name": "dit_dh_xl", **overrides})


def dit_dh_s(**overrides: Any) -> DiTDHConfig:
    """RAE's DiT-DH-S (the 256 px autoguidance model): trunk 384 x 12 (6 heads), head 2048 x 2 (16 heads)."""
    base = {"name": "dit_dh_s", "hidden_size": 384, "depth": 12, "num_heads": 6}
    return DiTDHConfig(**{**base, **overrides})


def dit_dh_xl_512(**overrides: Any) -> DiTDHConfig:
    """RAE's DiT-DH-XL at 512 px (32x32x768 latents of DINOv2-B at 448 px)."""
    return dit_dh_xl(**{"name": "dit_dh_xl_512", "input_size": (32, 32), **overrides})


def dit_dh_s_512(**overrides: Any) -> DiTDHConfig:
    """RAE's DiT-DH-S at 512 px (the autoguidance model of :func:`dit_dh_xl_512`)."""
    return dit_dh_s(**{"name": "dit_dh_s_512", "input_size": (32, 32), **overrides})


def uae_64token_dit(**overrides: Any) -> DiTDHConfig:
    """The authors' generator on their 64-token tokenizer (``64token.yaml``): DiT-DH-XL, 2-D RoPE, 16x16x768."""
    return dit_dh_xl(**{"name": "uae_64token_dit", **overrides})


#: The released sizes by name (registration in the zoo comes with the weights table).
RELEASED_CONFIGS = {
    "dit_dh_xl": dit_dh_xl,
    "dit_dh_s": dit_dh_s,
    "dit_dh_xl_512": dit_dh_xl_512,
    "dit_dh_s_512": dit_dh_s_512,
    "uae_64token_dit": uae_64token_dit,
}

__all__ = [
    "ARCHITECTURE",
    "DiTDHConfig",
    "MLP_KINDS",
    "NORM_KINDS",
    "POS_EMBED_KINDS",
    "RELEASED_CONFIGS",
    "ROPE_MODES",
    "dit_dh_s",
    "dit_dh_s_512",
    "dit_dh_xl",
    "dit_dh_xl_512",
    "uae_64token_dit",
]
