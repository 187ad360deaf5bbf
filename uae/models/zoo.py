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
    pretrained=PretrainedSource(
        recipe=_STAGE3_B,
        notes="not trained; no published checkpoint (the authors and RAE release none with a DINOv2-S encoder). "
        "Train with the B recipe and model_name=uae_small_p14_dinov2.",
    ),
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
    pretrained=PretrainedSource(
        recipe=_STAGE3_B,
        notes="not trained by uae; paper target on ImageNet-1K val 256px: PSNR 29.65, SSIM 0.88, rFID 0.19. "
        "The authors' v1 release (Hub weepiess2383/UAE, .pt) converts to this layout with "
        "`uae convert --from authors` (their K and band-mixing layer are kept).",
    ),
    description="Paper's B config: DINOv2-B/14 (registers), 16x16x768 latent, K=4, ViT-XL decoder, 224 -> 256 px.",
)
def uae_base_p14_dinov2() -> UAEConfig:
    return UAEConfig(name="uae_base_p14_dinov2", **VIT_XL_DECODER)


@register_model(
    pretrained=PretrainedSource(
        recipe=_STAGE3_B,
        notes="not trained; no published checkpoint. Expected below the ViT-XL decoder's PSNR.",
    ),
    description="DINOv2-B/14 encoder with a ViT-B decoder (fits one consumer GPU), 224 -> 256 px.",
)
def uae_base_p14_dinov2_vitb_decoder() -> UAEConfig:
    return UAEConfig(name="uae_base_p14_dinov2_vitb_decoder", **VIT_B_DECODER)


@register_model(
    pretrained=PretrainedSource(
        recipe=_STAGE3_L,
        notes="not trained by uae; paper target on ImageNet-1K val 256px: PSNR 33.08, rFID 0.16.",
    ),
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


@register_model(
    pretrained=PretrainedSource(
        notes="RAE (nyu-visionx/RAE-collections) as a UAE with one band: `uae convert --from rae model.pt "
        "--encoder-weights <DINOv2-B-reg4 weights>` fills it. RAE reports PSNR 18.05, rFID 2.04 (paper table).",
    ),
    description="RAE in uae's layout: DINOv2-B/14 (registers) encoder, 16x16x768 latent, K=1 (identity "
    "modulator), ViT-XL decoder, 224 -> 256 px.",
)
def uae_rae_base_p14_dinov2() -> UAEConfig:
    return UAEConfig(
        name="uae_rae_base_p14_dinov2",
        num_bands=1,
        num_semantic_bands=1,
        modulator_hidden_dim=8,
        modulator_in_kernel=1,
        modulator_out_kernel=1,
        **VIT_XL_DECODER,
    )


@register_model(
    pretrained=PretrainedSource(
        local_dir="uae_demo",
        status="available",
        recipe="recipes/demo.yaml",
        notes="embedded demo (checkpoints/uae_demo): trained on CPU with recipes/demo.yaml on offline sample photos "
        "(scripts/make_demo_data.py); random-init encoder, the teacher is its frozen initial copy.",
    ),
    description="Embedded demo: 64 px, ViT 128/3 encoder (random init, patch 8), 8x8x128 latent, K=3, "
    "ViT 128/4 decoder, 64 -> 64 px.",
)
def uae_demo() -> UAEConfig:
    return UAEConfig(
        name="uae_demo",
        img_size=64,
        patch_size=8,
        encoder_dim=128,
        encoder_depth=3,
        encoder_heads=4,
        encoder_mlp_ratio=4.0,
        encoder_reg_tokens=4,
        encoder_init_values=None,
        encoder_weights="",
        num_bands=3,
        num_semantic_bands=1,
        modulator_hidden_dim=128,
        decoder_dim=128,
        decoder_depth=4,
        decoder_heads=4,
        decoder_mlp_ratio=4.0,
        decoder_patch_size=8,
    )
