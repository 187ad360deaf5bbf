"""Unified encoder: a timm DINOv2-shaped ViT whose patch tokens become the latent grid."""

from __future__ import annotations

import copy
import logging
import os
import re
from pathlib import Path

import torch
import torch.nn.functional as F
from einops import rearrange
from timm.models.vision_transformer import VisionTransformer, checkpoint_filter_fn
from torch import nn

from uae.utils import non_float_tensors, state_dict_mismatch

logger = logging.getLogger(__name__)


class UnifiedEncoder(nn.Module):
    """ViT encoder (DINOv2 with registers shapes) producing a latent grid ``(B, C, h, w)``.

    Prefix tokens (CLS and registers) are dropped; with ``latent_norm`` the final LayerNorm has no
    affine parameters (the DINOv2 ``norm.*`` weights are then not used).

    Args:
        img_size: Default input side (other multiples of ``patch_size`` work; positions are interpolated).
        patch_size: Patch size (14 for DINOv2).
        embed_dim: Width ``C``.
        depth: Blocks.
        num_heads: Attention heads.
        mlp_ratio: MLP ratio.
        reg_tokens: Register tokens.
        init_values: LayerScale init, or ``None``.
        latent_norm: Use a LayerNorm without affine parameters as the final norm.
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
    ) -> None:
        super().__init__()
        self.patch_size = patch_size
        self.embed_dim = embed_dim
        self.latent_norm = latent_norm
        self.vit = VisionTransformer(
            img_size=img_size,
            patch_size=patch_size,
            embed_dim=embed_dim,
            depth=depth,
            num_heads=num_heads,
            mlp_ratio=mlp_ratio,
            init_values=init_values,
            reg_tokens=reg_tokens,
            no_embed_class=True,
            class_token=True,
            num_classes=0,
            dynamic_img_size=True,
        )
        if latent_norm:
            self.vit.norm = nn.Identity()

    @property
    def num_prefix_tokens(self) -> int:
        """CLS + register tokens."""
        return self.vit.num_prefix_tokens

    def forward_tokens(self, x: torch.Tensor) -> torch.Tensor:
        """All output tokens ``(B, prefix + h*w, C)`` after the final norm."""
        tokens = self.vit.forward_features(x)
        if self.latent_norm:
            tokens = F.layer_norm(tokens, (self.embed_dim,), eps=1e-6)
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
        with timm's filter; the position embedding is resized to this encoder's grid. The final-norm
        weights are dropped when ``latent_norm`` is on; any other missing or unexpected key raises.

        Raises:
            ValueError: Keys or shapes do not match, naming them.
        """
        state_dict = dict(state_dict)
        if bad_dtypes := non_float_tensors(state_dict):
            raise ValueError(f"DINOv2 weights must be floating point; got {bad_dtypes}")
        for prefix in ("module.", "backbone.", "encoder.vit.", "vit."):
            if state_dict and all(k.startswith(prefix) for k in state_dict):
                state_dict = {k[len(prefix) :]: v for k, v in state_dict.items()}
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
            raise ValueError(
                "DINOv2 checkpoint does not match the UAE encoder: "
                f"missing keys {missing}; unexpected keys {unexpected}; shape mismatches {bad_shapes}. "
                "Check that the checkpoint's size (S/B/L) and register count match the model config."
            )
        self.vit.load_state_dict(state_dict, strict=True)


def read_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Read a ``.safetensors`` file or a torch ``.pt/.pth/.bin`` file (``weights_only=True``).

    A torch file holding a dict with a ``"model"``, ``"state_dict"`` or ``"teacher"`` entry is unwrapped.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"weights file not found: {path}")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    obj = torch.load(str(path), map_location="cpu", weights_only=True)
    for key in ("model", "state_dict", "teacher"):
        if isinstance(obj, dict) and key in obj and isinstance(obj[key], dict):
            obj = obj[key]
            break
    if not isinstance(obj, dict):
        raise ValueError(f"{path} does not hold a state dict (got {type(obj).__name__})")
    return obj
