"""The measured subjects: uae's operations and the peer tokenizers on the same inputs."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn


# ---------------------------------------------------------------------------------------------------
# subjects: uae and its peers
# ---------------------------------------------------------------------------------------------------
def uae_ops(model: nn.Module, x_in: torch.Tensor, latent: torch.Tensor) -> dict[str, Callable[[], Any]]:
    """The three uae operations on a batch (``latent`` from ``model.encode(x_in)``)."""
    return {
        "encode": lambda: model.encode(x_in),
        "decode": lambda: model.decode(latent),
        "reconstruct": lambda: model(x_in),
    }


def rae_equiv_ops(model: nn.Module, x_in: torch.Tensor, latent: torch.Tensor) -> dict[str, Callable[[], Any]]:
    """uae's own encoder and decoder without band split and modulator (validation kept, to isolate the bands)."""
    from uae.utils import check_images

    cfg = model.config

    def encode() -> torch.Tensor:
        check_images(x_in, cfg.patch_size, cfg.img_size)
        return model.encoder(model.normalize(x_in)).float()

    return {
        "encode": encode,
        "decode": lambda: model.render(latent),
        "reconstruct": lambda: model.render(encode()),
    }


def build_sd_vae(output_size: int) -> nn.Module:
    """diffusers ``AutoencoderKL`` with the Stable Diffusion VAE config (random init)."""
    from diffusers import AutoencoderKL

    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        block_out_channels=(128, 256, 512, 512),
        layers_per_block=2,
        latent_channels=4,
        norm_num_groups=32,
        sample_size=output_size,
    )


def sd_vae_ops(vae: nn.Module, x_out: torch.Tensor) -> dict[str, Callable[[], Any]]:
    """SD-VAE takes the output-resolution images in ``[-1, 1]`` (it has no separate encoder resolution)."""
    xs = x_out * 2 - 1
    with torch.inference_mode():
        latent = vae.encode(xs).latent_dist.mode()

    def encode() -> torch.Tensor:
        return vae.encode(xs).latent_dist.mode()

    return {
        "encode": encode,
        "decode": lambda: vae.decode(latent).sample,
        "reconstruct": lambda: vae.decode(encode()).sample,
    }


def build_rae(cfg: Any) -> nn.Module:
    """diffusers ``AutoencoderRAE`` with uae's encoder/decoder sizes (random init, no download).

    Raises:
        ImportError: diffusers (with ``AutoencoderRAE``) or transformers is not installed.
        ValueError: The config has no RAE counterpart (RAE fixes the encoder head width to 64).
    """
    import diffusers

    if not hasattr(diffusers, "AutoencoderRAE"):
        raise ImportError(
            f"diffusers {diffusers.__version__} has no AutoencoderRAE (use the 'rae-equiv' peer)"
        )
    if cfg.encoder_dim % 64 or cfg.encoder_dim // 64 != cfg.encoder_heads:
        raise ValueError(
            f"AutoencoderRAE fixes encoder heads = width / 64; {cfg.name} has {cfg.encoder_dim}/{cfg.encoder_heads}"
        )
    return diffusers.AutoencoderRAE(
        encoder_type="dinov2",
        encoder_hidden_size=cfg.encoder_dim,
        encoder_patch_size=cfg.patch_size,
        encoder_num_hidden_layers=cfg.encoder_depth,
        decoder_hidden_size=cfg.decoder_dim,
        decoder_num_hidden_layers=cfg.decoder_depth,
        decoder_num_attention_heads=cfg.decoder_heads,
        decoder_intermediate_size=round(cfg.decoder_dim * cfg.decoder_mlp_ratio),
        patch_size=cfg.decoder_patch_size,
        encoder_input_size=cfg.img_size,
    )


def rae_ops(rae: nn.Module, x_in: torch.Tensor) -> dict[str, Callable[[], Any]]:
    """RAE takes the encoder-resolution images in ``[0, 1]`` (it normalises internally, like uae)."""
    with torch.inference_mode():
        latent = rae.encode(x_in).latent
    return {
        "encode": lambda: rae.encode(x_in).latent,
        "decode": lambda: rae.decode(latent).sample,
        "reconstruct": lambda: rae(x_in).sample,
    }


def build_dinov2(cfg: Any, resolution: int) -> nn.Module:
    """The bare timm DINOv2 (registers) ViT with the uae encoder's sizes (``pretrained=False``)."""
    import timm

    name = {384: "vit_small_patch14_reg4_dinov2", 1024: "vit_large_patch14_reg4_dinov2"}.get(
        cfg.encoder_dim, "vit_base_patch14_reg4_dinov2"
    )
    return timm.create_model(
        name,
        pretrained=False,
        num_classes=0,
        img_size=resolution,
        patch_size=cfg.patch_size,
        embed_dim=cfg.encoder_dim,
        depth=cfg.encoder_depth,
        num_heads=cfg.encoder_heads,
        mlp_ratio=cfg.encoder_mlp_ratio,
        reg_tokens=cfg.encoder_reg_tokens,
        init_values=cfg.encoder_init_values,
    )


def dinov2_ops(
    vit: nn.Module, x_in: torch.Tensor, mean: torch.Tensor, std: torch.Tensor
) -> dict[str, Callable[[], Any]]:
    """Encode only: ImageNet normalisation + ``forward_features``."""
    return {"encode": lambda: vit.forward_features((x_in - mean) / std)}
