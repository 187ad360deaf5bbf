"""The named UAE configurations (the zoo). Decoders follow RAE's sizes."""

from __future__ import annotations

from uae.models.config import UAEConfig
from uae.models.registry import PretrainedSource, register_model

_STAGE3_B = "recipes/stage3_gan_dinov2_b.yaml"
_STAGE3_L = "recipes/stage3_gan_dinov2_l.yaml"

# Decoder sizes (width, depth, heads, mlp ratio), as shipped by RAE.
VIT_B_DECODER = {"decoder_dim": 768, "decoder_depth": 12, "decoder_heads": 12, "decoder_mlp_ratio": 4.0}
VIT_L_DECODER = {"decoder_dim": 1024, "decoder_depth": 24, "decoder_heads": 16, "decoder_mlp_ratio": 4.0}
VIT_XL_DECODER = {
    "decoder_dim": 1152,
    "decoder_depth": 28,
    "decoder_heads": 16,
    "decoder_mlp_ratio": 4096 / 1152,
}


@register_model(
    pretrained=PretrainedSource(notes="tiny random configuration for tests; never trained"),
    description="Tiny test configuration (32 px, 8x8x32 latent, K=3).",
)
def uae_test() -> UAEConfig:
    return UAEConfig(
        name="uae_test",
        img_size=32,
        patch_size=4,
        encoder_dim=32,
        encoder_depth=2,
        encoder_heads=2,
        encoder_weights="",
        num_bands=3,
        modulator_hidden_dim=32,
        decoder_dim=32,
        decoder_depth=1,
        decoder_heads=2,
        decoder_mlp_ratio=2.0,
        decoder_patch_size=4,
    )


@register_model(
    pretrained=PretrainedSource(recipe=_STAGE3_B),
    description="DINOv2-S/14 (registers) encoder, 16x16x384 latent, K=4, ViT-B decoder, 224 -> 256 px.",
)
def uae_small_p14_dinov2() -> UAEConfig:
    return UAEConfig(
        name="uae_small_p14_dinov2",
        encoder_dim=384,
        encoder_depth=12,
        encoder_heads=6,
        encoder_weights="timm/vit_small_patch14_reg4_dinov2.lvd142m",
        modulator_hidden_dim=128,
        **VIT_B_DECODER,
    )


@register_model(
    pretrained=PretrainedSource(recipe=_STAGE3_B),
    description="Paper's B config: DINOv2-B/14 (registers), 16x16x768 latent, K=4, ViT-XL decoder, 224 -> 256 px.",
)
def uae_base_p14_dinov2() -> UAEConfig:
    return UAEConfig(name="uae_base_p14_dinov2", **VIT_XL_DECODER)


@register_model(
    pretrained=PretrainedSource(recipe=_STAGE3_B),
    description="DINOv2-B/14 encoder with a ViT-B decoder (fits one consumer GPU), 224 -> 256 px.",
)
def uae_base_p14_dinov2_vitb_decoder() -> UAEConfig:
    return UAEConfig(name="uae_base_p14_dinov2_vitb_decoder", **VIT_B_DECODER)


@register_model(
    pretrained=PretrainedSource(recipe=_STAGE3_L),
    description="Paper's L config: DINOv2-L/14 (registers), 16x16x1024 latent, K=4, ViT-XL decoder, 224 -> 256 px.",
)
def uae_large_p14_dinov2() -> UAEConfig:
    return UAEConfig(
        name="uae_large_p14_dinov2",
        encoder_dim=1024,
        encoder_depth=24,
        encoder_heads=16,
        encoder_weights="timm/vit_large_patch14_reg4_dinov2.lvd142m",
        modulator_hidden_dim=320,
        **VIT_XL_DECODER,
    )
