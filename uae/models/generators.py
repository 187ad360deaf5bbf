"""The generator half of the zoo: DiT-DH architectures, their released weights, and the 64-token tokenizer.

Architectures are registered in the one registry with ``family="generator"``
(:func:`uae.models.registry.register_model`), so ``create_model("dit_dh_xl")`` builds a
:class:`uae.models.dit.DiTDH`. Their weights are tagged entries of the one weights table
(:mod:`uae.models.pretrained`, format ``"dit"``: :mod:`uae.convert.dit`), each with
:class:`~uae.models.pretrained.GenerationDefaults`: the tokenizer it was trained on and the release's
sampling settings, copied from the release's own sampling config.

Sources (every Hub path below is named by the release's own config, so none is marked unconfirmed;
whether a file is a bare state dict or wraps it in ``"ema"`` is not confirmed, and both load):

* RAE (bytetriper/RAE ``main`` @ ``a4d18c4``, Hub ``nyu-visionx/RAE-collections``, ``models/`` = the repo
  root): ``configs/stage2/sampling/ImageNet256/DiTDHXL-DINOv2-B_AG.yaml`` (DiT-DH-XL + autoguidance with
  DiT-DH-S ``ep14``, scale 1.42), ``DiTDHXL-DINOv2-B.yaml`` (the same generator, no guidance) and
  ``ImageNet512/DiTDH-XL_DINOv2-B_decXL_AG.yaml`` (DiT-DH-XL ``ep400`` + DiT-DH-S ``ep20``, scale 1.5).
* The authors (WeichenFan/UAE ``main`` @ ``3c2fde4``, Hub ``weepiess2383/UAE``, ``downloads/`` = the repo
  root): ``configs/stage2/latent_modeling/sampling/ImageNet256/64token.yaml`` (the 64-token tokenizer
  ``stage_1.pt`` with its ``normalization_stats.pt``, the generator ``stage_2.pt``; RK4, 50 points,
  guidance scale 1.0, i.e. none).
"""

from __future__ import annotations

from typing import Any

from uae.models.dit_config import (
    DiTDHConfig,
    dit_dh_s,
    dit_dh_s_512,
    dit_dh_xl,
    dit_dh_xl_512,
    uae_64token_dit,
)
from uae.models.pretrained import GenerationDefaults, PretrainedCfg, PretrainedFile, register_pretrained
from uae.models.registry import register_model

_RAE_REPO = "nyu-visionx/RAE-collections"
_UAE_REPO = "weepiess2383/UAE"
_RAE_DITS = "DiTs/Dinov2/wReg_base"
_64TOKEN = "checkpoints/Generative_Modeling/Latent_Modeling/64_tokens"
_RAE_CONFIGS = "bytetriper/RAE main @a4d18c4, configs/stage2/sampling/"
_64TOKEN_CONFIG = (
    "WeichenFan/UAE main @3c2fde4, configs/stage2/latent_modeling/sampling/ImageNet256/64token.yaml"
)
_RAE_LICENSE_NOTE = (
    "MIT: LICENSE of RAE's code (github.com/bytetriper/RAE); the license of the RAE-collections Hub repo was "
    "not checked here. Trained on ImageNet-1K latents of DINOv2-B with registers (Apache-2.0)."
)
_UAE_LICENSE_NOTE = (
    "Apache-2.0: LICENSE of the authors' code (github.com/WeichenFan/UAE); the Hub repo's own card was not "
    "checked here. Trained on ImageNet-1K."
)
_RAE_PAPER = (
    "RAE paper (Zheng, Ma, Tong, Xie, 'Diffusion Transformers with Representation Autoencoders', "
    "arXiv 2510.11690), abstract: ImageNet class-conditional gFID-50k 1.51 at 256 px without guidance and "
    "1.13 at 256 and 512 px with guidance (their ADM-suite evaluation, 50 images per class); RAE's README "
    "reproduces 2.16 for an 80-epoch DiT-DH-XL (a shorter run than the released one)"
)


# ================================================================================================
# Architectures (family "generator"): the released sizes of uae.models.dit_config, and a tiny one.
# ================================================================================================
def _register(name: str, fn: Any, description: str, notes: str) -> None:
    register_model(name, description=description, notes=notes, family="generator")(lambda: fn())


_register(
    "dit_dh_xl",
    dit_dh_xl,
    "DiT-DH-XL (RAE): trunk 1152 x 28, DDT head 2048 x 2, 16x16x768 latents (256 px).",
    "RAE's generator on DINOv2-B latents (tag rae, converted from nyu-visionx/RAE-collections).",
)
_register(
    "dit_dh_s",
    dit_dh_s,
    "DiT-DH-S (RAE): trunk 384 x 12, DDT head 2048 x 2, 16x16x768 latents; the autoguidance model.",
    "RAE's autoguidance model for dit_dh_xl at 256 px (tag rae: DiTDH-S_ep14).",
)
_register(
    "dit_dh_xl_512",
    dit_dh_xl_512,
    "DiT-DH-XL (RAE) at 512 px: 32x32x768 latents of DINOv2-B at 448 px.",
    "RAE's 512 px generator (tag rae: DiTDH-XL_ep400).",
)
_register(
    "dit_dh_s_512",
    dit_dh_s_512,
    "DiT-DH-S (RAE) at 512 px: the autoguidance model of dit_dh_xl_512.",
    "RAE's autoguidance model at 512 px (tag rae: DiTDH-S_ep20).",
)
_register(
    "uae_64token_dit",
    uae_64token_dit,
    "The authors' DiT-DH-XL on their 64-token UAE latents (16x16x768, DCT low-pass keeping 64).",
    "The authors' v2 generator (tag authors_v2, weepiess2383/UAE 64_tokens/stage_2.pt).",
)


@register_model(
    family="generator",
    notes="tiny random configuration for tests and examples; never trained; pairs with uae_test",
    description="Tiny test generator: 8x8x32 latents of uae_test, trunk 32 x 1, head 64 x 1, 10 classes.",
)
def dit_dh_test() -> DiTDHConfig:
    return DiTDHConfig(
        name="dit_dh_test",
        in_channels=32,
        input_size=(8, 8),
        hidden_size=32,
        depth=1,
        num_heads=2,
        head_hidden_size=64,
        head_depth=1,
        head_num_heads=2,
        num_classes=10,
        fourier_size=16,
    )


# ================================================================================================
# The 64-token tokenizer (a tokenizer weights entry that exists for generation)
# ================================================================================================
#: ``stage_1.params`` of the authors' ``64token.yaml`` (file paths left out: the files are this entry's
#: roles). The Hub folder holds no config of its own, so the converter takes these values.
UAE_64TOKEN_STAGE1_PARAMS: dict[str, Any] = {
    "encoder_cls": "Dinov2withNorm",
    "encoder_config_path": "facebook/dinov2-with-registers-base",
    "encoder_input_size": 224,
    "encoder_params": {"dinov2_path": "facebook/dinov2-with-registers-base", "normalize": True},
    "decoder_config_path": "configs/decoder/ViTXL",
    "noise_tau": 0.0,
    "reshape_to_2d": True,
    "frequency_config": {
        "freq_order": "zigzag",
        "freq_transform": "dct",
        "band_split": {"enabled": True, "mode": "low", "count": 64},
    },
    "normalization_stat_path": "normalization_stats.pt",
}

register_pretrained(
    PretrainedCfg(
        architecture="uae_base_p14_dinov2",
        tag="authors_v2_64token",
        source="authors_v2",
        hf_hub_id=_UAE_REPO,
        files={
            "checkpoint": PretrainedFile(f"{_64TOKEN}/stage_1.pt"),
            "stats": PretrainedFile(f"{_64TOKEN}/normalization_stats.pt"),
        },
        license="apache-2.0",
        license_note=_UAE_LICENSE_NOTE,
        options={"params": UAE_64TOKEN_STAGE1_PARAMS},
        notes="The authors' 64-token tokenizer (v2, 2026-03): DINOv2-B with registers + ViT-XL decoder, DCT "
        "zig-zag low-pass keeping 64 of 256 coefficients, per-position latent statistics "
        "(normalization_stats.pt, std = sqrt(var + 1e-5)); the tokenizer of uae_64token_dit.authors_v2. "
        f"Paths and settings from {_64TOKEN_CONFIG} (its stage_1 block; the Hub folder has no config.yaml).",
    )
)


# ================================================================================================
# Generator weights
# ================================================================================================
def _rae_generator(
    arch: str, folder: str, defaults: GenerationDefaults, metrics: dict[str, float], note: str
) -> None:
    register_pretrained(
        PretrainedCfg(
            architecture=arch,
            tag="rae",
            source="dit",
            hf_hub_id=_RAE_REPO,
            files={"checkpoint": PretrainedFile(f"{_RAE_DITS}/{folder}/stage2_model.pt")},
            license="mit",
            license_note=_RAE_LICENSE_NOTE,
            paper_metrics=metrics,
            metrics_source=_RAE_PAPER if metrics else "",
            options={"layout": "rae"},
            notes=note,
            generation=defaults,
        )
    )


_RAE_256_STATS = f"{_RAE_REPO}: stats/dinov2/wReg_base/imagenet1k/stat.pt"
_RAE_512_STATS = f"{_RAE_REPO}: stats/dinov2/wReg_base/imagenet1k_512/stat.pt"

_rae_generator(
    "dit_dh_xl",
    "ImageNet256/DiTDH-XL",
    GenerationDefaults(
        tokenizer="rae_base_p14_dinov2_vitxl.rae",
        latent_stats=_RAE_256_STATS,
        guidance_model="dit_dh_s.rae",
        guidance_method="autoguidance",
        guidance_scale=1.42,
        method="euler",
        num_steps=50,
        shift_dim=196608,
        config_source=_RAE_CONFIGS + "ImageNet256/DiTDHXL-DINOv2-B_AG.yaml",
    ),
    {"imagenet256.gfid_50k": 1.51, "imagenet256.gfid_50k_guided": 1.13},
    "RAE's DiT-DH-XL on DINOv2-B latents (256 px). Defaults: autoguidance with dit_dh_s.rae at 1.42, "
    "Euler ODE, 50 points (DiTDHXL-DINOv2-B_AG.yaml); DiTDHXL-DINOv2-B.yaml samples the same weights "
    "without guidance (guidance=1).",
)
_rae_generator(
    "dit_dh_s",
    "ImageNet256/DiTDH-S_ep14",
    GenerationDefaults(
        tokenizer="rae_base_p14_dinov2_vitxl.rae",
        latent_stats=_RAE_256_STATS,
        method="euler",
        num_steps=50,
        shift_dim=196608,
        config_source=_RAE_CONFIGS + "ImageNet256/DiTDHXL-DINOv2-B_AG.yaml (guidance.guidance_model)",
    ),
    {},
    "RAE's DiT-DH-S after 14 epochs: the autoguidance model of dit_dh_xl.rae (a weak generator on its own; "
    "no numbers published for it).",
)
_rae_generator(
    "dit_dh_xl_512",
    "ImageNet512/DiTDH-XL_ep400",
    GenerationDefaults(
        tokenizer="rae_base_p14_dinov2_vitxl.rae_i512",
        latent_stats=_RAE_512_STATS,
        guidance_model="dit_dh_s_512.rae",
        guidance_method="autoguidance",
        guidance_scale=1.5,
        method="euler",
        num_steps=50,
        shift_dim=786432,
        config_source=_RAE_CONFIGS + "ImageNet512/DiTDH-XL_DINOv2-B_decXL_AG.yaml",
    ),
    {"imagenet512.gfid_50k_guided": 1.13},
    "RAE's DiT-DH-XL at 512 px (400 epochs) on 32x32 DINOv2-B latents (448 px input). Defaults: "
    "autoguidance with dit_dh_s_512.rae at 1.5, Euler ODE, 50 points, shift sqrt(786432 / 4096).",
)
_rae_generator(
    "dit_dh_s_512",
    "ImageNet512/DiTDH-S_ep20",
    GenerationDefaults(
        tokenizer="rae_base_p14_dinov2_vitxl.rae_i512",
        latent_stats=_RAE_512_STATS,
        method="euler",
        num_steps=50,
        shift_dim=786432,
        config_source=_RAE_CONFIGS + "ImageNet512/DiTDH-XL_DINOv2-B_decXL_AG.yaml (guidance.guidance_model)",
    ),
    {},
    "RAE's DiT-DH-S after 20 epochs at 512 px: the autoguidance model of dit_dh_xl_512.rae.",
)

register_pretrained(
    PretrainedCfg(
        architecture="uae_64token_dit",
        tag="authors_v2",
        source="dit",
        hf_hub_id=_UAE_REPO,
        files={"checkpoint": PretrainedFile(f"{_64TOKEN}/stage_2.pt")},
        license="apache-2.0",
        license_note=_UAE_LICENSE_NOTE,
        paper_metrics={"imagenet256.gfid": 1.68, "imagenet256.is": 301.6},
        metrics_source="the UAE paper (arXiv 2512.19693): class-conditional ImageNet 256 gFID 1.68, IS 301.6 for "
        "its generator on UAE latents; whether the released 64-token checkpoint is that model is not stated. "
        "Their README figure (assets/latent_modeling.png) plots FID of about 4.0 after 80 training epochs for "
        "'UAE [freq-64tokens]' (read off the plot, sampler settings not stated)",
        options={"layout": "authors"},
        notes="The authors' DiT-DH-XL on their 64-token tokenizer (uae_base_p14_dinov2.authors_v2_64token). "
        "Defaults from 64token.yaml: RK4 ODE (torchdiffeq's 3/8 rule), 50 points, no guidance (scale 1.0).",
        generation=GenerationDefaults(
            tokenizer="uae_base_p14_dinov2.authors_v2_64token",
            latent_stats=f"{_UAE_REPO}: {_64TOKEN}/normalization_stats.pt",
            guidance_method="cfg",
            guidance_scale=1.0,
            method="rk4",
            num_steps=50,
            shift_dim=196608,
            config_source=_64TOKEN_CONFIG,
        ),
    )
)

__all__ = ["UAE_64TOKEN_STAGE1_PARAMS", "dit_dh_test"]
