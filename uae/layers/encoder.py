"""Unified encoder: a ViT (DINOv2, CLIP, SigLIP2 or MAE family) whose patch tokens become the latent grid.

The ViT is :class:`uae.layers.vit.VisionTransformer`: timm's arithmetic and key names without importing
timm (which costs seconds at start-up); timm is imported only to read DINOv2 weights in their
original layout (:meth:`UnifiedEncoder.load_dinov2_state_dict`).

Position tables are kept at the grid they were trained on and resampled to the input's grid at every
forward, with the rule of the weights' source (:func:`resample_pos_table`), so a converted encoder
computes what its source computes at any input size.
"""

from __future__ import annotations

import copy
import logging
import os
import re
from functools import partial

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from uae.errors import DamagedFileError, InputError, UAELoadError
from uae.layers.vit import VisionTransformer, resample_abs_pos_embed
from uae.utils import non_finite_tensors, non_float_tensors, state_dict_mismatch

logger = logging.getLogger(__name__)

#: Encoder families: the ``VisionTransformer`` options (timm's) that reproduce each transformers model.
#: ``eps`` is the LayerNorm epsilon of every norm; ``final_norm`` says whether the source's
#: ``last_hidden_state`` passes through a final LayerNorm (CLIP's ``post_layernorm`` only normalises
#: the pooled CLS output).
ENCODER_FAMILIES: dict[str, dict] = {
    # Dinov2WithRegistersModel: post-norm-free blocks with LayerScale, GELU, final ``layernorm``.
    "dinov2": {"class_token": True, "pre_norm": False, "act_layer": None, "eps": 1e-6, "final_norm": True},
    # CLIPVisionModel (openai ViT-L/14): ``pre_layrnorm`` after the embeddings, QuickGELU, no patch bias.
    "clip": {
        "class_token": True,
        "pre_norm": True,
        "act_layer": "quick_gelu",
        "eps": 1e-5,
        "final_norm": False,
    },
    # SiglipVisionModel (SigLIP2 fixed-resolution checkpoints): no CLS token, tanh GELU, ``post_layernorm``.
    "siglip2": {
        "class_token": False,
        "pre_norm": False,
        "act_layer": "gelu_tanh",
        "eps": 1e-6,
        "final_norm": True,
    },
    # ViTMAEModel (facebook/vit-mae-base, RAE's MAE encoder): pre-norm ViT blocks, exact GELU, eps 1e-12,
    # final ``layernorm``; no LayerScale, no registers.
    "mae": {"class_token": True, "pre_norm": False, "act_layer": None, "eps": 1e-12, "final_norm": True},
}
#: Position-table resampling rules (see :func:`resample_pos_table`; ``UAEConfig`` lists the same names).
POS_RESAMPLE_RULES = ("timm", "hf_dinov2", "hf_clip", "hf_siglip")
#: Pixel normalisation of each family's image processor (mean, std).
FAMILY_PIXEL_STATS: dict[str, tuple[tuple[float, ...], tuple[float, ...]]] = {
    "dinov2": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
    "clip": ((0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711)),
    "siglip2": ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),
    "mae": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
}


def resample_pos_table(
    table: torch.Tensor, new_size: tuple[int, int], old_size: tuple[int, int], rule: str
) -> torch.Tensor:
    """Resample a patch position table to another grid, exactly as the weights' source does.

    All rules are bicubic with ``align_corners=False`` on the table as an image, sized by the target
    grid (``size=``, no ``scale_factor`` and no ``+0.1`` offset, in transformers 4.57 and 5.x alike):

    * ``"timm"``: timm's ``resample_abs_pos_embed`` (antialiased, computed in float32, returned in the
      table's dtype; skipped when the grids are equal).
    * ``"hf_dinov2"``: transformers ``Dinov2WithRegistersEmbeddings.interpolate_pos_encoding``:
      antialiased, in float32, cast back; skipped only for a square input of the table's size. For
      square tables and inputs whose sides are multiples of the patch size this is the same
      computation as ``"timm"``.
    * ``"hf_clip"`` / ``"hf_siglip"``: ``CLIPVisionEmbeddings`` / ``SiglipVisionEmbeddings``
      ``interpolate_pos_encoding``: no antialiasing and no float32 upcast; skipped for a square
      input of the table's size.

    Args:
        table: ``(1, old_h * old_w, C)`` patch positions (no prefix-token slots).
        new_size: Target grid ``(h, w)``.
        old_size: The table's grid ``(old_h, old_w)``.
        rule: One of :data:`POS_RESAMPLE_RULES`.

    Returns:
        ``(1, h * w, C)`` positions.
    """
    if rule == "timm":
        return resample_abs_pos_embed(table, new_size, old_size)
    if rule not in POS_RESAMPLE_RULES:
        raise InputError(
            f"unknown position resampling rule {rule!r}; expected one of {POS_RESAMPLE_RULES}", param="rule"
        )
    h, w = new_size
    if (
        h == w and h * w == table.shape[1]
    ):  # transformers' shortcut: square input, as many patches as positions
        return table
    dim = table.shape[-1]
    grid = table.reshape(1, old_size[0], old_size[1], dim).permute(0, 3, 1, 2)
    if rule == "hf_dinov2":
        out = F.interpolate(grid.float(), size=(h, w), mode="bicubic", align_corners=False, antialias=True)
        out = out.to(table.dtype)
    else:
        out = F.interpolate(grid, size=(h, w), mode="bicubic", align_corners=False)
    return out.permute(0, 2, 3, 1).reshape(1, h * w, dim)


class _PosResampledViT(VisionTransformer):
    """The ``VisionTransformer`` whose position table is resampled with a source's rule.

    Only ``_pos_embed`` differs (layout ``no_embed_class``: prefix tokens carry no position, a source's
    CLS position is folded into ``cls_token`` at conversion).
    """

    pos_resample: str = "timm"

    def _pos_embed(self, x: torch.Tensor) -> torch.Tensor:
        if self.pos_resample == "timm" or self.pos_embed is None:
            return super()._pos_embed(x)
        b, h, w, c = x.shape  # dynamic_img_size: NHWC patch grid
        pos = resample_pos_table(self.pos_embed, (h, w), tuple(self.patch_embed.grid_size), self.pos_resample)
        x = x.view(b, -1, c) + pos
        prefix = [t.expand(b, -1, -1) for t in (self.cls_token, self.reg_token) if t is not None]
        return torch.cat([*prefix, x], dim=1) if prefix else x


class UnifiedEncoder(nn.Module):
    """ViT encoder producing a latent grid ``(B, C, h, w)`` from one of the :data:`ENCODER_FAMILIES`.

    The latent is the source model's ``last_hidden_state`` without its prefix tokens (CLS and
    registers), as the authors' v2 encoders return it:

    * ``"dinov2"``: final LayerNorm; with ``latent_norm`` it has no affine parameters.
    * ``"clip"``: the last block's output (``CLIPVisionModel`` applies ``post_layernorm`` to the pooled
      CLS token only); ``latent_norm`` adds a LayerNorm without affine parameters.
    * ``"siglip2"``: final LayerNorm (``post_layernorm``); with ``latent_norm`` no affine. No CLS token.
    * ``"mae"``: final LayerNorm (``layernorm``); with ``latent_norm`` no affine (RAE's ``MAEwNorm``).

    Args:
        img_size: Default input side (other multiples of ``patch_size`` work; positions are resampled).
        patch_size: Patch size (14 for DINOv2 and CLIP-L/14, 16 for SigLIP2-B/16).
        embed_dim: Width ``C``.
        depth: Blocks.
        num_heads: Attention heads.
        mlp_ratio: MLP ratio.
        reg_tokens: Register tokens.
        init_values: LayerScale init, or ``None``.
        latent_norm: Use a LayerNorm without affine parameters as the final norm.
        family: One of :data:`ENCODER_FAMILIES`.
        pos_grid: Side of the stored position table (``None``: ``img_size // patch_size``).
        pos_resample: Rule resampling the table to the input grid (:data:`POS_RESAMPLE_RULES`).
    """

    def __init__(
        self,
        img_size: int = 224,
        patch_size: int = 14,
        embed_dim: int = 768,
        depth: int = 12,
        num_heads: int = 12,
        mlp_ratio: float = 4.0,
        reg_tokens: int = 4,
        init_values: float | None = 1e-5,
        latent_norm: bool = True,
        family: str = "dinov2",
        pos_grid: int | None = None,
        pos_resample: str = "timm",
    ) -> None:
        super().__init__()
        if family not in ENCODER_FAMILIES:
            raise InputError(
                f"unknown encoder family {family!r}; expected one of {tuple(ENCODER_FAMILIES)}",
                param="family",
            )
        if pos_resample not in POS_RESAMPLE_RULES:
            raise InputError(
                f"unknown pos_resample {pos_resample!r}; expected one of {POS_RESAMPLE_RULES}",
                param="pos_resample",
            )
        spec = ENCODER_FAMILIES[family]
        self.patch_size = patch_size
        self.embed_dim = embed_dim
        self.latent_norm = latent_norm
        self.family = family
        self.norm_eps = spec["eps"]
        pos_grid = pos_grid if pos_grid is not None else img_size // patch_size
        self.vit = _PosResampledViT(
            img_size=pos_grid * patch_size,
            patch_size=patch_size,
            embed_dim=embed_dim,
            depth=depth,
            num_heads=num_heads,
            mlp_ratio=mlp_ratio,
            init_values=init_values,
            reg_tokens=reg_tokens,
            class_token=spec["class_token"],
            pre_norm=spec["pre_norm"],
            act_layer=spec["act_layer"],
            norm_layer=partial(nn.LayerNorm, eps=spec["eps"]),
        )
        self.vit.pos_resample = pos_resample
        if latent_norm or not spec["final_norm"]:
            self.vit.norm = nn.Identity()

    @property
    def num_prefix_tokens(self) -> int:
        """CLS + register tokens."""
        return self.vit.num_prefix_tokens

    @property
    def pos_grid(self) -> int:
        """Side of the stored position table."""
        return self.vit.patch_embed.grid_size[0]

    def forward_tokens(self, x: torch.Tensor) -> torch.Tensor:
        """All output tokens ``(B, prefix + h*w, C)`` after the final norm."""
        tokens = self.vit.forward_features(x)
        if self.latent_norm:
            tokens = F.layer_norm(tokens, (self.embed_dim,), eps=self.norm_eps)
        return tokens

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Encode normalised images.

        Args:
            x: ``(B, 3, H, W)`` ImageNet-normalised images, ``H`` and ``W`` multiples of ``patch_size``.

        Returns:
            Latent grid ``(B, C, H // patch_size, W // patch_size)``.
        """
        h, w = x.shape[-2] // self.patch_size, x.shape[-1] // self.patch_size
        tokens = self.forward_tokens(x)[:, self.num_prefix_tokens :]
        return rearrange(tokens, "b (h w) c -> b c h w", h=h, w=w)

    def frozen_copy(self) -> UnifiedEncoder:
        """A deep copy with ``requires_grad=False`` in eval mode: the semantic teacher."""
        teacher = copy.deepcopy(self)
        teacher.requires_grad_(False)
        teacher.eval()
        return teacher

    # ------------------------------------------------------------------ pretrained weights
    def load_dinov2_state_dict(self, state_dict: dict[str, torch.Tensor]) -> None:
        """Load DINOv2 weights (timm or original facebookresearch key names) with strict checks.

        Original keys (``register_tokens``, ``mask_token``, ``pos_embed`` with a CLS slot) are converted
        with timm's filter; the position table is resized (timm's rule, once) to this encoder's table
        grid (:attr:`pos_grid`). The final-norm weights are dropped when ``latent_norm`` is on; any
        other missing or unexpected key raises. An encoder built without initialised parameters (on the
        meta device, :func:`uae.models.loading.build_empty`) takes the tensors themselves.

        Raises:
            UAELoadError: Keys or shapes do not match, naming them, or the encoder is not of the DINOv2
                family (CLIP and SigLIP2 weights go through :mod:`uae.convert.hf_encoders`).
            DamagedFileError: Values that are NaN or inf (naming the tensors).
        """
        if self.family != "dinov2":
            raise UAELoadError(
                f"DINOv2 weights cannot initialise a {self.family!r} encoder: convert transformers weights "
                f"with uae.convert.hf_encoders.convert_hf_encoder(state, {self.family!r}) instead"
            )
        state_dict = dict(state_dict)
        if bad_dtypes := non_float_tensors(state_dict):
            raise UAELoadError(f"DINOv2 weights must be floating point; got {bad_dtypes}")
        for prefix in ("module.", "backbone.", "encoder.vit.", "vit."):
            if state_dict and all(k.startswith(prefix) for k in state_dict):
                state_dict = {k[len(prefix) :]: v for k, v in state_dict.items()}
        from timm.models.vision_transformer import checkpoint_filter_fn  # original DINOv2 names (slow import)

        state_dict = checkpoint_filter_fn(state_dict, self.vit)
        dropped = [k for k in state_dict if re.match(r"^(head|fc_norm)\.", k)]
        if self.latent_norm:
            dropped += [k for k in state_dict if k in ("norm.weight", "norm.bias")]
        for k in dropped:
            state_dict.pop(k)
        if dropped:
            logger.info("DINOv2 weights not used by the UAE encoder (by design): %s", dropped)
        missing, unexpected, bad_shapes = state_dict_mismatch(self.vit.state_dict(), state_dict)
        if missing or unexpected or bad_shapes:
            raise UAELoadError(
                "DINOv2 checkpoint does not match the UAE encoder: "
                f"missing keys {missing}; unexpected keys {unexpected}; shape mismatches {bad_shapes}. "
                "Check that the checkpoint's size (S/B/L) and register count match the model config."
            )
        if non_finite := non_finite_tensors(state_dict):
            raise DamagedFileError(f"DINOv2 weights hold NaN or inf values (a damaged file?): {non_finite}")
        on_meta = any(p.device.type == "meta" for p in self.vit.parameters())
        if on_meta:  # take the tensors themselves, in the encoder's dtype
            own = self.vit.state_dict()
            state_dict = {k: v.to(own[k].dtype) for k, v in state_dict.items()}
        self.vit.load_state_dict(state_dict, strict=True, assign=on_meta)


def read_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Read DINOv2 weights: a ``.safetensors`` file or a torch ``.pt/.pth/.bin`` file (``weights_only=True``).

    :func:`uae.files.read_state_dict` with the entries a DINOv2 file may nest its weights in
    (``"model"``, ``"state_dict"``, ``"teacher"``).

    Raises:
        MissingFileError: ``path`` does not exist.
        UnsafeFileError: A pickle that needs code execution.
        DamagedFileError: The file does not hold a state dict.
    """
    from uae.files import read_state_dict as read

    return read(path, entries=("model", "state_dict", "teacher"), what="weights file")
