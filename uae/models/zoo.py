"""The named UAE architectures (the zoo) and the table of weights that exist for them.

Architectures are configs (:func:`uae.models.registry.register_model`); weights are tagged entries
``arch.tag`` in a separate table (:mod:`uae.models.pretrained`), like timm's ``pretrained_cfg``.
A release's converted config is derived from its weights (band scheme, K, norms), so
``create_model(arch)`` is uae's recipe for that encoder and ``create_model(arch, pretrained=True)``
is the release as published. Decoders follow RAE's sizes.
"""

from __future__ import annotations

from uae.models.config import UAEConfig
from uae.models.pretrained import PretrainedCfg, PretrainedFile, register_pretrained
from uae.models.registry import register_alias, register_model

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
# RAE's frozen-encoder autoencoder as a UAE: one band, identity modulator.
RAE_BANDS = {
    "num_bands": 1,
    "num_semantic_bands": 1,
    "modulator_hidden_dim": 8,
    "modulator_in_kernel": 1,
    "modulator_out_kernel": 1,
}


@register_model(
    notes="tiny random configuration for tests; never trained",
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
    recipe=_STAGE3_B,
    notes="recipe only: no weights published (the authors and RAE release none with a DINOv2-S encoder). "
    "Train with the B recipe and model_name=uae_small_p14_dinov2.",
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
    recipe=_STAGE3_B,
    notes="uae recipe (smooth FFT bands, K=4); the authors' released weights are the tags "
    "authors_v2 (default) and authors_v1, converted from their checkpoints.",
    description="Paper's B config: DINOv2-B/14 (registers), 16x16x768 latent, K=4, ViT-XL decoder, 224 -> 256 px.",
)
def uae_base_p14_dinov2() -> UAEConfig:
    return UAEConfig(name="uae_base_p14_dinov2", **VIT_XL_DECODER)


@register_model(
    recipe=_STAGE3_B,
    notes="recipe only: no published checkpoint. Expected below the ViT-XL decoder's PSNR.",
    description="DINOv2-B/14 encoder with a ViT-B decoder (fits one consumer GPU), 224 -> 256 px.",
)
def uae_base_p14_dinov2_vitb_decoder() -> UAEConfig:
    return UAEConfig(name="uae_base_p14_dinov2_vitb_decoder", **VIT_B_DECODER)


@register_model(
    recipe=_STAGE3_L,
    notes="recipe only: no published checkpoint; paper target on ImageNet-1K val 256px: PSNR 33.08, rFID 0.16.",
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
    notes="the authors' v2 CLIP-L/14 release (tag authors_v2); no uae recipe for CLIP encoders.",
    description="OpenAI CLIP ViT-L/14 encoder (224 px), 16x16x1024 latent, ViT-XL decoder, 224 -> 256 px.",
)
def uae_large_p14_clip() -> UAEConfig:
    return UAEConfig(
        name="uae_large_p14_clip",
        encoder_dim=1024,
        encoder_depth=24,
        encoder_heads=16,
        encoder_reg_tokens=0,
        encoder_init_values=None,
        encoder_weights="",
        modulator_hidden_dim=320,
        encoder_family="clip",
        **VIT_XL_DECODER,
    )


@register_model(
    notes="the authors' v2 SigLIP2-B/16 release (tag authors_v2); no uae recipe for SigLIP2 encoders.",
    description="SigLIP2 ViT-B/16 encoder (256 px), 16x16x768 latent, ViT-XL decoder, 256 -> 256 px.",
)
def uae_base_p16_siglip2() -> UAEConfig:
    return UAEConfig(
        name="uae_base_p16_siglip2",
        img_size=256,
        patch_size=16,
        encoder_reg_tokens=0,
        encoder_init_values=None,
        encoder_weights="",
        encoder_family="siglip2",
        **VIT_XL_DECODER,
    )


#: RAE's encoders other than DINOv2 (RAE's configs/stage1/pretrained/{SigLIP2,MAE}.yaml): 256 px, patch 16.
RAE_SIGLIP2_ENCODER = {
    "img_size": 256,
    "patch_size": 16,
    "encoder_reg_tokens": 0,
    "encoder_init_values": None,
    "encoder_weights": "",
    "encoder_family": "siglip2",
}
RAE_MAE_ENCODER = {**RAE_SIGLIP2_ENCODER, "encoder_family": "mae"}


def _rae(name: str, decoder: dict, size: str, encoder: dict | None = None, what: str = "") -> None:
    what = what or "DINOv2-B/14 (registers) encoder, 16x16x768 latent"
    px = "256 -> 256 px" if encoder else "224 -> 256 px"

    def config() -> UAEConfig:
        return UAEConfig(name=name, **(encoder or {}), **RAE_BANDS, **decoder)

    register_model(
        name,
        notes="RAE (bytetriper/RAE) as a UAE with one band; weights: tag rae, converted from "
        "nyu-visionx/RAE-collections. RAE trains only the decoder (the encoder is frozen).",
        description=f"RAE: {what}, K=1 (identity modulator), {size} decoder, {px}.",
    )(config)


_rae("rae_base_p14_dinov2_vitxl", VIT_XL_DECODER, "ViT-XL")
_rae("rae_base_p14_dinov2_vitl", VIT_L_DECODER, "ViT-L")
_rae("rae_base_p14_dinov2_vitb", VIT_B_DECODER, "ViT-B")
_rae(
    "rae_base_p16_siglip2_vitxl",
    VIT_XL_DECODER,
    "ViT-XL",
    RAE_SIGLIP2_ENCODER,
    "SigLIP2-B/16 encoder (google/siglip2-base-patch16-256), 16x16x768 latent",
)
_rae(
    "rae_base_p16_mae_vitxl",
    VIT_XL_DECODER,
    "ViT-XL",
    RAE_MAE_ENCODER,
    "MAE ViT-B/16 encoder (facebook/vit-mae-base, nothing masked), 16x16x768 latent",
)
register_alias("uae_rae_base_p14_dinov2", "rae_base_p14_dinov2_vitxl")


@register_model(
    recipe="recipes/demo.yaml",
    notes="trained by uae, embedded (checkpoints/uae_demo): trained on CPU with recipes/demo.yaml on offline "
    "sample photos (scripts/make_demo_data.py); random-init encoder, the teacher is its frozen initial copy.",
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


# ================================================================================================
# Weights (timm-style pretrained table). The first tag of an architecture is its default.
# Metrics are the authors' own reported numbers (their evaluation code), quoted, never ours.
# ================================================================================================
_UAE_REPO = "weepiess2383/UAE"
_UAE_LICENSE_NOTE = (
    "Apache-2.0: LICENSE of the authors' code (github.com/WeichenFan/UAE, branch old_uae); the Hub repo's "
    "own card was not checked here. The encoders inside inherit their terms (DINOv2 Apache-2.0, OpenAI CLIP "
    "MIT, SigLIP2 Apache-2.0); trained on ImageNet-1K."
)
_UAE_V2_METRICS_SOURCE = (
    "authors' README table (github.com/WeichenFan/UAE main @3c2fde4, assets/recontrcution_performance.png): "
    "256 px reconstructions of ImageNet-1K val and MS-COCO 2017 val with their stage1_sample_ddp.py "
    "(their rFID code, not comparable to uae's torch-fidelity rFID); linear_probe = their linear-probe "
    "accuracy (in parentheses in their table: the encoder before UAE training)"
)


def _v2(arch: str, folder: str, verified: bool, metrics: dict[str, float], note: str) -> None:
    register_pretrained(
        PretrainedCfg(
            architecture=arch,
            tag="authors_v2",
            source="authors_v2",
            hf_hub_id=_UAE_REPO,
            files={
                "checkpoint": PretrainedFile(f"checkpoints/{folder}/ep-last.pt", verified=verified),
                "config": PretrainedFile(f"checkpoints/{folder}/config.yaml", verified=verified),
            },
            license="apache-2.0",
            license_note=_UAE_LICENSE_NOTE,
            paper_metrics=metrics,
            metrics_source=_UAE_V2_METRICS_SOURCE,
            notes=note,
        )
    )


_v2(
    "uae_base_p14_dinov2",
    "DINOv2-B",
    True,
    {
        "imagenet1k_val.psnr": 32.17,
        "imagenet1k_val.ssim": 0.92,
        "imagenet1k_val.rfid": 0.35,
        "coco2017_val.psnr": 31.19,
        "coco2017_val.ssim": 0.91,
        "coco2017_val.rfid": 2.01,
        "imagenet1k.linear_probe": 83.0,
    },
    "The authors' v2 release (2026-03), DINOv2-B with registers + ViT-XL decoder, DCT zig-zag bands. "
    "Paths from their README (`--config downloads/checkpoints/DINOv2-B/config.yaml`).",
)
_v2(
    "uae_large_p14_clip",
    "CLIP-L",
    False,
    {
        "imagenet1k_val.psnr": 36.58,
        "imagenet1k_val.ssim": 0.96,
        "imagenet1k_val.rfid": 0.04,
        "coco2017_val.psnr": 36.25,
        "coco2017_val.ssim": 0.97,
        "coco2017_val.rfid": 0.41,
        "imagenet1k.linear_probe": 77.2,
    },
    "The authors' v2 CLIP-L/14 release (encoder openai/clip-vit-large-patch14). UNCONFIRMED folder name "
    "'checkpoints/CLIP-L/': their README only names checkpoints/DINOv2-B/; the layout is assumed the same.",
)
_v2(
    "uae_base_p16_siglip2",
    "SigLIP2",
    False,
    {
        "imagenet1k_val.psnr": 31.00,
        "imagenet1k_val.ssim": 0.91,
        "imagenet1k_val.rfid": 0.43,
        "coco2017_val.psnr": 30.20,
        "coco2017_val.ssim": 0.89,
        "coco2017_val.rfid": 2.91,
        "imagenet1k.linear_probe": 80.1,
    },
    "The authors' v2 SigLIP2 release (encoder google/siglip2-base-patch16-256). UNCONFIRMED folder name "
    "'checkpoints/SigLIP2/': their README only names checkpoints/DINOv2-B/; the layout is assumed the same.",
)
register_pretrained(
    PretrainedCfg(
        architecture="uae_base_p14_dinov2",
        tag="authors_v1",
        source="authors_v1",
        hf_hub_id=_UAE_REPO,
        files={
            "checkpoint": PretrainedFile(
                "results/sub_stage4/000-sub_stage4-UnifiedUAE/checkpoints/final.pt", verified=False
            )
        },
        license="apache-2.0",
        license_note=_UAE_LICENSE_NOTE,
        paper_metrics={
            "imagenet1k_val.psnr": 29.588,
            "imagenet1k_val.ssim": 0.8789,
            "imagenet1k_val.rfid": 0.193,
            "coco2017_val.psnr": 29.484,
            "coco2017_val.ssim": 0.8846,
            "coco2017_val.rfid": 0.157,
        },
        metrics_source="authors' README 'Expected Results' (github.com/WeichenFan/UAE branch old_uae @e0f28f7), "
        "eval_uae.py at 256 px, --freq-ratio 1.0 (their evaluation code)",
        notes="The authors' first release (2025-12): DINOv2-B + ViT-XL decoder, FFT ring bands with a band-mixing "
        "layer, K from the weights; the 'model' entry of the .pt is used (their evaluation loads it). "
        "UNCONFIRMED file path: their README says PATH_TO_WEIGHTS and that per-stage checkpoints are under "
        "results/ on the Hub; the path here follows their stage1_train.yaml (sub_stage4 final.pt), and the v1 "
        "files may have left the repo's main revision after the v2 update (pin `revision` once known).",
    )
)

_RAE_REPO = "nyu-visionx/RAE-collections"
_RAE_LICENSE_NOTE = (
    "MIT: LICENSE of RAE's code (github.com/bytetriper/RAE); the license of the RAE-collections Hub repo was "
    "not checked here. The DINOv2-with-registers encoder weights (facebook/dinov2-with-registers-base) are "
    "Apache-2.0; decoders trained on ImageNet-1K."
)
_RAE_ENCODER = PretrainedFile("model.safetensors", repo="facebook/dinov2-with-registers-base")


def _rae_weights(
    arch: str,
    tag: str,
    decoder: str,
    stats: str,
    verified: bool,
    metrics,
    source,
    note,
    encoder: str = "dinov2",
    folder: str = "dinov2/wReg_base",
    encoder_file: PretrainedFile = _RAE_ENCODER,
) -> None:
    register_pretrained(
        PretrainedCfg(
            architecture=arch,
            tag=tag,
            source="rae",
            hf_hub_id=_RAE_REPO,
            files={
                "decoder": PretrainedFile(f"decoders/{folder}/{decoder}/model.pt", verified=verified),
                "stats": PretrainedFile(f"stats/{folder}/{stats}/stat.pt"),
                "encoder": encoder_file,
            },
            license="mit",
            license_note=_RAE_LICENSE_NOTE,
            paper_metrics=metrics,
            metrics_source=source,
            options={"encoder": encoder},
            notes=note,
        )
    )


_rae_weights(
    "rae_base_p14_dinov2_vitxl",
    "rae",
    "ViTXL_n08",
    "imagenet1k",
    True,
    {"imagenet1k_val.rfid_50k": 0.57},
    "RAE README (github.com/bytetriper/RAE main @a4d18c4), 'GPU training reproduction' table: rFID-50k "
    "reported for DINOv2-B (tau = 0.8) with their evaluation",
    "RAE's DINOv2-B decoder (ViT-XL, noise tau 0.8, 256 px output); paths from RAE's "
    "configs/stage1/pretrained/DINOv2-B.yaml (models/ = the repo root). The UAE paper's table lists RAE "
    "(DINOv2-B) at PSNR 18.05, SSIM 0.50, rFID 2.04 on ImageNet-1K val (UAE authors' evaluation).",
)
_rae_weights(
    "rae_base_p14_dinov2_vitxl",
    "rae_i512",
    "ViTXL_n08_i512",
    "imagenet1k_512",
    True,
    {},
    "",
    "RAE's 512 px decoder (DINOv2-B at 448 px input, 32x32 latent, ViT-XL); paths from RAE's "
    "configs/stage1/pretrained/DINOv2-B_512.yaml. No reconstruction numbers in RAE's README.",
)
_rae_weights(
    "rae_base_p14_dinov2_vitl",
    "rae",
    "ViTL_n08",
    "imagenet1k",
    False,
    {},
    "",
    "RAE's ViT-L decoder for DINOv2-B (their decoder-size ablation). UNCONFIRMED decoder path: RAE's configs "
    "only name ViTXL_n08; 'ViTL_n08' follows that naming. No numbers copied (not in RAE's README).",
)
_rae_weights(
    "rae_base_p14_dinov2_vitb",
    "rae",
    "ViTB_n08",
    "imagenet1k",
    False,
    {},
    "",
    "RAE's ViT-B decoder for DINOv2-B (their decoder-size ablation). UNCONFIRMED decoder path: RAE's configs "
    "only name ViTXL_n08; 'ViTB_n08' follows that naming. No numbers copied (not in RAE's README).",
)
_rae_weights(
    "rae_base_p16_siglip2_vitxl",
    "rae",
    "ViTXL_n08",
    "ImageNet1k",
    True,
    {},
    "",
    "RAE's SigLIP2-B decoder (ViT-XL, noise tau 0.8, 256 px in and out); paths from RAE's "
    "configs/stage1/pretrained/SigLIP2.yaml (models/ = the repo root; note 'ImageNet1k' there, "
    "'imagenet1k' for DINOv2); encoder google/siglip2-base-patch16-256 (SiglipModel; its vision tower is "
    "used). No reconstruction numbers in RAE's README.",
    encoder="siglip2",
    folder="siglip2/base_p16_i256",
    encoder_file=PretrainedFile("model.safetensors", repo="google/siglip2-base-patch16-256"),
)
_rae_weights(
    "rae_base_p16_mae_vitxl",
    "rae",
    "ViTXL_n08",
    "ImageNet1k",
    True,
    {},
    "",
    "RAE's MAE-B decoder (ViT-XL, noise tau 0.8, 256 px in and out); paths from RAE's "
    "configs/stage1/pretrained/MAE.yaml; encoder facebook/vit-mae-base (ViTMAEForPreTraining; its encoder "
    "is used with nothing masked). UNCONFIRMED encoder file name: model.safetensors in facebook/vit-mae-base "
    "(older repos may hold only pytorch_model.bin; pass the file as encoder_weights then). No "
    "reconstruction numbers in RAE's README.",
    encoder="mae",
    folder="mae/base_p16",
    encoder_file=PretrainedFile("model.safetensors", repo="facebook/vit-mae-base", verified=False),
)

register_pretrained(
    PretrainedCfg(
        architecture="uae_demo",
        tag="embedded",
        source="uae",
        local_dir="uae_demo",
        license="apache-2.0",
        license_note="weights trained by uae on CC/public-domain sample photos; attributions in its card",
        notes="trained by this package (the demo recipe); measured numbers on its model card (README.md beside the weights)",
    )
)

# The generators (DiT-DH), their weights and the 64-token tokenizer: uae/models/generators.py.
from uae.models import generators as _generators  # noqa: E402, F401
