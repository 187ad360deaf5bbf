"""RAE's released decoders (bytetriper/RAE, Hub ``nyu-visionx/RAE-collections``) as exact uae models.

Followed: ``bytetriper/RAE`` branch ``main``, commit ``a4d18c4db766419cbe7cb8c02cd9f7ceb0ec9041``, files
``src/stage1/rae.py`` (``RAE.encode`` / ``decode``), ``src/stage1/encoders/dinov2.py``
(``Dinov2withNorm``), ``src/stage1/decoders/decoder.py`` (``GeneralDecoder``, ``ViTMAELayer``),
``configs/decoder/{ViTB,ViTL,ViTXL}/config.json``, ``configs/stage1/pretrained/DINOv2-B*.yaml``,
``src/calculate_stat.py`` and ``src/extract_decoder.py``.

What RAE's forward does at evaluation (``noise_tau: 0.`` in the released configs, and the noise is
only added in training mode), and how uae reproduces it:

* Input: ``[0, 1]`` images, resized bicubically to ``encoder_input_size`` (224; 448 for the 512 px
  decoder) only when the size differs, then ImageNet-normalised (the DINOv2 image processor's
  mean/std). uae: ``img_size`` from the decoder's grid times 14, same normalisation.
* Encoder: transformers ``Dinov2WithRegistersModel`` (``facebook/dinov2-with-registers-base``),
  ``last_hidden_state[:, 5:]`` (CLS and 4 registers dropped) after its final LayerNorm with the affine
  removed (eps 1e-6, the DINOv2 config's). The 37x37 position table is resampled to the 16x16 grid
  (bicubic, antialiased, float32), which uae does once at conversion with the same operation.
* Latent normalisation (``normalization_stat_path``, ``stat.pt`` = ``{"mean", "var"}``):
  ``(z - mean) / sqrt(var + eps)`` with ``eps = 1e-5``; ``calculate_stat.py`` computes both over
  ``[C, H, W]``, so the released statistics are per position. uae stores ``latent_mean = mean`` and
  ``latent_std = sqrt(var + eps)`` (``config.latent_stats="per_position"``, buffers ``(C, h, w)``):
  ``model.normalize_latent(model.encode(x).latent)`` is RAE's ``encode(x)``, and
  ``denormalize_latent`` the first step of RAE's ``decode``. A reconstruction goes through both, so
  the statistics cancel there (up to float rounding) in both implementations.
* Decoder: ``GeneralDecoder`` (MAE decoder layers, post-``decoder_embed`` CLS token
  ``trainable_cls_token`` prepended, fixed sin-cos positions whose CLS slot is zero, LayerNorm eps
  ``layer_norm_eps = 1e-12`` from the ``config.json`` files, exact GELU, ``drop_cls_token=False``),
  ``logits[:, 1:]`` unpatchified to 256 px, de-normalised with the same ImageNet mean/std, not
  clamped. uae: ``decoder_norm_eps=1e-12`` and the key map/channel permutation of :mod:`uae.convert`;
  ``model(x, clamp=False).sample`` is RAE's ``forward(x)``.

Decoder configs (``configs/decoder/*/config.json``): ViT-B 768 wide, 12 layers, 12 heads, MLP 3072;
ViT-L 1024, 24, 16, 4096; ViT-XL 1152, 28, 16, 4096. Widths, depths and MLP sizes come from the
weights; heads from :data:`~uae.convert.common.DECODER_HEADS_BY_WIDTH` (override ``decoder_heads``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import torch

from uae.convert.common import (
    DINOV2_DEPTH_BY_WIDTH,
    DINOV2_TIMM_IDS,
    Source,
    build_checked,
    check_release_call,
    convert_mae_decoder,
    decoder_config,
    latent_stats,
    stats_layout,
    timm_encoder_config,
)
from uae.convert.hf_encoders import convert_encoder
from uae.errors import InputError
from uae.files import read_state_dict
from uae.models.config import UAEConfig

#: LayerNorm eps of RAE's decoders (``layer_norm_eps`` in ``configs/decoder/*/config.json``).
RAE_DECODER_NORM_EPS = 1e-12
#: ``eps`` of RAE's latent normalisation (``RAE.__init__`` default; no released config overrides it).
RAE_STATS_EPS = 1e-5
#: File roles of one RAE release -> required? (``decoder``: ``model.pt``; ``stats``: ``stat.pt``;
#: ``encoder``: DINOv2-with-registers weights, transformers/timm/facebookresearch naming).
RELEASE_FILES: dict[str, bool] = {"decoder": True, "stats": False, "encoder": False}
#: What was compared with the original code (model cards of ``uae publish``).
CONVERSION_CHECK = (
    "Compared with RAE's original code (github.com/bytetriper/RAE, branch main, commit "
    "a4d18c4db766419cbe7cb8c02cd9f7ceb0ec9041; transformers 4.57.6, CPU, float32) on a scaled-down "
    "DINOv2-with-registers encoder and ViT-B/L/XL-shaped decoders with every tensor re-drawn at random (the "
    "released weights themselves were not run through it), without, with per-channel and with per-position "
    "latent statistics: the encoder latent, the normalised latent and the unclamped reconstruction agree "
    "within 1e-5 max abs (measured: latents 0, images up to 4.8e-7), also when loaded through "
    "create_model(..., pretrained=True) from a Hub cache (tests/test_convert_rae.py, "
    "tests/test_pretrained_releases.py)."
)
#: Part of the converted-cache key (:mod:`uae.models.pretrained`): bump it whenever a converted model's
#: tensors or config change (tests/test_pretrained_releases.py pins the converted layout to it).
CONVERTER_VERSION = "1"


def rae_to_uae(
    decoder_state: Mapping[str, torch.Tensor],
    encoder_state: Mapping[str, torch.Tensor] | None = None,
    *,
    encoder_heads: int | None = None,
    decoder_heads: int | None = None,
    stats: Mapping[str, torch.Tensor] | None = None,
    stats_eps: float = RAE_STATS_EPS,
    decoder_norm_eps: float | None = RAE_DECODER_NORM_EPS,
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
        encoder_heads: Encoder attention heads (default ``C // 64``, as in DINOv2).
        decoder_heads: Decoder attention heads (default by width: ViT-B 12, ViT-L 16, ViT-XL 16).
        stats: Optional ``stat.pt`` contents ``{"mean", "var"}``, per channel (``(C,)``, ``(C, 1, 1)``)
            or per position (``(C, h, w)``, ``(1, C, h, w)``); stored as ``latent_mean`` and
            ``latent_std = sqrt(var + stats_eps)`` with the matching ``config.latent_stats``.
        stats_eps: ``eps`` of RAE's ``(z - mean) / sqrt(var + eps)`` (1e-5).
        decoder_norm_eps: eps of the decoder's LayerNorms (RAE's 1e-12; ``None``: uae's defaults).
        name: ``config.name`` (default ``uae_rae_base_p14_dinov2`` for a 768-wide latent).

    Returns:
        A :class:`uae.UAE` in eval mode.

    Raises:
        InputError: Unknown/missing keys or inconsistent shapes.
        MissingFileError: No encoder weights given and none in the Hub cache.
    """
    from uae.models.uae import UAE

    dstate = dict(decoder_state)
    if dstate and all(k.startswith("decoder.") for k in dstate):
        dstate = {k[len("decoder.") :]: v for k, v in dstate.items()}
    src = Source(dstate, "RAE decoder checkpoint")
    dec, grid = convert_mae_decoder(src, "")
    src.check_consumed()
    dcfg = decoder_config(dec, decoder_heads)
    c = dec["embed.weight"].shape[1]

    enc: dict[str, torch.Tensor] | None = None  # {"encoder.vit.*": tensor}
    if encoder_state is not None and any(k.startswith("embeddings.") for k in encoder_state):
        esrc = Source(encoder_state, "DINOv2 encoder weights (transformers naming)")
        enc, ecfg = convert_encoder(esrc, "dinov2", "", latent_norm=True, encoder_heads=encoder_heads)
        esrc.check_consumed()
        ecfg.pop("latent_norm")
    elif encoder_state is not None:
        ecfg = timm_encoder_config(encoder_state, encoder_heads)
    else:
        ecfg = {
            "encoder_dim": c,
            "patch_size": 14,
            "encoder_depth": DINOV2_DEPTH_BY_WIDTH.get(c, 12),
            "encoder_heads": encoder_heads or max(1, c // 64),
            "encoder_mlp_ratio": 4.0,
            "encoder_reg_tokens": 4,
            "encoder_init_values": 1e-5,
            # DINOv2's released 37x37 table (518 px), resampled at run time as transformers does.
            "encoder_pos_grid": 37,
            "encoder_pos_resample": "hf_dinov2",
        }
    if ecfg["encoder_dim"] != c:
        raise InputError(f"encoder width {ecfg['encoder_dim']} does not match the decoder's latent width {c}")
    default_name = "uae_rae_base_p14_dinov2" if c == 768 else f"uae_rae_c{c}_converted"
    config = UAEConfig(
        name=name or default_name,
        img_size=grid * ecfg["patch_size"],
        encoder_weights=DINOV2_TIMM_IDS.get(c, ""),
        latent_norm=True,
        latent_stats=stats_layout(stats, c, grid),
        decoder_norm_eps=decoder_norm_eps,
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
        enc = {f"encoder.vit.{k}": v for k, v in model.encoder.vit.state_dict().items()}
    hidden = config.modulator_hidden_dim
    full = dict(enc)
    full.update({f"decoder.{a}": v for a, v in dec.items()})
    full.update(
        {
            "modulator.conv_in.weight": torch.zeros(hidden, c, 1, 1),
            "modulator.conv_in.bias": torch.zeros(hidden),
            "modulator.conv_out.weight": torch.zeros(c, hidden, 1, 1),
            "modulator.conv_out.bias": torch.zeros(c),
        }
    )
    full.update(latent_stats(stats, c, stats_eps, grid))
    return build_checked(config, full, "RAE checkpoint")


def load_release(
    files: Mapping[str, str | os.PathLike], *, name: str | None = None, **options: Any
):  # -> UAE
    """Build the converted UAE (eval mode) from local files of one RAE release, strictly.

    Args:
        files: Role -> local path (:data:`RELEASE_FILES`): ``"decoder"`` (required; ``model.pt``, a
            ``GeneralDecoder`` state dict), ``"stats"`` (optional; ``stat.pt`` with ``mean``/``var``),
            ``"encoder"`` (optional; DINOv2-with-registers weights, e.g. transformers'
            ``model.safetensors`` of ``facebook/dinov2-with-registers-base``; default: the timm Hub id
            from the Hub cache).
        name: ``config.name`` of the result.
        **options: ``entry`` (the decoder file's entry; default ``"ema"``, else ``"model"``, else the file
            itself), ``encoder_heads``, ``decoder_heads``, ``stats_eps``, ``decoder_norm_eps`` (as
            :func:`rae_to_uae`).

    Returns:
        A :class:`uae.UAE` in eval mode.

    Raises:
        InputError: Unknown file roles or options, unreadable files, keys or shapes that do not convert.
        MissingFileError: A given file is missing, or the required decoder file is not given.
    """
    allowed = {"entry", "encoder_heads", "decoder_heads", "stats_eps", "decoder_norm_eps"}
    check_release_call("RAE release", files, RELEASE_FILES, options, allowed)
    decoder = read_state_dict(files["decoder"], options.pop("entry", None))
    stats = read_state_dict(files["stats"], what="latent statistics") if files.get("stats") else None
    if stats is not None:
        extra = sorted(set(stats) - {"mean", "var"})
        if extra or not stats:
            raise InputError(
                f"{files['stats']}: expected 'mean' and 'var' latent statistics, got {sorted(stats)}"
            )
    encoder = read_state_dict(files["encoder"], what="encoder weights") if files.get("encoder") else None
    return rae_to_uae(decoder, encoder, stats=stats, name=name, **options)
