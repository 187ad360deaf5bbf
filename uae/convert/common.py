"""Shared pieces of the converters: strict key consumption, the MAE-decoder key map, configs from shapes.

The key tables are in :mod:`uae.convert` (package docstring); the transformers encoders' maps are in
:mod:`uae.convert.hf_encoders`. Converters raise :class:`~uae.errors.InputError` (a ``ValueError``)
naming the keys or shapes they cannot convert. Files are read with :func:`uae.files.read_state_dict`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

import torch

from uae.errors import DamagedFileError, InputError, MissingFileError
from uae.models.config import UAEConfig
from uae.utils import non_finite_tensors, non_float_tensors, state_dict_mismatch

#: Decoder head counts by width, as RAE configures its ViT-B / ViT-L / ViT-XL decoders.
DECODER_HEADS_BY_WIDTH = {768: 12, 1024: 16, 1152: 16}
#: DINOv2 encoder depth by width (ViT-S/B/L/g), used for RAE when no encoder weights are given.
DINOV2_DEPTH_BY_WIDTH = {384: 12, 768: 12, 1024: 24, 1536: 40}
DINOV2_TIMM_IDS = {
    384: "timm/vit_small_patch14_reg4_dinov2.lvd142m",
    768: "timm/vit_base_patch14_reg4_dinov2.lvd142m",
    1024: "timm/vit_large_patch14_reg4_dinov2.lvd142m",
    1536: "timm/vit_giant_patch14_reg4_dinov2.lvd142m",
}

# Per-block renames (source suffix -> uae suffix); q/k/v are handled separately (fused).
ENCODER_BLOCK_MAP = {
    "norm1.weight": "norm1.weight",
    "norm1.bias": "norm1.bias",
    "attention.output.dense.weight": "attn.proj.weight",
    "attention.output.dense.bias": "attn.proj.bias",
    "layer_scale1.lambda1": "ls1.gamma",
    "norm2.weight": "norm2.weight",
    "norm2.bias": "norm2.bias",
    "mlp.fc1.weight": "mlp.fc1.weight",
    "mlp.fc1.bias": "mlp.fc1.bias",
    "mlp.fc2.weight": "mlp.fc2.weight",
    "mlp.fc2.bias": "mlp.fc2.bias",
    "layer_scale2.lambda1": "ls2.gamma",
}
DECODER_BLOCK_MAP = {
    "layernorm_before.weight": "norm1.weight",
    "layernorm_before.bias": "norm1.bias",
    "attention.output.dense.weight": "attn.proj.weight",
    "attention.output.dense.bias": "attn.proj.bias",
    "layernorm_after.weight": "norm2.weight",
    "layernorm_after.bias": "norm2.bias",
    "intermediate.dense.weight": "mlp.fc1.weight",
    "intermediate.dense.bias": "mlp.fc1.bias",
    "output.dense.weight": "mlp.fc2.weight",
    "output.dense.bias": "mlp.fc2.bias",
}
QKV_PARTS = ("query", "key", "value")


def check_release_call(
    what: str,
    files: Mapping[str, Any],
    roles: Mapping[str, bool],
    options: Mapping[str, Any] | None = None,
    allowed: set[str] | None = None,
) -> None:
    """Check a converter's ``files`` (role -> path) against its ``roles`` and its ``options`` against ``allowed``.

    Args:
        what: The release, for messages (``"RAE release"``).
        files: Role -> path as given.
        roles: Role -> required? (the format's ``RELEASE_FILES``).
        options: Keyword options as given (checked only with ``allowed``).
        allowed: The option names the converter takes.

    Raises:
        InputError: Unknown roles or options, naming them and the expected ones.
        MissingFileError: A required role is not given.
    """
    unknown = sorted(set(files) - set(roles))
    if unknown:
        raise InputError(f"{what}: unknown file role(s) {unknown}; expected {sorted(roles)}")
    missing = [r for r, required in roles.items() if required and not files.get(r)]
    if missing:
        raise MissingFileError(f"{what}: required file role(s) {missing} not given")
    bad = sorted(set(options or ()) - allowed) if allowed is not None else []
    if bad:
        raise InputError(f"{what}: unknown option(s) {bad}; expected {sorted(allowed)}")


class Source:
    """A source state dict whose keys must all be consumed (strict conversion).

    Args:
        state: The release's state dict.
        what: What it is, for messages.
        reuse: The converter may overwrite the tensors (a state dict it read itself, memory-mapped): the
            decoder's channel permutation then happens in place, so the conversion holds the release
            once instead of twice (:func:`permute_decoder_residual`).
    """

    def __init__(self, state: Mapping[str, torch.Tensor], what: str, *, reuse: bool = False) -> None:
        self.state = dict(state)
        self.used: set[str] = set()
        self.what = what
        self.reuse = reuse

    def has(self, key: str) -> bool:
        return key in self.state

    def take(self, key: str) -> torch.Tensor:
        """The tensor ``key``, marked as used.

        Raises:
            InputError: No such key.
            DamagedFileError: It holds NaN or inf (a damaged release file), naming the key.
        """
        if key not in self.state:
            raise InputError(f"{self.what}: required key {key!r} is missing")
        self.used.add(key)
        value = self.state[key]
        if non_finite_tensors({key: value}):
            raise DamagedFileError(f"{self.what}: tensor {key!r} holds NaN or inf values (a damaged file?)")
        return value

    def keys_with(self, prefix: str) -> list[str]:
        return sorted(k for k in self.state if k.startswith(prefix))

    def check_consumed(self) -> None:
        left = sorted(set(self.state) - self.used)
        if left:
            raise InputError(f"{self.what}: {len(left)} key(s) not understood by the converter: {left}")


def count_blocks(src: Source, prefix: str) -> int:
    idx = {int(m.group(1)) for k in src.state if (m := re.match(re.escape(prefix) + r"(\d+)\.", k))}
    if not idx:
        return 0
    if idx != set(range(max(idx) + 1)):
        raise InputError(f"{src.what}: block indices under {prefix!r} are not contiguous: {sorted(idx)}")
    return max(idx) + 1


def fused_qkv(src: Source, names: tuple[str, str, str]) -> tuple[torch.Tensor, torch.Tensor]:
    """Concatenate the ``{name}.weight`` / ``{name}.bias`` of q, k, v into timm's fused ``qkv`` weight and bias."""
    w = torch.cat([src.take(n + ".weight") for n in names], dim=0)
    b = torch.cat([src.take(n + ".bias") for n in names], dim=0)
    return w, b


# ---------------------------------------------------------------------------------------------- sin-cos tables
def mae_sincos_table(dim: int, grid: int) -> torch.Tensor:
    """The MAE / RAE fixed 2-D sin-cos table ``(grid*grid, dim)`` (without the CLS slot).

    Channel layout ``[sin(x w), cos(x w), sin(y w), cos(y w)]`` with ``x`` the column and ``y`` the row
    index and ``w_i = 10000^(-i / (dim/4))``, computed in float64 like the original numpy code.
    """
    q = dim // 4
    omega = 1.0 / 10000 ** (torch.arange(q, dtype=torch.float64) / q)
    ys, xs = torch.meshgrid(
        torch.arange(grid, dtype=torch.float64), torch.arange(grid, dtype=torch.float64), indexing="ij"
    )
    ax = xs.reshape(-1, 1) * omega
    ay = ys.reshape(-1, 1) * omega
    return torch.cat([ax.sin(), ax.cos(), ay.sin(), ay.cos()], dim=1).float()


def mae_to_timm_channel_perm(dim: int) -> torch.Tensor:
    """Index ``P`` with ``timm_table == mae_table[:, P]`` (timm: ``[sin y, sin x, cos y, cos x]``)."""
    q = dim // 4
    r = torch.arange(q)
    return torch.cat([r + 2 * q, r, r + 3 * q, r + q])


def _decoder_channel_perm(pos: torch.Tensor, what: str) -> tuple[torch.Tensor | None, int]:
    """Check a source ``decoder_pos_embed (1, 1+n, D)`` and return (residual permutation or None, grid side)."""
    from uae.layers.vit import sincos_2d_pos_embed

    if pos.ndim != 3 or pos.shape[0] != 1:
        raise InputError(f"{what}: decoder_pos_embed must have shape (1, 1+h*w, D), got {tuple(pos.shape)}")
    n, dim = pos.shape[1] - 1, pos.shape[2]
    grid = math.isqrt(n)
    if grid * grid != n or dim % 4:
        raise InputError(f"{what}: decoder_pos_embed {tuple(pos.shape)} is not a square sin-cos table")
    table = pos[0, 1:].float()
    if torch.allclose(table, mae_sincos_table(dim, grid), atol=1e-4):
        return mae_to_timm_channel_perm(dim), grid
    if torch.allclose(table, sincos_2d_pos_embed((grid, grid), dim), atol=1e-4):
        return None, grid
    raise InputError(
        f"{what}: decoder_pos_embed is not the fixed 2-D sin-cos table uae uses (learned or modified "
        "positions cannot be represented)"
    )


# ---------------------------------------------------------------------------------------------- parts
def convert_mae_decoder(src: Source, prefix: str) -> tuple[dict[str, torch.Tensor], int]:
    """Map an MAE-style ``GeneralDecoder`` state dict (under ``prefix``) to uae's ``PixelDecoder`` names.

    Returns:
        (``{uae decoder name (without 'decoder.'): tensor}``, latent grid side).
    """
    perm, grid = _decoder_channel_perm(src.take(prefix + "decoder_pos_embed"), src.what)
    pos = src.state[prefix + "decoder_pos_embed"]
    out: dict[str, torch.Tensor] = {
        "embed.weight": src.take(prefix + "decoder_embed.weight"),
        "embed.bias": src.take(prefix + "decoder_embed.bias"),
        "cls_token": src.take(prefix + "trainable_cls_token") + pos[:, :1].to(pos.dtype),
        "norm.weight": src.take(prefix + "decoder_norm.weight"),
        "norm.bias": src.take(prefix + "decoder_norm.bias"),
        "pred.weight": src.take(prefix + "decoder_pred.weight"),
        "pred.bias": src.take(prefix + "decoder_pred.bias"),
    }
    depth = count_blocks(src, prefix + "decoder_layers.")
    for i in range(depth):
        s, t = f"{prefix}decoder_layers.{i}.", f"blocks.{i}."
        qkv = tuple(f"{s}attention.attention.{p}" for p in QKV_PARTS)
        out[t + "attn.qkv.weight"], out[t + "attn.qkv.bias"] = fused_qkv(src, qkv)
        for a, b in DECODER_BLOCK_MAP.items():
            out[t + b] = src.take(s + a)
    if perm is not None:
        out = permute_decoder_residual(out, perm, in_place=src.reuse)
    return out, grid


def permute_decoder_residual(
    state: dict[str, torch.Tensor], perm: torch.Tensor, *, in_place: bool = False
) -> dict[str, torch.Tensor]:
    """Permute the residual-stream channels of a uae decoder state dict (an exact symmetry).

    Args:
        state: ``PixelDecoder`` state dict (names without ``decoder.``).
        perm: ``(D,)`` index; new channel ``i`` is old channel ``perm[i]``.
        in_place: Write the permuted values into ``state``'s own tensors (one tensor's copy at a time)
            instead of new ones: for tensors nobody else reads (:class:`Source` with ``reuse``).

    Returns:
        A new dict computing the same function with permuted residual channels.
    """
    rows = (
        "attn.proj.weight",
        "attn.proj.bias",
        "mlp.fc2.weight",
        "mlp.fc2.bias",
        "norm1.weight",
        "norm1.bias",
        "norm2.weight",
        "norm2.bias",
    )
    cols = ("attn.qkv.weight", "mlp.fc1.weight")
    out = {}
    for k, v in state.items():
        if k == "cls_token":
            new = v[..., perm]
        elif k in ("embed.weight", "embed.bias", "norm.weight", "norm.bias") or (
            k.startswith("blocks.") and k.endswith(rows)
        ):
            new = v[perm]  # writes to (or normalises) the residual stream
        elif k == "pred.weight" or (k.startswith("blocks.") and k.endswith(cols)):
            new = v[:, perm]  # reads the residual stream
        else:
            out[k] = v.contiguous()
            continue
        if in_place and v.is_contiguous():
            out[k] = v.copy_(new)
        else:
            out[k] = new.contiguous()
    return out


def decoder_config(dec: Mapping[str, torch.Tensor], decoder_heads: int | None) -> dict[str, Any]:
    dim = dec["embed.weight"].shape[0]
    depth = len({k.split(".")[1] for k in dec if k.startswith("blocks.")})
    hidden = dec["blocks.0.mlp.fc1.weight"].shape[0] if depth else 4 * dim
    patch = math.isqrt(dec["pred.weight"].shape[0] // 3)
    if patch * patch * 3 != dec["pred.weight"].shape[0]:
        raise InputError(f"decoder_pred has {dec['pred.weight'].shape[0]} outputs, not 3 * p * p")
    heads = decoder_heads or DECODER_HEADS_BY_WIDTH.get(dim, max(1, dim // 64))
    return {
        "decoder_dim": dim,
        "decoder_depth": depth,
        "decoder_heads": heads,
        "decoder_mlp_ratio": hidden / dim,
        "decoder_patch_size": patch,
    }


def encoder_config(enc: Mapping[str, torch.Tensor], encoder_heads: int | None) -> dict[str, Any]:
    w = enc["patch_embed.proj.weight"]
    dim, patch = w.shape[0], w.shape[-1]
    depth = len({k.split(".")[1] for k in enc if k.startswith("blocks.")})
    hidden = enc["blocks.0.mlp.fc1.weight"].shape[0] if depth else 4 * dim
    return {
        "encoder_dim": dim,
        "patch_size": patch,
        "encoder_depth": depth,
        "encoder_heads": encoder_heads or max(1, dim // 64),
        "encoder_mlp_ratio": hidden / dim,
        "encoder_reg_tokens": enc["reg_token"].shape[1] if "reg_token" in enc else 0,
        "encoder_init_values": 1e-5 if "blocks.0.ls1.gamma" in enc else None,
        **pos_table_config(enc.get("pos_embed"), "hf_dinov2"),
    }


def pos_table_config(pos_embed: torch.Tensor | None, rule: str) -> dict[str, Any]:
    """``encoder_pos_grid`` / ``encoder_pos_resample`` for a kept ``(1, n*n, C)`` table (``{}`` if none).

    A table with a CLS slot (``1 + n*n`` rows, facebookresearch layout) is accepted too.
    """
    if pos_embed is None:
        return {}
    n = pos_embed.shape[1]
    side = math.isqrt(n) if math.isqrt(n) ** 2 == n else math.isqrt(n - 1)
    if side * side not in (n, n - 1):
        raise InputError(
            f"position table {tuple(pos_embed.shape)} is not a square grid (+ an optional CLS slot)"
        )
    return {"encoder_pos_grid": side, "encoder_pos_resample": rule}


def timm_encoder_config(state: Mapping[str, torch.Tensor], encoder_heads: int | None) -> dict[str, Any]:
    """Encoder config from timm- or facebookresearch-named DINOv2 weights (prefixes as the encoder accepts)."""
    keys = dict(state)
    for prefix in ("module.", "backbone.", "encoder.vit.", "vit."):
        if keys and all(k.startswith(prefix) for k in keys):
            keys = {k[len(prefix) :]: v for k, v in keys.items()}
    if "patch_embed.proj.weight" not in keys:
        raise InputError(
            "encoder weights are neither transformers (embeddings.*) nor timm/facebookresearch (patch_embed.*) DINOv2 weights"
        )
    enc = {"patch_embed.proj.weight": keys["patch_embed.proj.weight"]}
    for k, v in keys.items():
        if k.startswith("blocks."):
            enc[k] = v
    reg = keys.get("reg_token", keys.get("register_tokens"))
    if reg is not None:
        enc["reg_token"] = reg
    if "blocks.0.mlp.fc1.weight" not in enc:
        raise InputError("encoder weights have no blocks.0.mlp.fc1.weight (SwiGLU DINOv2-g is not supported)")
    # Keep the file's table (timm's rule resamples it at run time as transformers does for DINOv2).
    return {**encoder_config(enc, encoder_heads), **pos_table_config(keys.get("pos_embed"), "timm")}


def build_checked(
    config: UAEConfig, state: dict[str, torch.Tensor], what: str, *, reuse: bool = False
):  # -> UAE
    """Build a UAE from a converted state dict; every target key must be filled, shapes must match.

    The model is built without initialising its parameters (:meth:`uae.UAE.from_state_dict`); with
    ``reuse`` (the converter read the release itself: :class:`Source`) it takes the converted tensors
    themselves, else copies, so a caller's state dict never shares memory with the model. Every value
    must be finite (a damaged release is refused, naming the tensor).

    Raises:
        InputError: Keys, shapes or dtypes that do not fill the model (naming them).
        DamagedFileError: NaN or inf values.
    """
    from uae.models.loading import build_empty, check_model_size
    from uae.models.uae import UAE

    check_model_size(config, source=what)
    own = build_empty(UAE, config, source=what).state_dict()
    # Buffers uae defines itself (pixel/latent statistics) keep their values unless provided.
    for k in ("pixel_mean", "pixel_std", "latent_mean", "latent_std"):
        state.setdefault(k, own[k])
    missing, unexpected, bad = state_dict_mismatch(own, state, other_name="converted")
    if bad_dtypes := non_float_tensors(state, own):
        raise InputError(f"{what}: tensors that must be floating point are not: {bad_dtypes}")
    if missing or unexpected or bad:
        raise InputError(
            f"{what}: converted weights do not fill the uae model: missing {missing}; unexpected {unexpected}; "
            f"shape mismatches {bad}"
        )
    if non_finite := non_finite_tensors(state):
        raise DamagedFileError(
            f"{what}: converted weights hold NaN or inf values (a damaged file?): {non_finite}"
        )
    return UAE.from_state_dict(config, state, source=what, copy=not reuse)


def _stats_shape(v: torch.Tensor) -> tuple[int, ...]:
    """A statistics tensor's shape without leading singleton axes beyond three (``(1, C, h, w)`` -> ``(C, h, w)``)."""
    shape = tuple(v.shape)
    while len(shape) > 3 and shape[0] == 1:
        shape = shape[1:]
    return shape


def stats_layout(stats: Mapping[str, torch.Tensor] | None, dim: int, grid: int | None = None) -> str:
    """``"per_channel"`` or ``"per_position"``: the ``UAEConfig.latent_stats`` that holds RAE-style statistics.

    Per-channel: ``(C,)``, ``(C, 1, 1)`` or ``(1, C, 1, 1)``. Per-position: ``(C, grid, grid)`` or
    ``(1, C, grid, grid)`` (RAE's released ``stat.pt``, computed over ``[C, H, W]``).

    Raises:
        InputError: Any other shape (naming it), or per-position statistics when ``grid`` is ``None``.
    """
    layout = "per_channel"
    for name in ("mean", "var"):
        v = (stats or {}).get(name)
        if v is None:
            continue
        shape = _stats_shape(v)
        if shape in ((dim,), (dim, 1, 1)):
            continue
        if grid is not None and shape == (dim, grid, grid):
            layout = "per_position"
            continue
        if grid is None:
            raise InputError(
                f"latent statistics '{name}' has shape {tuple(v.shape)}: this converter stores per-channel "
                f"statistics ({dim},); per-position statistics cannot be converted (recompute them with "
                "`uae encode`)"
            )
        raise InputError(
            f"latent statistics '{name}' has shape {tuple(v.shape)}: expected per-channel ({dim},) / "
            f"({dim}, 1, 1) or per-position ({dim}, {grid}, {grid}) statistics"
        )
    return layout


def latent_stats(
    stats: Mapping[str, torch.Tensor] | None, dim: int, eps: float, grid: int | None = None
) -> dict[str, torch.Tensor]:
    """RAE-style ``{"mean", "var"}`` statistics -> uae's ``latent_mean`` / ``latent_std`` buffers.

    ``latent_std = sqrt(var + eps)`` in float32, the value RAE computes at every call, so uae's
    ``(z - latent_mean) / latent_std`` is bit-identical to RAE's ``(z - mean) / sqrt(var + eps)``.

    Args:
        stats: ``{"mean": ..., "var": ...}`` (either may be absent), shapes as :func:`stats_layout`.
        dim: Latent channels ``C``.
        eps: RAE's ``eps`` (1e-5).
        grid: Latent grid side; ``None`` accepts per-channel statistics only.

    Returns:
        ``{"latent_mean": (C,) or (C, grid, grid), "latent_std": same}`` for the keys present
        (shape per :func:`stats_layout`).
    """
    if not stats:
        return {}
    layout = stats_layout(stats, dim, grid)
    target = (dim,) if layout == "per_channel" else (dim, grid, grid)

    def fit(v: torch.Tensor) -> torch.Tensor:
        v = v.float().reshape(_stats_shape(v))
        if v.ndim == 1:
            v = v.view(dim, 1, 1)
        return v.reshape(dim) if len(target) == 1 else v.expand(*target).contiguous()

    out = {}
    mean, var = stats.get("mean"), stats.get("var")
    if mean is not None:
        out["latent_mean"] = fit(mean)
    if var is not None:
        out["latent_std"] = fit(torch.sqrt(var.float() + eps))
    return out
