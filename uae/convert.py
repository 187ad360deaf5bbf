"""Converters: weights released by the paper's authors (WeichenFan/UAE v1) and by RAE into uae's layout.

Both releases use the same building blocks, and uae implements them with the same arithmetic, so the
conversion is a renaming with a few exact re-arrangements. Every source key must be consumed and
every target key filled (strict); shapes are checked; anything else is a ``ValueError`` listing keys.
Torch files are read with ``torch.load(weights_only=True)`` only.

Key maps
--------

Encoder: transformers ``Dinov2WithRegistersModel`` names -> timm ``VisionTransformer`` names
(``encoder.vit.*`` in uae). ``N`` is the block index.

=========================================================  ==========================================
source (authors: under ``encoder.encoder.``)                 uae (under ``encoder.vit.``)
=========================================================  ==========================================
``embeddings.cls_token``                                    ``cls_token`` (+ CLS slot of the positions)
``embeddings.register_tokens``                              ``reg_token``
``embeddings.mask_token``                                   dropped (masked-image-modeling only)
``embeddings.position_embeddings`` ``(1, 1+n, C)``          ``pos_embed[:, 1:]`` resampled to the grid
``embeddings.patch_embeddings.projection.{weight,bias}``    ``patch_embed.proj.{weight,bias}``
``encoder.layer.N.norm1.*``                                 ``blocks.N.norm1.*``
``encoder.layer.N.attention.attention.{query,key,value}``   ``blocks.N.attn.qkv`` (concatenated q, k, v)
``encoder.layer.N.attention.output.dense.*``                ``blocks.N.attn.proj.*``
``encoder.layer.N.layer_scale1.lambda1``                    ``blocks.N.ls1.gamma``
``encoder.layer.N.norm2.*``                                 ``blocks.N.norm2.*``
``encoder.layer.N.mlp.fc1.*`` / ``mlp.fc2.*``               ``blocks.N.mlp.fc1.*`` / ``mlp.fc2.*``
``encoder.layer.N.layer_scale2.lambda1``                    ``blocks.N.ls2.gamma``
``layernorm.{weight,bias}``                                 ``norm.*``; absent in RAE / the authors (their
                                                            final norm has no affine: ``latent_norm=True``)
=========================================================  ==========================================

timm's DINOv2-with-registers layout (``no_embed_class``) gives neither CLS nor registers a position,
so the CLS slot of the HF table is folded into ``cls_token`` exactly as timm's ``_convert_dinov2``
does. HF interpolates its 37x37 table to the input grid at every forward; uae resamples it once at
conversion with timm's ``resample_abs_pos_embed`` (bicubic, antialiased), the same operation.

Decoder: MAE-style transformers ViT decoder (RAE's ``GeneralDecoder``) -> ``decoder.*`` (timm ``Block``).

===========================================================  ==========================================
source (authors: under ``decoder.``; RAE: no prefix)          uae (under ``decoder.``)
===========================================================  ==========================================
``decoder_embed.{weight,bias}``                               ``embed.*``
``trainable_cls_token``                                       ``cls_token`` (+ CLS slot of the positions)
``decoder_pos_embed`` ``(1, 1+h*w, D)``                       checked against the MAE sin-cos table,
                                                              not stored (uae computes it)
``decoder_layers.N.layernorm_before.*``                       ``blocks.N.norm1.*``
``decoder_layers.N.attention.attention.{query,key,value}``    ``blocks.N.attn.qkv`` (concatenated)
``decoder_layers.N.attention.output.dense.*``                 ``blocks.N.attn.proj.*``
``decoder_layers.N.layernorm_after.*``                        ``blocks.N.norm2.*``
``decoder_layers.N.intermediate.dense.*``                     ``blocks.N.mlp.fc1.*``
``decoder_layers.N.output.dense.*``                           ``blocks.N.mlp.fc2.*``
``decoder_norm.*``                                            ``norm.*``
``decoder_pred.*``                                            ``pred.*`` (``p*p*3`` outputs, no CLS slot)
===========================================================  ==========================================

The MAE sin-cos table orders its channels ``[sin x, cos x, sin y, cos y]``, timm's (used by uae)
``[sin y, sin x, cos y, cos x]``, with the same frequencies. A transformer is exactly equivariant
to a permutation of its residual-stream channels, so the converter permutes the decoder's residual
channels (rows of ``embed``/``proj``/``fc2``, columns of ``qkv``/``fc1``/``pred``, the LayerNorms and
the CLS token) to match uae's table: the converted decoder computes the same function.

Band modulator (authors only; RAE has none and gets ``num_bands=1`` with an identity modulator):

================================================  ===========================================
source                                            uae
================================================  ===========================================
``freq_modulator.denoiser.0.{weight,bias}``       ``modulator.conv_in.*`` (3x3, ``K*C -> hidden``)
``freq_modulator.denoiser.2.{weight,bias}``       ``modulator.conv_out.*`` (3x3, ``hidden -> C``)
``freq_modulator.band_transform.layers.0.weight`` ``modulator.mix_in``
``freq_modulator.band_transform.layers.1.weight`` ``modulator.mix_out`` (later layers multiplied in)
================================================  ===========================================

Assumptions (documented, checked where the tensors allow):

* The config is derived from tensor shapes: widths, depths, MLP ratios, patch sizes, register count,
  ``K`` and the modulator's hidden width and kernels; the latent grid from ``decoder_pos_embed``.
  Head counts are not visible in the weights: DINOv2 uses 64-channel heads (``C // 64``); decoders
  use RAE's choices (ViT-B 12, ViT-L 16, ViT-XL 16, else ``D // 64``); override with ``*_heads``.
* LayerNorm eps: transformers' ViT-MAE layers use 1e-12, uae's blocks timm's 1e-5 (1e-6 for the final
  norms). The difference changes outputs at the 1e-6 relative level.
* The band split is uae's (smooth radial masks whose last band takes the whole residual); the
  authors' v1 split (hard rings up to ``min(h, w) / 2``) differs, so a converted authors' model is
  the same network on slightly different bands, not a bit-identical copy of their forward pass.
* Pixels are ImageNet-normalised in both releases, as in uae.
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from uae.models.config import UAEConfig
from uae.utils import state_dict_mismatch

logger = logging.getLogger(__name__)

SOURCES = ("authors", "rae")

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


class _Source:
    """A source state dict whose keys must all be consumed (strict conversion)."""

    def __init__(self, state: Mapping[str, torch.Tensor], what: str) -> None:
        self.state = dict(state)
        self.used: set[str] = set()
        self.what = what

    def has(self, key: str) -> bool:
        return key in self.state

    def take(self, key: str) -> torch.Tensor:
        if key not in self.state:
            raise ValueError(f"{self.what}: required key {key!r} is missing")
        self.used.add(key)
        return self.state[key]

    def keys_with(self, prefix: str) -> list[str]:
        return sorted(k for k in self.state if k.startswith(prefix))

    def check_consumed(self) -> None:
        left = sorted(set(self.state) - self.used)
        if left:
            raise ValueError(f"{self.what}: {len(left)} key(s) not understood by the converter: {left}")


def _count_blocks(src: _Source, prefix: str) -> int:
    idx = {int(m.group(1)) for k in src.state if (m := re.match(re.escape(prefix) + r"(\d+)\.", k))}
    if not idx:
        return 0
    if idx != set(range(max(idx) + 1)):
        raise ValueError(f"{src.what}: block indices under {prefix!r} are not contiguous: {sorted(idx)}")
    return max(idx) + 1


def _fused_qkv(src: _Source, prefix: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Concatenate ``{prefix}{query,key,value}.{weight,bias}`` into timm's fused ``qkv`` weight and bias."""
    w = torch.cat([src.take(f"{prefix}{p}.weight") for p in QKV_PARTS], dim=0)
    b = torch.cat([src.take(f"{prefix}{p}.bias") for p in QKV_PARTS], dim=0)
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
    from timm.layers.pos_embed_sincos import build_sincos2d_pos_embed

    if pos.ndim != 3 or pos.shape[0] != 1:
        raise ValueError(f"{what}: decoder_pos_embed must have shape (1, 1+h*w, D), got {tuple(pos.shape)}")
    n, dim = pos.shape[1] - 1, pos.shape[2]
    grid = math.isqrt(n)
    if grid * grid != n or dim % 4:
        raise ValueError(f"{what}: decoder_pos_embed {tuple(pos.shape)} is not a square sin-cos table")
    table = pos[0, 1:].float()
    if torch.allclose(table, mae_sincos_table(dim, grid), atol=1e-4):
        return mae_to_timm_channel_perm(dim), grid
    if torch.allclose(table, build_sincos2d_pos_embed([grid, grid], dim=dim), atol=1e-4):
        return None, grid
    raise ValueError(
        f"{what}: decoder_pos_embed is not the fixed 2-D sin-cos table uae uses (learned or modified "
        "positions cannot be represented)"
    )


# ---------------------------------------------------------------------------------------------- parts
def convert_hf_dinov2(src: _Source, prefix: str, grid: int, latent_norm: bool) -> dict[str, torch.Tensor]:
    """Map a transformers Dinov2(WithRegisters) state dict (under ``prefix``) to timm names.

    Args:
        src: Source dict; consumed keys are recorded.
        prefix: Key prefix of the encoder (``"encoder.encoder."`` for the authors, ``""`` for HF files).
        grid: Target latent grid side; the position table is resampled to it.
        latent_norm: Whether the target drops the final norm's affine (its weights are then consumed
            and discarded when present).

    Returns:
        ``{timm_name: tensor}`` for ``UnifiedEncoder.vit``.
    """
    from timm.layers import resample_abs_pos_embed

    out: dict[str, torch.Tensor] = {}
    e = prefix + "embeddings."
    pos = src.take(e + "position_embeddings")
    out["cls_token"] = src.take(e + "cls_token") + pos[:, :1]
    if src.has(e + "register_tokens"):
        out["reg_token"] = src.take(e + "register_tokens")
    if src.has(e + "mask_token"):
        src.take(e + "mask_token")  # only used for masked-image-modeling training
    patch_pos = pos[:, 1:]
    n = patch_pos.shape[1]
    side = math.isqrt(n)
    if side * side != n:
        raise ValueError(f"{src.what}: position_embeddings {tuple(pos.shape)} is not 1 + a square grid")
    if side != grid:
        patch_pos = resample_abs_pos_embed(
            patch_pos, new_size=[grid, grid], old_size=[side, side], num_prefix_tokens=0
        )
    out["pos_embed"] = patch_pos
    out["patch_embed.proj.weight"] = src.take(e + "patch_embeddings.projection.weight")
    out["patch_embed.proj.bias"] = src.take(e + "patch_embeddings.projection.bias")
    depth = _count_blocks(src, prefix + "encoder.layer.")
    for i in range(depth):
        s, t = f"{prefix}encoder.layer.{i}.", f"blocks.{i}."
        out[t + "attn.qkv.weight"], out[t + "attn.qkv.bias"] = _fused_qkv(src, s + "attention.attention.")
        for a, b in ENCODER_BLOCK_MAP.items():
            if a.startswith("layer_scale") and not src.has(s + a):
                continue  # no LayerScale in this checkpoint (checked against the target later)
            out[t + b] = src.take(s + a)
    for p in ("weight", "bias"):
        if src.has(prefix + f"layernorm.{p}"):
            v = src.take(prefix + f"layernorm.{p}")
            if not latent_norm:
                out[f"norm.{p}"] = v
    return out


def convert_mae_decoder(src: _Source, prefix: str) -> tuple[dict[str, torch.Tensor], int]:
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
    depth = _count_blocks(src, prefix + "decoder_layers.")
    for i in range(depth):
        s, t = f"{prefix}decoder_layers.{i}.", f"blocks.{i}."
        out[t + "attn.qkv.weight"], out[t + "attn.qkv.bias"] = _fused_qkv(src, s + "attention.attention.")
        for a, b in DECODER_BLOCK_MAP.items():
            out[t + b] = src.take(s + a)
    if perm is not None:
        out = permute_decoder_residual(out, perm)
    return out, grid


def permute_decoder_residual(state: dict[str, torch.Tensor], perm: torch.Tensor) -> dict[str, torch.Tensor]:
    """Permute the residual-stream channels of a uae decoder state dict (an exact symmetry).

    Args:
        state: ``PixelDecoder`` state dict (names without ``decoder.``).
        perm: ``(D,)`` index; new channel ``i`` is old channel ``perm[i]``.

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
            v = v[..., perm]
        elif k in ("embed.weight", "embed.bias", "norm.weight", "norm.bias") or (
            k.startswith("blocks.") and k.endswith(rows)
        ):
            v = v[perm]  # writes to (or normalises) the residual stream
        elif k == "pred.weight" or (k.startswith("blocks.") and k.endswith(cols)):
            v = v[:, perm]  # reads the residual stream
        out[k] = v.contiguous()
    return out


def _decoder_config(dec: Mapping[str, torch.Tensor], decoder_heads: int | None) -> dict[str, Any]:
    dim = dec["embed.weight"].shape[0]
    depth = len({k.split(".")[1] for k in dec if k.startswith("blocks.")})
    hidden = dec["blocks.0.mlp.fc1.weight"].shape[0] if depth else 4 * dim
    patch = math.isqrt(dec["pred.weight"].shape[0] // 3)
    if patch * patch * 3 != dec["pred.weight"].shape[0]:
        raise ValueError(f"decoder_pred has {dec['pred.weight'].shape[0]} outputs, not 3 * p * p")
    heads = decoder_heads or DECODER_HEADS_BY_WIDTH.get(dim, max(1, dim // 64))
    return {
        "decoder_dim": dim,
        "decoder_depth": depth,
        "decoder_heads": heads,
        "decoder_mlp_ratio": hidden / dim,
        "decoder_patch_size": patch,
    }


def _encoder_config(enc: Mapping[str, torch.Tensor], encoder_heads: int | None) -> dict[str, Any]:
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
    }


def _timm_encoder_config(state: Mapping[str, torch.Tensor], encoder_heads: int | None) -> dict[str, Any]:
    """Encoder config from timm- or facebookresearch-named DINOv2 weights (prefixes as the encoder accepts)."""
    keys = dict(state)
    for prefix in ("module.", "backbone.", "encoder.vit.", "vit."):
        if keys and all(k.startswith(prefix) for k in keys):
            keys = {k[len(prefix) :]: v for k, v in keys.items()}
    if "patch_embed.proj.weight" not in keys:
        raise ValueError(
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
        raise ValueError("encoder weights have no blocks.0.mlp.fc1.weight (SwiGLU DINOv2-g is not supported)")
    return _encoder_config(enc, encoder_heads)


def _build_checked(config: UAEConfig, state: dict[str, torch.Tensor], what: str):  # -> UAE
    """Build a UAE from a converted state dict; every target key must be filled, shapes must match."""
    from uae.models.uae import UAE

    model = UAE(config)
    own = model.state_dict()
    # Buffers uae defines itself (pixel/latent statistics) keep their values unless provided.
    for k in ("pixel_mean", "pixel_std", "latent_mean", "latent_std"):
        state.setdefault(k, own[k])
    missing, unexpected, bad = state_dict_mismatch(own, state, other_name="converted")
    if missing or unexpected or bad:
        raise ValueError(
            f"{what}: converted weights do not fill the uae model: missing {missing}; unexpected {unexpected}; "
            f"shape mismatches {bad}"
        )
    model.load_state_dict({k: v.to(own[k].dtype) for k, v in state.items()}, strict=True)
    return model.eval()


def _latent_stats(stats: Mapping[str, torch.Tensor] | None, dim: int, eps: float) -> dict[str, torch.Tensor]:
    """RAE-style ``{"mean", "var"}`` statistics -> uae's ``latent_mean`` / ``latent_std`` buffers."""
    if not stats:
        return {}
    out = {}
    mean, var = stats.get("mean"), stats.get("var")
    for name, v in (("mean", mean), ("var", var)):
        if v is not None and v.numel() != dim:
            raise ValueError(
                f"latent statistics '{name}' has shape {tuple(v.shape)}: uae stores per-channel statistics ({dim},); "
                "per-position statistics cannot be converted (recompute them with `uae encode`)"
            )
    if mean is not None:
        out["latent_mean"] = mean.reshape(dim).float()
    if var is not None:
        out["latent_std"] = torch.sqrt(var.reshape(dim).float() + eps)
    return out


# ---------------------------------------------------------------------------------------------- public API
def authors_to_uae(
    state: Mapping[str, torch.Tensor],
    *,
    encoder_heads: int | None = None,
    decoder_heads: int | None = None,
    stats: Mapping[str, torch.Tensor] | None = None,
    stats_eps: float = 1e-5,
    name: str = "uae_authors_converted",
):  # -> UAE
    """Convert the authors' v1 ``UnifiedUAE`` state dict (the ``"model"`` or ``"ema"`` entry) to a UAE.

    Args:
        state: Keys ``encoder.encoder.*``, ``decoder.*``, ``freq_modulator.*``.
        encoder_heads: Encoder attention heads (default ``C // 64``, as in DINOv2).
        decoder_heads: Decoder attention heads (default by width, see :data:`DECODER_HEADS_BY_WIDTH`).
        stats: Optional ``{"mean", "var"}`` latent statistics (per channel).
        stats_eps: ``eps`` of their normalisation ``(z - mean) / sqrt(var + eps)``.
        name: ``config.name`` of the result.

    Returns:
        A :class:`uae.UAE` in eval mode (``band_mixing=True``).

    Raises:
        ValueError: Unknown/missing keys or inconsistent shapes, listing them.
    """
    src = _Source(state, "authors' checkpoint")
    dec, grid = convert_mae_decoder(src, "decoder.")
    latent_norm = not src.has("encoder.encoder.layernorm.weight")
    enc = convert_hf_dinov2(src, "encoder.encoder.", grid, latent_norm)
    cfg: dict[str, Any] = {**_encoder_config(enc, encoder_heads), **_decoder_config(dec, decoder_heads)}
    c = cfg["encoder_dim"]

    mod: dict[str, torch.Tensor] = {}
    w_in = src.take("freq_modulator.denoiser.0.weight")
    mod["conv_in.weight"] = w_in
    mod["conv_in.bias"] = src.take("freq_modulator.denoiser.0.bias")
    mod["conv_out.weight"] = src.take("freq_modulator.denoiser.2.weight")
    mod["conv_out.bias"] = src.take("freq_modulator.denoiser.2.bias")
    if w_in.shape[1] % c:
        raise ValueError(
            f"freq_modulator.denoiser.0 has {w_in.shape[1]} input channels, not a multiple of C={c}"
        )
    k = w_in.shape[1] // c
    mix_keys = src.keys_with("freq_modulator.band_transform.layers.")
    n_mix = _count_blocks(src, "freq_modulator.band_transform.layers.")
    if n_mix:
        layers = [src.take(f"freq_modulator.band_transform.layers.{i}.weight") for i in range(n_mix)]
        if any(w.shape != (k, k) for w in layers):
            raise ValueError(
                f"band_transform weights must be ({k}, {k}); got {[tuple(w.shape) for w in layers]}"
            )
        mod["mix_in"] = layers[0]
        mix_out = torch.eye(k, dtype=layers[0].dtype)
        for w in layers[1:]:
            mix_out = w @ mix_out  # layers apply in order: x -> W0 x -> W1 W0 x -> ...
        mod["mix_out"] = mix_out
    elif mix_keys:
        raise ValueError(f"unexpected band_transform keys {mix_keys}")
    src.check_consumed()

    config = UAEConfig(
        name=name,
        img_size=grid * cfg["patch_size"],
        encoder_weights="",
        latent_norm=latent_norm,
        num_bands=k,
        modulator_hidden_dim=w_in.shape[0],
        modulator_in_kernel=w_in.shape[-1],
        modulator_out_kernel=mod["conv_out.weight"].shape[-1],
        band_mixing=n_mix > 0,
        **cfg,
    )
    full = {f"encoder.vit.{a}": v for a, v in enc.items()}
    full.update({f"decoder.{a}": v for a, v in dec.items()})
    full.update({f"modulator.{a}": v for a, v in mod.items()})
    full.update(_latent_stats(stats, c, stats_eps))
    return _build_checked(config, full, "authors' checkpoint")


def rae_to_uae(
    decoder_state: Mapping[str, torch.Tensor],
    encoder_state: Mapping[str, torch.Tensor] | None = None,
    *,
    encoder_heads: int | None = None,
    decoder_heads: int | None = None,
    stats: Mapping[str, torch.Tensor] | None = None,
    stats_eps: float = 1e-5,
    name: str | None = None,
):  # -> UAE
    """Convert an RAE decoder (``model.pt``) plus DINOv2-with-registers encoder weights to a UAE with ``K=1``.

    The band modulator is the identity (both convs zero), so the model is RAE's autoencoder:
    ``decoder(LayerNorm(DINOv2(x)))``.

    Args:
        decoder_state: RAE ``GeneralDecoder`` state dict (``decoder_embed.*``, ``decoder_layers.N.*``, ...;
            a ``decoder.`` prefix is accepted).
        encoder_state: DINOv2 with registers weights in transformers (``embeddings.*``,
            ``encoder.layer.N.*``), timm or facebookresearch naming. ``None`` builds the encoder
            shape from the latent width and loads ``config.encoder_weights`` (the timm Hub id) from the
            Hub cache, or fails naming the file to supply.
        encoder_heads, decoder_heads, stats, stats_eps: As in :func:`authors_to_uae`.
        name: ``config.name`` (default ``uae_rae_base_p14_dinov2`` for a 768-wide latent).

    Returns:
        A :class:`uae.UAE` in eval mode.

    Raises:
        ValueError: Unknown/missing keys or inconsistent shapes.
        FileNotFoundError: No encoder weights given and none in the Hub cache.
    """
    from uae.models.uae import UAE

    dstate = dict(decoder_state)
    if dstate and all(k.startswith("decoder.") for k in dstate):
        dstate = {k[len("decoder.") :]: v for k, v in dstate.items()}
    src = _Source(dstate, "RAE decoder checkpoint")
    dec, grid = convert_mae_decoder(src, "")
    src.check_consumed()
    dcfg = _decoder_config(dec, decoder_heads)
    c = dec["embed.weight"].shape[1]

    enc: dict[str, torch.Tensor] | None = None
    if encoder_state is not None and any(k.startswith("embeddings.") for k in encoder_state):
        esrc = _Source(encoder_state, "DINOv2 encoder weights (transformers naming)")
        enc = convert_hf_dinov2(esrc, "", grid, latent_norm=True)
        esrc.check_consumed()
        ecfg = _encoder_config(enc, encoder_heads)
    elif encoder_state is not None:
        ecfg = _timm_encoder_config(encoder_state, encoder_heads)
    else:
        ecfg = {
            "encoder_dim": c,
            "patch_size": 14,
            "encoder_depth": DINOV2_DEPTH_BY_WIDTH.get(c, 12),
            "encoder_heads": encoder_heads or max(1, c // 64),
            "encoder_mlp_ratio": 4.0,
            "encoder_reg_tokens": 4,
            "encoder_init_values": 1e-5,
        }
    if ecfg["encoder_dim"] != c:
        raise ValueError(f"encoder width {ecfg['encoder_dim']} does not match the decoder's latent width {c}")
    default_name = "uae_rae_base_p14_dinov2" if c == 768 else f"uae_rae_c{c}_converted"
    config = UAEConfig(
        name=name or default_name,
        img_size=grid * ecfg["patch_size"],
        encoder_weights=DINOV2_TIMM_IDS.get(c, ""),
        latent_norm=True,
        num_bands=1,
        num_semantic_bands=1,
        modulator_hidden_dim=8,
        modulator_in_kernel=1,
        modulator_out_kernel=1,
        **ecfg,
        **dcfg,
    )
    if enc is None:
        # timm / facebookresearch naming (or the Hub cache): the encoder's own strict loader.
        model = UAE(config)
        if encoder_state is not None:
            model.encoder.load_dinov2_state_dict(dict(encoder_state))
        else:
            model.load_encoder_weights()
        enc = {k: v for k, v in model.encoder.vit.state_dict().items()}
    hidden = config.modulator_hidden_dim
    full = {f"encoder.vit.{a}": v for a, v in enc.items()}
    full.update({f"decoder.{a}": v for a, v in dec.items()})
    full.update(
        {
            "modulator.conv_in.weight": torch.zeros(hidden, c, 1, 1),
            "modulator.conv_in.bias": torch.zeros(hidden),
            "modulator.conv_out.weight": torch.zeros(c, hidden, 1, 1),
            "modulator.conv_out.bias": torch.zeros(c),
        }
    )
    full.update(_latent_stats(stats, c, stats_eps))
    return _build_checked(config, full, "RAE checkpoint")


# ---------------------------------------------------------------------------------------------- files
def load_torch_state(path: str | os.PathLike, entry: str | None = None) -> dict[str, torch.Tensor]:
    """Read a state dict from ``.safetensors`` or a torch file (``weights_only=True``).

    Args:
        path: The file.
        entry: For torch files holding a dict of state dicts (``{"model", "ema", ...}``), which one to use;
            ``None`` picks ``"ema"``, then ``"model"``, then ``"state_dict"``, else the dict itself.

    Raises:
        FileNotFoundError: The file does not exist.
        ValueError: The file cannot be read as a state dict, or ``entry`` is absent.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint file not found: {path}")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except Exception as e:  # corrupt or not a safetensors file
            raise ValueError(f"cannot read {path} as safetensors: {e}") from e
    try:
        obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as e:  # pickle with arbitrary objects, corrupt file, ...
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ValueError(f"cannot read {path} as a torch state dict with weights_only=True: {first}") from e
    if not isinstance(obj, dict):
        raise ValueError(f"{path} does not hold a dict (got {type(obj).__name__})")
    nested = [k for k in ("ema", "model", "state_dict") if isinstance(obj.get(k), dict)]
    if entry is not None:
        if not isinstance(obj.get(entry), dict):
            raise ValueError(f"{path} has no state dict entry {entry!r}; entries: {sorted(map(str, obj))}")
        obj = obj[entry]
    elif nested:
        logger.info("Using the %r entry of %s", nested[0], path)
        obj = obj[nested[0]]
    tensors = {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    if len(tensors) != len(obj):
        others = sorted(str(k) for k, v in obj.items() if not isinstance(v, torch.Tensor))
        raise ValueError(f"{path}: entries that are not tensors: {others[:10]}")
    return tensors


def convert_main(argv: Sequence[str]) -> int:
    """``uae convert --from authors|rae FILE --out DIR``: write a converted model in save_pretrained layout."""
    parser = argparse.ArgumentParser(
        prog="uae convert",
        description="Convert the authors' v1 UAE checkpoint (.pt with 'model'/'ema') or an RAE decoder (model.pt) "
        "into uae's layout (config.json + model.safetensors).",
    )
    parser.add_argument("--from", dest="source", choices=SOURCES, required=True, help="checkpoint family")
    parser.add_argument("file", help="checkpoint file (.pt/.pth/.bin/.safetensors)")
    parser.add_argument("--out", required=True, help="output directory (created)")
    parser.add_argument(
        "--encoder-weights",
        default=None,
        help="rae: DINOv2-with-registers weights (transformers, timm or facebookresearch file); default: the "
        "timm Hub id from the Hub cache",
    )
    parser.add_argument(
        "--entry", default=None, help="authors: state dict entry to use (default 'ema', else 'model')"
    )
    parser.add_argument("--stats", default=None, help="optional latent statistics file with 'mean' and 'var'")
    parser.add_argument(
        "--encoder-heads", type=int, default=None, help="encoder attention heads (default C // 64)"
    )
    parser.add_argument(
        "--decoder-heads", type=int, default=None, help="decoder attention heads (default by width)"
    )
    parser.add_argument("--name", default=None, help="config.name of the converted model")
    args = parser.parse_args(list(argv))

    stats = load_torch_state(args.stats) if args.stats else None
    if args.source == "authors":
        state = load_torch_state(args.file, args.entry)
        model = authors_to_uae(
            state,
            encoder_heads=args.encoder_heads,
            decoder_heads=args.decoder_heads,
            stats=stats,
            name=args.name or "uae_authors_converted",
        )
    else:
        state = load_torch_state(args.file, args.entry)
        enc = load_torch_state(args.encoder_weights) if args.encoder_weights else None
        model = rae_to_uae(
            state,
            enc,
            encoder_heads=args.encoder_heads,
            decoder_heads=args.decoder_heads,
            stats=stats,
            name=args.name,
        )
    out = Path(args.out)
    model.save_pretrained(out)
    c = model.config
    print(
        f"wrote {out}: {c.name}, input {c.img_size}px -> output {c.output_size}px, latent "
        f"{'x'.join(map(str, c.latent_shape))}, K={c.num_bands}, "
        f"{sum(p.numel() for p in model.parameters()) / 1e6:.1f}M parameters"
    )
    return 0
