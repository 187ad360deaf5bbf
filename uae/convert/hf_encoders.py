"""transformers vision encoders -> uae's :class:`~uae.layers.encoder.UnifiedEncoder` (``encoder.vit.*``).

One key map per encoder family, for state dicts saved by transformers 4.x and 5.x, with or without a
prefix (``encoder.encoder.`` in the authors' v1 checkpoints, ``vision_model.`` in CLIP/SigLIP
files, ...). The maps are strict: every source key under the prefix is consumed or dropped with a
stated reason, every target is filled, shapes are checked when the encoder is built. The encoder
config is read from tensor shapes; attention heads are not visible in the weights and default to
``C // 64`` (DINOv2-B 12, CLIP-L 16, SigLIP2-B 12).

Position tables are kept at their source grid (DINOv2-B: 37x37, from ``image_size`` 518) and
resampled at every forward with the source's rule (``encoder_pos_resample``), so the converted
encoder matches transformers at any input size. The source's CLS position slot is folded into
``cls_token`` (uae's layout gives prefix tokens no position; exact, it is one addition).

========================================================  ======================================
transformers (4.x name / 5.x name where it differs)        uae (under ``encoder.vit.``)
========================================================  ======================================
**Dinov2WithRegistersModel**
``embeddings.cls_token`` (+ CLS slot of the table)         ``cls_token``
``embeddings.register_tokens``                             ``reg_token``
``embeddings.mask_token``                                  dropped (masked-image-modeling only)
``embeddings.position_embeddings`` ``(1, 1+n*n, C)``       ``pos_embed`` ``(1, n*n, C)``
``embeddings.patch_embeddings.projection.*``               ``patch_embed.proj.*``
``encoder.layer.N.attention.attention.{query,key,value}``  ``blocks.N.attn.qkv`` (concatenated)
  / ``encoder.layer.N.attention.{q,k,v}_proj``
``encoder.layer.N.attention.output.dense`` / ``o_proj``    ``blocks.N.attn.proj``
``encoder.layer.N.norm{1,2}`` / ``mlp.fc{1,2}``            ``blocks.N.norm{1,2}`` / ``mlp.fc{1,2}``
``encoder.layer.N.layer_scale{1,2}.lambda1``               ``blocks.N.ls{1,2}.gamma``
``layernorm.*``                                            ``norm.*``, or dropped with ``latent_norm``
**CLIPVisionModel** (5.x: no ``vision_model.`` level)
``embeddings.class_embedding`` (+ CLS slot)                ``cls_token``
``embeddings.position_embedding.weight`` ``(1+n*n, C)``    ``pos_embed``
``embeddings.patch_embedding.weight`` (no bias)            ``patch_embed.proj.weight``
``pre_layrnorm.*``                                         ``norm_pre.*``
``encoder.layers.N.self_attn.{q,k,v}_proj``                ``blocks.N.attn.qkv`` (concatenated)
``encoder.layers.N.self_attn.out_proj``                    ``blocks.N.attn.proj``
``encoder.layers.N.layer_norm{1,2}``                       ``blocks.N.norm{1,2}``
``encoder.layers.N.mlp.fc{1,2}``                           ``blocks.N.mlp.fc{1,2}``
``post_layernorm.*``                                       dropped (normalises the pooled CLS only)
**SiglipVisionModel** (SigLIP2 fixed resolution; 5.x: no ``vision_model.`` level)
``embeddings.position_embedding.weight`` ``(n*n, C)``      ``pos_embed`` (no CLS token)
``embeddings.patch_embedding.*``                           ``patch_embed.proj.*``
``encoder.layers.N.*``                                     as CLIP
``post_layernorm.*``                                       ``norm.*``, or dropped with ``latent_norm``
``head.*``                                                 dropped (attention-pooling head)
**ViTMAEModel** (5.x: ``layers.N`` instead of ``encoder.layer.N``)
``embeddings.cls_token`` (+ CLS slot of the table)         ``cls_token``
``embeddings.position_embeddings`` ``(1, 1+n*n, C)``       ``pos_embed`` (the file's table, as saved)
``embeddings.patch_embeddings.projection.*``               ``patch_embed.proj.*``
``encoder.layer.N.attention.attention.{query,key,value}``  ``blocks.N.attn.qkv`` (concatenated)
  / ``layers.N.attention.{q,k,v}_proj``
``encoder.layer.N.attention.output.dense`` / ``o_proj``    ``blocks.N.attn.proj``
``encoder.layer.N.layernorm_{before,after}``               ``blocks.N.norm{1,2}``
``encoder.layer.N.{intermediate,output}.dense``            ``blocks.N.mlp.fc{1,2}``
  / ``layers.N.mlp.fc{1,2}``
``layernorm.*``                                            ``norm.*``, or dropped with ``latent_norm``
========================================================  ======================================

Full two-tower files (``CLIPModel``, ``SiglipModel``) are accepted with the ``vision_model.``
prefix; their text tower and projection/logit keys are dropped with that reason. A whole
``ViTMAEForPreTraining`` file (``facebook/vit-mae-base``) is accepted with the ``vit.`` prefix; its
pixel decoder (``decoder.*``, used only for masked pre-training) is dropped with that reason.

ViT-MAE at inference (as RAE's ``MAEwNorm`` runs it): ``mask_ratio = 0`` and ``noise = arange``, so
the "random masking" keeps every patch in its own order (an identity), and
``interpolate_pos_encoding=True`` resamples the table with bicubic interpolation, no antialiasing and no
float32 upcast (the ``"hf_clip"`` rule; transformers' own size check there compares the patch count
minus one with the table, so it always interpolates, and a same-size bicubic resampling is exact).

Longer than 500 lines because it holds the four families' key maps side by side (one table above,
one function each), so that each map can be read against the others.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch

from uae.convert.common import QKV_PARTS, Source, count_blocks, encoder_config, fused_qkv
from uae.errors import InputError

logger = logging.getLogger(__name__)

#: The suffix that identifies each family's patch embedding (used to find the prefix).
PATCH_KEYS = {
    "dinov2": "embeddings.patch_embeddings.projection.weight",
    "clip": "embeddings.patch_embedding.weight",
    "siglip2": "embeddings.patch_embedding.weight",
    "mae": "embeddings.patch_embeddings.projection.weight",
}
#: Keys of two-tower checkpoints that are not part of the vision tower.
TEXT_TOWER_PREFIXES = ("text_model.", "visual_projection.", "text_projection.", "logit_scale", "logit_bias")
#: Keys of a ``ViTMAEForPreTraining`` file (beside its ``vit.`` encoder) that are not part of the encoder.
MAE_PRETRAINING_PREFIXES = ("decoder.",)
#: How each family's transformers model resamples its position table (``encoder_pos_resample``).
POS_RULES = {"dinov2": "hf_dinov2", "clip": "hf_clip", "siglip2": "hf_siglip", "mae": "hf_clip"}
_CLIP_BLOCK_MAP = {
    "self_attn.out_proj": "attn.proj",
    "layer_norm1": "norm1",
    "layer_norm2": "norm2",
    "mlp.fc1": "mlp.fc1",
    "mlp.fc2": "mlp.fc2",
}
_DINO_BLOCK_MAP = {"norm1": "norm1", "norm2": "norm2", "mlp.fc1": "mlp.fc1", "mlp.fc2": "mlp.fc2"}


@dataclass
class HFEncoder:
    """A converted transformers encoder.

    Attributes:
        state: ``{"encoder.vit.<timm name>": tensor}`` for a UAE (strip ``"encoder."`` for a bare
            :class:`~uae.layers.encoder.UnifiedEncoder`).
        config: :class:`~uae.UAEConfig` fields read from the tensors (``encoder_*``, ``patch_size``,
            ``latent_norm`` and the native ``img_size`` ``= encoder_pos_grid * patch_size``).
        dropped: Source keys not used, with the reason.
    """

    state: dict[str, torch.Tensor]
    config: dict[str, Any]
    dropped: dict[str, str] = field(default_factory=dict)

    def encoder_kwargs(self, img_size: int | None = None) -> dict[str, Any]:
        """Keyword arguments of :class:`~uae.layers.encoder.UnifiedEncoder` for this encoder."""
        c = self.config
        return {
            "img_size": img_size or c["img_size"],
            "patch_size": c["patch_size"],
            "embed_dim": c["encoder_dim"],
            "depth": c["encoder_depth"],
            "num_heads": c["encoder_heads"],
            "mlp_ratio": c["encoder_mlp_ratio"],
            "reg_tokens": c["encoder_reg_tokens"],
            "init_values": c["encoder_init_values"],
            "latent_norm": c["latent_norm"],
            "family": c["encoder_family"],
            "pos_grid": c["encoder_pos_grid"],
            "pos_resample": c["encoder_pos_resample"],
        }


def _drop(src: Source, key: str, dropped: dict[str, str], reason: str) -> None:
    src.take(key)
    dropped[key] = reason


def _square_side(n: int, what: str, shape: tuple[int, ...]) -> int:
    side = math.isqrt(n)
    if side * side != n:
        raise InputError(f"{what}: position table {shape} does not hold a square grid of patch positions")
    return side


def _vit_embeddings(src: Source, e: str, out: dict[str, torch.Tensor]) -> int:
    """The embeddings of a DINOv2-style ViT (``position_embeddings (1, 1+n, C)`` with a CLS slot, ``cls_token``,
    ``patch_embeddings.projection``) into ``out`` in timm's names; the CLS position is folded into the token.

    Returns:
        The side of the square patch grid the position table was trained on.
    """
    pos = src.take(e + "position_embeddings")
    if pos.ndim != 3 or pos.shape[0] != 1:
        raise InputError(f"{src.what}: position_embeddings must be (1, 1+n, C), got {tuple(pos.shape)}")
    side = _square_side(pos.shape[1] - 1, src.what, tuple(pos.shape))
    out["cls_token"] = src.take(e + "cls_token") + pos[:, :1]
    out["pos_embed"] = pos[:, 1:]
    out["patch_embed.proj.weight"] = src.take(e + "patch_embeddings.projection.weight")
    out["patch_embed.proj.bias"] = src.take(e + "patch_embeddings.projection.bias")
    return side


def _config(
    out: Mapping[str, torch.Tensor], family: str, pos_grid: int, latent_norm: bool, heads: int | None
) -> dict[str, Any]:
    """The encoder's config fields, read from the converted tensors' shapes (as :func:`encoder_config`)."""
    shapes = {k: v for k, v in out.items() if k != "pos_embed"}  # the table's layout is set here
    return {
        **encoder_config(shapes, heads),
        "encoder_family": family,
        "encoder_pos_grid": pos_grid,
        "encoder_pos_resample": POS_RULES[family],
        "latent_norm": latent_norm,
        "img_size": pos_grid * out["patch_embed.proj.weight"].shape[-1],
    }


# ---------------------------------------------------------------------------------------------- families
def dinov2_from_hf(
    src: Source, prefix: str = "", *, latent_norm: bool | None = None, encoder_heads: int | None = None
) -> HFEncoder:
    """Map a ``Dinov2WithRegistersModel`` state dict under ``prefix`` (keys are consumed from ``src``).

    Args:
        src: Source dict; consumed keys are recorded (the caller checks that all were consumed).
        prefix: Key prefix of the encoder (``"encoder.encoder."`` for the authors, ``""`` for HF files).
        latent_norm: Drop the final ``layernorm`` affine (the authors' and RAE's encoders). ``None``:
            when the checkpoint has no ``layernorm.weight`` (they removed it).
        encoder_heads: Attention heads (default ``C // 64``).
    """
    out: dict[str, torch.Tensor] = {}
    dropped: dict[str, str] = {}
    e = prefix + "embeddings."
    side = _vit_embeddings(src, e, out)
    if src.has(e + "register_tokens"):
        out["reg_token"] = src.take(e + "register_tokens")
    if src.has(e + "mask_token"):
        _drop(src, e + "mask_token", dropped, "mask token: only used for masked-image-modeling training")
    for i in range(count_blocks(src, prefix + "encoder.layer.")):
        s, t = f"{prefix}encoder.layer.{i}.", f"blocks.{i}."
        if src.has(s + "attention.q_proj.weight"):  # transformers 5.x
            names = tuple(f"{s}attention.{p}_proj" for p in "qkv")
            proj = s + "attention.o_proj"
        else:
            names = tuple(f"{s}attention.attention.{p}" for p in QKV_PARTS)
            proj = s + "attention.output.dense"
        out[t + "attn.qkv.weight"], out[t + "attn.qkv.bias"] = fused_qkv(src, names)
        out[t + "attn.proj.weight"] = src.take(proj + ".weight")
        out[t + "attn.proj.bias"] = src.take(proj + ".bias")
        for a, b in _DINO_BLOCK_MAP.items():
            out[t + b + ".weight"] = src.take(s + a + ".weight")
            out[t + b + ".bias"] = src.take(s + a + ".bias")
        for n in (1, 2):
            if src.has(f"{s}layer_scale{n}.lambda1"):
                out[f"{t}ls{n}.gamma"] = src.take(f"{s}layer_scale{n}.lambda1")
    latent_norm = _final_norm(src, prefix + "layernorm.", latent_norm, out, dropped)
    cfg = _config(out, "dinov2", side, latent_norm, encoder_heads)
    return HFEncoder({f"encoder.vit.{k}": v for k, v in out.items()}, cfg, dropped)


def _final_norm(
    src: Source, key: str, latent_norm: bool | None, out: dict[str, torch.Tensor], dropped: dict[str, str]
) -> bool:
    """Map the final norm ``{key}{weight,bias}`` to ``norm.*``, or drop its affine when ``latent_norm``.

    ``latent_norm=None`` decides from the file: a checkpoint without the norm's weights had it removed.
    Returns the decided ``latent_norm``.
    """
    if latent_norm is None:
        latent_norm = not src.has(key + "weight")
    for p in ("weight", "bias"):
        if src.has(key + p):
            if latent_norm:
                _drop(src, key + p, dropped, "final norm affine: latent_norm uses a LayerNorm without affine")
            else:
                out[f"norm.{p}"] = src.take(key + p)
    return latent_norm


def _position_table(src: Source, e: str, dropped: dict[str, str], cls_slot: bool) -> tuple[torch.Tensor, int]:
    """CLIP/SigLIP ``{e}position_embedding.weight`` ``((1 if cls_slot) + n*n, C)`` and its grid side ``n``.

    The ``position_ids`` buffer that old transformers versions saved is dropped (it is an arange).
    """
    pos = src.take(e + "position_embedding.weight")
    if pos.ndim != 2:
        rows = "1+n" if cls_slot else "n"
        raise InputError(f"{src.what}: position_embedding.weight must be ({rows}, C), got {tuple(pos.shape)}")
    side = _square_side(pos.shape[0] - int(cls_slot), src.what, tuple(pos.shape))
    if src.has(e + "position_ids"):
        _drop(src, e + "position_ids", dropped, "position ids buffer: arange, recomputed")
    return pos, side


def _clip_like_blocks(src: Source, prefix: str, out: dict[str, torch.Tensor]) -> None:
    for i in range(count_blocks(src, prefix + "encoder.layers.")):
        s, t = f"{prefix}encoder.layers.{i}.", f"blocks.{i}."
        names = tuple(f"{s}self_attn.{p}_proj" for p in "qkv")
        out[t + "attn.qkv.weight"], out[t + "attn.qkv.bias"] = fused_qkv(src, names)
        for a, b in _CLIP_BLOCK_MAP.items():
            out[t + b + ".weight"] = src.take(s + a + ".weight")
            out[t + b + ".bias"] = src.take(s + a + ".bias")


def clip_from_hf(
    src: Source, prefix: str = "", *, latent_norm: bool = False, encoder_heads: int | None = None
) -> HFEncoder:
    """Map a ``CLIPVisionModel`` state dict under ``prefix`` (e.g. ``"vision_model."``).

    The latent is ``last_hidden_state`` without the CLS token: the last block's output, with no final
    norm (``post_layernorm`` only normalises the pooled CLS output; the authors' v2 CLIP encoder
    returns ``last_hidden_state[:, 1:]``). ``latent_norm=True`` adds uae's LayerNorm without affine.

    Args:
        src: Source dict (consumed keys are recorded).
        prefix: Key prefix of the vision transformer.
        latent_norm: See :class:`~uae.layers.encoder.UnifiedEncoder` (``False`` reproduces HF).
        encoder_heads: Attention heads (default ``C // 64``).
    """
    out: dict[str, torch.Tensor] = {}
    dropped: dict[str, str] = {}
    e = prefix + "embeddings."
    pos, side = _position_table(src, e, dropped, cls_slot=True)
    out["cls_token"] = (src.take(e + "class_embedding") + pos[0]).reshape(1, 1, -1)
    out["pos_embed"] = pos[1:].unsqueeze(0)
    out["patch_embed.proj.weight"] = src.take(e + "patch_embedding.weight")
    out["norm_pre.weight"] = src.take(prefix + "pre_layrnorm.weight")
    out["norm_pre.bias"] = src.take(prefix + "pre_layrnorm.bias")
    _clip_like_blocks(src, prefix, out)
    for p in ("weight", "bias"):
        if src.has(f"{prefix}post_layernorm.{p}"):
            _drop(
                src, f"{prefix}post_layernorm.{p}", dropped, "post_layernorm: applied to the pooled CLS only"
            )
    cfg = _config(out, "clip", side, latent_norm, encoder_heads)
    return HFEncoder({f"encoder.vit.{k}": v for k, v in out.items()}, cfg, dropped)


def siglip2_from_hf(
    src: Source, prefix: str = "", *, latent_norm: bool | None = None, encoder_heads: int | None = None
) -> HFEncoder:
    """Map a ``SiglipVisionModel`` state dict (SigLIP2 fixed-resolution towers) under ``prefix``.

    The latent is ``last_hidden_state`` (after ``post_layernorm``; there is no CLS token). The
    attention-pooling ``head`` is dropped.

    Args:
        src: Source dict (consumed keys are recorded).
        prefix: Key prefix of the vision transformer.
        latent_norm: Drop the ``post_layernorm`` affine (the authors' v2 encoder). ``None``: when the
            checkpoint has no ``post_layernorm.weight``.
        encoder_heads: Attention heads (default ``C // 64``).
    """
    out: dict[str, torch.Tensor] = {}
    dropped: dict[str, str] = {}
    e = prefix + "embeddings."
    pos, side = _position_table(src, e, dropped, cls_slot=False)
    out["pos_embed"] = pos.unsqueeze(0)
    out["patch_embed.proj.weight"] = src.take(e + "patch_embedding.weight")
    out["patch_embed.proj.bias"] = src.take(e + "patch_embedding.bias")
    _clip_like_blocks(src, prefix, out)
    latent_norm = _final_norm(src, prefix + "post_layernorm.", latent_norm, out, dropped)
    for key in src.keys_with(prefix + "head."):
        _drop(src, key, dropped, "attention-pooling head: the latent is last_hidden_state")
    cfg = _config(out, "siglip2", side, latent_norm, encoder_heads)
    return HFEncoder({f"encoder.vit.{k}": v for k, v in out.items()}, cfg, dropped)


def mae_from_hf(
    src: Source, prefix: str = "", *, latent_norm: bool | None = None, encoder_heads: int | None = None
) -> HFEncoder:
    """Map a ``ViTMAEModel`` state dict (transformers 4.x or 5.x names) under ``prefix`` (``"vit."`` in
    a ``ViTMAEForPreTraining`` file).

    The latent is ``last_hidden_state[:, 1:]`` after the final ``layernorm`` with nothing masked (RAE's
    ``MAEwNorm``: ``mask_ratio = 0``, ``noise = arange``). The position table is the file's own (the
    released MAE tables are fixed sin-cos values; they are used as saved, never recomputed).

    Args:
        src: Source dict (consumed keys are recorded).
        prefix: Key prefix of the encoder.
        latent_norm: Drop the final ``layernorm`` affine (RAE removes it). ``None``: when the checkpoint has
            no ``layernorm.weight``.
        encoder_heads: Attention heads (default ``C // 64``).
    """
    out: dict[str, torch.Tensor] = {}
    dropped: dict[str, str] = {}
    e = prefix + "embeddings."
    side = _vit_embeddings(src, e, out)
    v5 = src.has(prefix + "layers.0.attention.q_proj.weight")
    blocks = prefix + ("layers." if v5 else "encoder.layer.")
    for i in range(count_blocks(src, blocks)):
        s, t = f"{blocks}{i}.", f"blocks.{i}."
        if v5:
            names = tuple(f"{s}attention.{p}_proj" for p in "qkv")
            parts = {"attention.o_proj": "attn.proj", "mlp.fc1": "mlp.fc1", "mlp.fc2": "mlp.fc2"}
        else:
            names = tuple(f"{s}attention.attention.{p}" for p in QKV_PARTS)
            parts = {
                "attention.output.dense": "attn.proj",
                "intermediate.dense": "mlp.fc1",
                "output.dense": "mlp.fc2",
            }
        out[t + "attn.qkv.weight"], out[t + "attn.qkv.bias"] = fused_qkv(src, names)
        parts.update({"layernorm_before": "norm1", "layernorm_after": "norm2"})
        for a, b in parts.items():
            out[t + b + ".weight"] = src.take(s + a + ".weight")
            out[t + b + ".bias"] = src.take(s + a + ".bias")
    latent_norm = _final_norm(src, prefix + "layernorm.", latent_norm, out, dropped)
    cfg = _config(out, "mae", side, latent_norm, encoder_heads)
    return HFEncoder({f"encoder.vit.{k}": v for k, v in out.items()}, cfg, dropped)


FAMILY_CONVERTERS = {
    "dinov2": dinov2_from_hf,
    "clip": clip_from_hf,
    "siglip2": siglip2_from_hf,
    "mae": mae_from_hf,
}


def _convert_family(
    src: Source, family: str, prefix: str, latent_norm: bool | None, encoder_heads: int | None
) -> HFEncoder:
    """The family's converter with its own ``latent_norm`` default when ``latent_norm`` is ``None``."""
    kwargs: dict[str, Any] = {"encoder_heads": encoder_heads}
    if latent_norm is not None:
        kwargs["latent_norm"] = latent_norm
    return FAMILY_CONVERTERS[family](src, prefix, **kwargs)


def convert_encoder(
    src: Source,
    family: str,
    prefix: str,
    *,
    latent_norm: bool | None = None,
    encoder_heads: int | None = None,
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """One ``family`` encoder inside a release's state dict: its uae weights and :class:`~uae.UAEConfig` fields.

    The converters of whole releases (the authors' v1 and v2, RAE) use this; the caller checks that
    every key of ``src`` was consumed.

    Args:
        src: The release's source dict (the encoder's keys are consumed).
        family: ``"dinov2"``, ``"clip"``, ``"siglip2"`` or ``"mae"``.
        prefix: Key prefix of the encoder (``"encoder.encoder."`` in the authors' checkpoints).
        latent_norm: Final-norm handling (``None``: the family's default, see the family functions).
        encoder_heads: Attention heads (default ``C // 64``).

    Returns:
        (``{"encoder.vit.<timm name>": tensor}``, the encoder's config fields without ``img_size``: the
        table's native size; a release's input size comes from its own config).
    """
    enc = _convert_family(src, family, prefix, latent_norm, encoder_heads)
    for key, reason in sorted(enc.dropped.items()):
        logger.debug("%s: %s not used (%s)", src.what, key, reason)
    cfg = dict(enc.config)
    cfg.pop("img_size")
    return enc.state, cfg


def detect_family(state: Mapping[str, torch.Tensor]) -> str | None:
    """Which transformers vision encoder a state dict holds, from its key names (``None``: none of them).

    DINOv2 with registers (``register_tokens`` / ``layer_scale``), ViT-MAE (``layernorm_before``), CLIP
    (``class_embedding``) and SigLIP (``patch_embedding`` without a class embedding) name their keys
    differently in transformers 4.x and 5.x alike, so one file is never two families.
    """
    keys = list(state)

    def has(suffix: str) -> bool:
        return any(k.endswith(suffix) for k in keys)

    if has(PATCH_KEYS["dinov2"]):  # DINOv2 and ViT-MAE share the patch embedding's name
        if has("embeddings.register_tokens") or has("layer_scale1.lambda1"):
            return "dinov2"
        return "mae" if has("layernorm_before.weight") else None
    if has(PATCH_KEYS["clip"]):
        return "clip" if has("embeddings.class_embedding") else "siglip2"
    return None


def find_prefix(state: Mapping[str, torch.Tensor], family: str) -> str:
    """The key prefix of a ``family`` vision encoder in ``state`` (``""`` for a bare HF file).

    Raises:
        InputError: Unknown family, or no (or more than one) patch embedding of that family.
    """
    if family not in PATCH_KEYS:
        raise InputError(f"unknown encoder family {family!r}; expected one of {tuple(PATCH_KEYS)}")
    suffix = PATCH_KEYS[family]
    found = sorted(k[: -len(suffix)] for k in state if k.endswith(suffix))
    if len(found) != 1:
        what = "no key" if not found else f"{len(found)} keys"
        raise InputError(
            f"{what} ending in {suffix!r}: not one transformers {family} vision encoder (pass prefix=)"
        )
    return found[0]


def convert_hf_encoder(
    state: Mapping[str, torch.Tensor],
    family: str,
    *,
    prefix: str | None = None,
    latent_norm: bool | None = None,
    encoder_heads: int | None = None,
) -> HFEncoder:
    """Convert a whole transformers vision-encoder state dict strictly.

    Args:
        state: ``Dinov2WithRegistersModel``, ``CLIPVisionModel``/``CLIPModel``,
            ``SiglipVisionModel``/``SiglipModel`` or ``ViTMAEModel``/``ViTMAEForPreTraining`` weights
            (transformers 4.x or 5.x names).
        family: ``"dinov2"``, ``"clip"``, ``"siglip2"`` or ``"mae"``.
        prefix: Key prefix of the encoder; found from the patch embedding when ``None``.
        latent_norm: Final-norm handling (see the family functions; ``None`` picks their default).
        encoder_heads: Attention heads (default ``C // 64``).

    Returns:
        The converted :class:`HFEncoder`.

    Raises:
        InputError: Keys outside the encoder (other than a two-tower file's text tower), keys left
            unconsumed, or inconsistent shapes, naming them.
    """
    prefix = find_prefix(state, family) if prefix is None else prefix
    src = Source(state, f"transformers {family} encoder weights")
    dropped: dict[str, str] = {}
    outside, why = (
        TEXT_TOWER_PREFIXES,
        "text tower / projection of a two-tower model: uae uses the vision tower",
    )
    root = prefix[: -len("vision_model.")] if prefix.endswith("vision_model.") else None
    if family == "mae" and prefix.endswith("vit."):
        root = prefix[: -len("vit.")]
        outside, why = (
            MAE_PRETRAINING_PREFIXES,
            "MAE pre-training decoder: uae uses the encoder (ViTMAEModel)",
        )
    for key in list(src.state):
        if root is not None and key.startswith(root) and key[len(root) :].startswith(outside):
            _drop(src, key, dropped, why)
        elif not key.startswith(prefix):
            raise InputError(f"{src.what}: key {key!r} is outside the encoder prefix {prefix!r}")
    enc = _convert_family(src, family, prefix, latent_norm, encoder_heads)
    src.check_consumed()
    enc.dropped = {**dropped, **enc.dropped}
    return enc


def encoder_from_hf(state: Mapping[str, torch.Tensor], family: str, *, img_size: int | None = None, **kwargs):
    """Build a :class:`~uae.layers.encoder.UnifiedEncoder` (eval mode) from transformers weights.

    Args:
        state: As :func:`convert_hf_encoder`.
        family: ``"dinov2"``, ``"clip"``, ``"siglip2"`` or ``"mae"``.
        img_size: Default input side (default: the table's native size).
        **kwargs: ``prefix``, ``latent_norm``, ``encoder_heads`` as in :func:`convert_hf_encoder`.

    Raises:
        InputError: As :func:`convert_hf_encoder`, or a converted tensor does not fit.
    """
    from uae.layers.encoder import UnifiedEncoder
    from uae.utils import state_dict_mismatch

    enc = convert_hf_encoder(state, family, **kwargs)
    model = UnifiedEncoder(**enc.encoder_kwargs(img_size))
    sd = {k[len("encoder.") :]: v for k, v in enc.state.items()}
    missing, unexpected, bad = state_dict_mismatch(model.state_dict(), sd, other_name="converted")
    if missing or unexpected or bad:
        raise InputError(
            f"converted {family} weights do not fill the encoder: missing {missing}; unexpected {unexpected}; "
            f"shape mismatches {bad}"
        )
    model.load_state_dict(sd, strict=True)
    return model.eval()
