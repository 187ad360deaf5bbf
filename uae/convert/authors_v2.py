"""The paper authors' v2 release (WeichenFan/UAE, branch ``main``; weights ``weepiess2383/UAE``).

Followed: ``src/stage1/uae.py`` (``UAE.encode``/``decode``, the frequency module), ``src/stage1/encoders/
{dinov2,clip,siglip2}.py``, ``src/stage1/decoders/decoder.py`` (``GeneralDecoder``), ``src/utils/
model_utils.py`` (``instantiate_from_config``: the ``"ema"`` entry is loaded), ``src/stage1_sample_ddp.py``
(evaluation: ``model.eval()``, ``decode(encode(x)).clamp(0, 1)``), ``configs/stage1/*/stage2.yaml`` and
``configs/decoder/ViTXL/config.json``, at commit ``3c2fde49e09c4e9bf9fc5333bb713b427ef6ff7a``.

Release layout: ``checkpoints/<encoder>/ep-last.pt`` (a training checkpoint; ``torch.load(weights_only=
True)``, entry ``"ema"``) and ``checkpoints/<encoder>/config.yaml`` (``stage_1.params`` of their
``stage1.UAE``). What their evaluation computes for an image ``x`` in ``[0, 1]`` at the native size
(224 px for DINOv2-B and CLIP-L/14, 256 px for SigLIP2-B/16; other sizes, such as the 256 px crops
of their evaluation, are first resized bicubically to it: :func:`v2_preprocess`, uae does not resize):

1. ``(x - mean) / std`` with the encoder's image-processor statistics (DINOv2: ImageNet; CLIP: OpenAI's;
   SigLIP2: 0.5 / 0.5) -> uae's ``pixel_mean`` / ``pixel_std`` buffers;
2. the encoder's ``last_hidden_state`` without prefix tokens (DINOv2: final LayerNorm without affine;
   CLIP: last block output, ``post_layernorm`` unused; SigLIP2: ``post_layernorm`` without affine);
   the training-time noise (``noise_tau``) is off at evaluation -> uae's ``encoder``;
3. orthonormal DCT-II of the ``h x w`` grid, keep the first ``N`` coefficients of the zigzag scan
   (``band_split.count``; in training ``N`` is drawn per sample from ``count_min..count_max`` with
   probability ``apply_prob``), inverse DCT -> uae's ``band_scheme="dct_zigzag"`` with ``K = 2``:
   band 0 is the kept low-pass latent, band 1 the dropped rest (they sum to ``encode(x).latent``);
4. the MAE-style ViT decoder (LayerNorm eps 1e-12) on band 0 only, ``* std + mean`` -> uae's modulator
   with ``mix_in = diag(1, 0)`` and zero convs (it passes band 0 through unchanged) and ``decoder``.

Latent statistics: the reconstruction releases use none (their configs set no
``normalization_stat_path``). The 64-token tokenizer of their generator release (``checkpoints/
Generative_Modeling/Latent_Modeling/64_tokens/{stage_1.pt,normalization_stats.pt}``, config: the
``stage_1`` block of ``configs/stage2/latent_modeling/sampling/ImageNet256/64token.yaml``) has
per-position statistics ``{"mean", "var"}``, each ``(C, h, w)`` (the layout ``src/calculate_stat.py``
writes), which their ``Stage2LatentAdapter`` applies as ``(z - mean) / sqrt(var + 1e-5)``: given as the
``stats`` file, they become ``latent_mean`` / ``latent_std = sqrt(var + 1e-5)`` with
``latent_stats="per_position"`` (:meth:`uae.UAE.normalize_latent`, :meth:`uae.UAE.decode_latent`).

Key map (every source key consumed, every target key filled; transformers 4 and 5 names, see
:mod:`uae.convert.hf_encoders` for the encoders' tables):

=================================================  =====================================================
source (``ema`` state dict)                        uae
=================================================  =====================================================
``encoder.encoder.*`` (``Dinov2withNorm``)          ``encoder.vit.*`` (:mod:`uae.convert.hf_encoders`)
``encoder.model.vision_model.*`` (``CLIPwNorm``)    ``encoder.vit.*`` (:mod:`uae.convert.hf_encoders`;
                                                   transformers 5: ``encoder.model.*``)
``encoder.model.*`` (``SigLIP2wNorm``)              ``encoder.vit.*``; ``head.*`` dropped (pooling head)
``decoder.*`` (``GeneralDecoder``)                  ``decoder.*`` (table in :mod:`uae.convert`)
(none: the frequency module has no weights)        ``modulator.*``: ``mix_in = diag(1, 0)``,
                                                   ``mix_out = I``, zero ``conv_in`` / ``conv_out``
(image processor mean / std)                       ``pixel_mean`` / ``pixel_std``
=================================================  =====================================================
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from uae.convert.common import (
    Source,
    build_checked,
    check_release_call,
    convert_mae_decoder,
    decoder_config,
    latent_stats,
    stats_layout,
)
from uae.convert.hf_encoders import PATCH_KEYS, convert_encoder
from uae.data.transforms import resize_images
from uae.errors import InputError, MissingFileError
from uae.files import read_state_dict, read_torch_dict, read_yaml_mapping, state_dict_in
from uae.layers.encoder import FAMILY_PIXEL_STATS
from uae.models.config import UAEConfig

logger = logging.getLogger(__name__)

#: File roles of one release -> required? ``checkpoint`` (``checkpoints/<encoder>/ep-last.pt``), ``config``
#: (``.../config.yaml``; required unless the ``params`` option gives its ``stage_1.params``), ``stats``
#: (``normalization_stats.pt``, required when the config names a ``normalization_stat_path``).
RELEASE_FILES: dict[str, bool] = {"checkpoint": True, "config": False, "stats": False}
#: ``eps`` of their latent normalisation (``Stage2LatentAdapter``: ``sqrt(var + 1e-5)``).
STATS_EPS = 1e-5
#: What was compared with the original code (model cards of ``uae publish``).
CONVERSION_CHECK = (
    "Compared with the authors' original code (github.com/WeichenFan/UAE, branch main, commit "
    "3c2fde49e09c4e9bf9fc5333bb713b427ef6ff7a; transformers 4.57.6, CPU, float32) on scaled-down models of "
    "the same architecture (DINOv2-with-registers, CLIP and SigLIP2 encoders, their config.yaml settings) "
    "with every tensor re-drawn at random (the released weights themselves were not run through it): the "
    "encoder latent, the kept zig-zag DCT coefficients and the unclamped reconstruction of one image agree "
    "within 1e-5 max abs (measured: latent 0, kept band up to 5.5e-6, image up to 1.8e-6), also when loaded "
    "through create_model(..., pretrained=True) from a Hub cache (tests/test_convert_authors_v2.py, "
    "tests/test_pretrained_releases.py)."
)
#: Part of the converted-cache key (:mod:`uae.models.pretrained`): bump it whenever a converted model's
#: tensors or config change (tests/test_pretrained_releases.py pins the converted layout to it).
#: 2: ``preprocess="adm"`` (the authors' evaluation crop and resize travel with the model).
CONVERTER_VERSION = "2"
#: The release's encoders (paths inside ``weepiess2383/UAE``) and their native input sizes.
RELEASE_ENCODERS = {"DINOv2-B": 224, "CLIP-L": 224, "SigLIP2": 256}
#: LayerNorm eps of their ViT-XL decoder (``configs/decoder/ViTXL/config.json``: ``layer_norm_eps``).
DECODER_NORM_EPS = 1e-12

#: ``encoder_cls`` of their config -> encoder family, state-dict prefix, and the Hub ids (by prefix)
#: whose image-processor statistics are the family's (:data:`uae.layers.encoder.FAMILY_PIXEL_STATS`).
ENCODERS: dict[str, dict[str, Any]] = {
    "Dinov2withNorm": {
        "family": "dinov2",
        "prefixes": ("encoder.encoder.",),
        "ids": ("facebook/dinov2",),
    },
    "CLIPwNorm": {  # CLIPVisionModel: transformers 5 has no ``vision_model.`` level
        "family": "clip",
        "prefixes": ("encoder.model.vision_model.", "encoder.model."),
        "ids": ("openai/clip-vit",),
    },
    "SigLIP2wNorm": {  # SiglipModel(...).vision_model
        "family": "siglip2",
        "prefixes": ("encoder.model.vision_model.", "encoder.model."),
        "ids": ("google/siglip2-", "google/siglip-"),
    },
}


# ---------------------------------------------------------------------------------------------- config.yaml
def read_release_config(path: str | os.PathLike) -> dict[str, Any]:
    """Read a release ``config.yaml`` and return its ``stage_1.params`` (plain dicts).

    Raises:
        MissingFileError: The file does not exist.
        InputError: Not YAML, no ``stage_1.params``, or a target other than their ``stage1.UAE``.
    """
    path = Path(path)
    raw = read_yaml_mapping(path, "release config")
    stage = raw.get("stage_1")
    if not isinstance(stage, dict) or not isinstance(stage.get("params"), dict):
        raise InputError(f"{path} has no stage_1.params section (not an authors' v2 config.yaml)")
    target = str(stage.get("target", "stage1.UAE"))
    if target.rsplit(".", 1)[-1] != "UAE":
        raise InputError(f"{path}: stage_1.target is {target!r}, expected their stage1.UAE")
    return stage["params"]


def zigzag_settings(params: Mapping[str, Any], grid: int) -> dict[str, Any]:
    """The ``UAEConfig`` ``zigzag_*`` fields for their ``frequency_config`` (evaluation as their code runs it).

    Their evaluation always applies the mask when ``band_split.enabled`` (``apply_prob`` and the random
    ``count_min..count_max`` only act in training) with ``N = count`` (or ``round(ratio * h * w)``).

    Raises:
        InputError: A frequency setting uae cannot reproduce (radial order, high-pass modes, square
            cut-offs, decoding from the split band, band counts), naming it.
    """
    freq = dict(params.get("frequency_config") or {})
    transform = str(freq.get("freq_transform", "none")).lower()
    out: dict[str, Any] = {
        "zigzag_keep_count": None,
        "zigzag_count_min": None,
        "zigzag_count_max": None,
        "zigzag_apply_prob": 1.0,
    }
    if transform == "none":
        return out  # their stage-1 models: no frequency module, the decoder sees the whole latent
    if transform != "dct":
        raise InputError(f"frequency_config.freq_transform {transform!r} is not one of their 'none', 'dct'")
    order = str(freq.get("freq_order", "zigzag")).lower()
    if order != "zigzag":
        raise InputError(f"frequency_config.freq_order {order!r} is not supported (only 'zigzag')")
    split = dict(freq.get("band_split") or {})
    if not bool(split.get("enabled", False)):
        return out
    mode = str(split.get("mode", "low")).lower()
    if mode in ("none", "all"):
        return out
    unsupported = []
    if mode not in ("low", "keep_low"):
        unsupported.append(f"mode={mode!r}")
    cutoff = str(
        split.get("cutoff_mode", split.get("cutoff", split.get("cutoff_type", "reorder_1d")))
    ).lower()
    if cutoff not in ("reorder_1d", "1d", "token_1d", "flat_1d"):
        unsupported.append(f"cutoff_mode={cutoff!r}")
    if split.get("decode_from_split_band", split.get("decode_from_split", False)):
        unsupported.append("decode_from_split_band")
    if split.get("band_count", split.get("keep_bands")) is not None:
        unsupported.append("band_count")
    if unsupported:
        raise InputError(
            f"frequency_config.band_split settings uae cannot reproduce: {', '.join(unsupported)}"
        )
    total = grid * grid
    count = split.get("count", split.get("keep_count"))
    ratio = split.get("ratio", split.get("keep_ratio"))
    if count is not None:
        keep = int(count)
    elif ratio is not None:
        keep = int(round(float(ratio) * total))
    else:
        keep = total
    out["zigzag_keep_count"] = max(0, min(keep, total))
    out["zigzag_apply_prob"] = float(split.get("apply_prob", split.get("prob", 1.0)))
    if bool(split.get("uniform", split.get("sample_uniform", False))):
        low = split.get("count_min", split.get("keep_count_min"))
        high = split.get("count_max", split.get("keep_count_max"))
        low = max(0, min(int(low if low is not None else 0), total))
        high = max(0, min(int(high if high is not None else total), total))
        out["zigzag_count_min"], out["zigzag_count_max"] = min(low, high), max(low, high)
        if not bool(split.get("per_sample", False)):
            logger.warning(
                "band_split.per_sample is false: their training draws one N per batch, uae draws one per "
                "sample (evaluation is unaffected)"
            )
    return out


def _pixel_stats(params: Mapping[str, Any], spec: Mapping[str, Any]) -> tuple[tuple[float, ...], ...]:
    hub_id = str(params.get("encoder_config_path", ""))
    if not hub_id.startswith(spec["ids"]):
        raise InputError(
            f"encoder_config_path {hub_id!r}: its image-processor mean/std are not known to uae "
            f"(known: {', '.join(spec['ids'])}*); pass pixel_mean=... and pixel_std=..."
        )
    return FAMILY_PIXEL_STATS[spec["family"]]


# ---------------------------------------------------------------------------------------------- conversion
def authors_v2_to_uae(
    state: Mapping[str, torch.Tensor],
    params: Mapping[str, Any],
    *,
    encoder_heads: int | None = None,
    decoder_heads: int | None = None,
    pixel_mean: tuple[float, float, float] | None = None,
    pixel_std: tuple[float, float, float] | None = None,
    name: str | None = None,
    stats: Mapping[str, torch.Tensor] | None = None,
    reuse_source: bool = False,
):  # -> UAE
    """Convert an authors' v2 ``stage1.UAE`` state dict and its ``stage_1.params`` to a UAE.

    Args:
        state: The ``ema`` state dict (``encoder.*``, ``decoder.*``).
        params: ``stage_1.params`` of the release's ``config.yaml`` (:func:`read_release_config`).
        encoder_heads: Encoder attention heads (default ``C // 64``: DINOv2-B 12, CLIP-L 16, SigLIP2-B 12).
        decoder_heads: Decoder attention heads (default by width: their ViT-XL 1152 -> 16).
        pixel_mean, pixel_std: Image-processor statistics, for an ``encoder_config_path`` uae does not know.
        name: ``config.name`` (default ``uae_authors_v2_<family>``).
        stats: The latent statistics ``{"mean", "var"}`` (per position ``(C, h, w)`` or per channel) of a
            config with ``normalization_stat_path`` (the 64-token tokenizer); required exactly then.
        reuse_source: The converter may overwrite ``state``'s tensors (the decoder's channel permutation is
            done in place: the conversion then holds the release once, not twice). ``load_release`` sets it
            for the files it reads; leave it off for a state dict that is used afterwards.

    Returns:
        A :class:`uae.UAE` in eval mode with ``band_scheme="dct_zigzag"``.

    Raises:
        InputError: Unknown encoder class, unsupported settings, unknown or missing keys, bad shapes.
    """
    encoder_cls = str(params.get("encoder_cls", ""))
    if encoder_cls not in ENCODERS:
        raise InputError(f"encoder_cls {encoder_cls!r} is not one of the v2 release's {sorted(ENCODERS)}")
    spec = ENCODERS[encoder_cls]
    if params.get("normalization_stat_path") and stats is None:
        raise InputError(
            "normalization_stat_path is set: give its file (normalization_stats.pt) as the stats file",
            param="stats",
        )
    if stats is not None and not params.get("normalization_stat_path"):
        raise InputError(
            "a stats file was given but the config sets no normalization_stat_path (the original code would "
            "not normalise its latents)",
            param="stats",
        )
    src = Source(state, "authors' v2 checkpoint", reuse=reuse_source)
    dec, grid = convert_mae_decoder(src, "decoder.")
    dcfg = decoder_config(dec, decoder_heads)
    patch_cfg = int(params.get("decoder_patch_size", 16))
    if dcfg["decoder_patch_size"] != patch_cfg:
        raise InputError(
            f"decoder_pred predicts {dcfg['decoder_patch_size']}px patches; config.yaml says "
            f"decoder_patch_size {patch_cfg}"
        )
    prefix = next((p for p in spec["prefixes"] if src.has(p + PATCH_KEYS[spec["family"]])), None)
    if prefix is None:
        raise InputError(
            f"authors' v2 checkpoint: no {encoder_cls} encoder weights (expected "
            f"{spec['prefixes'][0]}{PATCH_KEYS[spec['family']]})"
        )
    # The final norm follows the weights: their Dinov2withNorm / SigLIP2wNorm remove the final LayerNorm's
    # affine (latent_norm); CLIP's last_hidden_state has no final norm.
    enc, ecfg = convert_encoder(src, spec["family"], prefix, encoder_heads=encoder_heads)
    src.check_consumed()
    size = int(params.get("encoder_input_size", 224))
    if size != grid * ecfg["patch_size"]:
        raise InputError(
            f"encoder_input_size {size} does not give the decoder's {grid}x{grid} grid with patch "
            f"{ecfg['patch_size']}"
        )
    if pixel_mean is None or pixel_std is None:
        pixel_mean, pixel_std = _pixel_stats(params, spec)
    c = ecfg["encoder_dim"]
    if dec["embed.weight"].shape[1] != c:
        raise InputError(
            f"decoder_embed reads {dec['embed.weight'].shape[1]} channels, the encoder gives {c}"
        )

    config = UAEConfig(
        name=name or f"uae_authors_v2_{spec['family']}",
        img_size=size,
        encoder_weights="",
        band_transform="dct",
        band_scheme="dct_zigzag",
        num_bands=2,
        num_semantic_bands=1,
        noise_std=0.0,
        modulator_hidden_dim=1,
        modulator_in_kernel=1,
        modulator_out_kernel=1,
        band_mixing=True,
        decoder_norm_eps=DECODER_NORM_EPS,
        preprocess="adm",  # their stage1_sample_ddp.py: 256 px ADM crops, resized by their encode
        latent_stats=stats_layout(stats, c, grid),
        **zigzag_settings(params, grid),
        **ecfg,
        **dcfg,
    )
    mod = {
        "conv_in.weight": torch.zeros(1, 2 * c, 1, 1),
        "conv_in.bias": torch.zeros(1),
        "conv_out.weight": torch.zeros(c, 1, 1, 1),
        "conv_out.bias": torch.zeros(c),
        "mix_in": torch.diag(torch.tensor([1.0, 0.0])),
        "mix_out": torch.eye(2),
    }
    full = dict(enc)
    full.update({f"decoder.{k}": v for k, v in dec.items()})
    full.update({f"modulator.{k}": v for k, v in mod.items()})
    full["pixel_mean"] = torch.tensor(pixel_mean, dtype=torch.float32).view(1, 3, 1, 1)
    full["pixel_std"] = torch.tensor(pixel_std, dtype=torch.float32).view(1, 3, 1, 1)
    if stats is not None:
        extra = sorted(set(stats) - {"mean", "var"})
        if extra or not {"mean", "var"} <= set(stats):
            raise InputError(
                f"latent statistics must hold 'mean' and 'var', got {sorted(stats)}", param="stats"
            )
        full.update(latent_stats(stats, c, STATS_EPS, grid))
    return build_checked(config, full, "authors' v2 checkpoint", reuse=reuse_source)


# ---------------------------------------------------------------------------------------------- files
def read_checkpoint(path: str | os.PathLike, entry: str | None = None) -> dict[str, torch.Tensor]:
    """The state dict their evaluation loads from ``ep-last.pt``: ``"ema"`` (``weights_only=True``).

    Args:
        path: ``ep-last.pt``.
        entry: Another entry (``"model"``); ``None``: ``"ema"`` when present, else the file must be a
            bare state dict (their ``instantiate_from_config`` refuses a ``"model"``-only file).

    Raises:
        MissingFileError: Missing file.
        InputError: Unreadable file, or no ``"ema"`` entry in a training checkpoint.
    """
    path = Path(path)
    obj = read_torch_dict(path, "checkpoint")
    if entry is None and "ema" not in obj and "model" in obj:
        raise InputError(
            f"{path} has a 'model' entry but no 'ema' (their evaluation loads 'ema'); pass entry='model'"
        )
    if entry is None and isinstance(obj.get("ema"), dict):
        entry = "ema"
    return state_dict_in(obj, path, entry, entries=())


def v2_preprocess(images: torch.Tensor, size: int) -> torch.Tensor:
    """Resize images to the encoder input size the way their ``UAE._preprocess_encoder_input`` does.

    The same function as :func:`uae.data.resize_images` (one implementation; kept under this name for
    code written against it). To read image files the way the authors evaluate, use the model's data
    config: ``uae.data.create_transform(uae.data.resolve_data_config(model))``, which crops (ADM) and
    resizes in one step.

    Their evaluation feeds 256 px centre crops (``--image-size 256``) and ``encode`` resizes every
    input whose side is not ``encoder_input_size`` bicubically (``align_corners=False``, no
    antialias, not clamped). uae never resizes silently: call this to evaluate like the authors.

    Args:
        images: ``(B, 3, H, W)`` in ``[0, 1]``.
        size: The converted model's ``config.img_size`` (224 for DINOv2-B and CLIP-L, 256 for SigLIP2).

    Returns:
        ``(B, 3, size, size)``; ``images`` itself when it already has that size.
    """
    return resize_images(images, size)


def is_v2_state(state: Mapping[str, torch.Tensor]) -> bool:
    """Whether a state dict is an authors' v2 ``stage1.UAE`` (decoder without a band modulator)."""
    has_decoder = any(k.startswith("decoder.decoder_layers.") for k in state)
    has_encoder = any(k.startswith(("encoder.encoder.", "encoder.model.")) for k in state)
    return has_decoder and has_encoder and not any(k.startswith("freq_modulator.") for k in state)


def load_release(
    files: Mapping[str, str | os.PathLike], *, name: str | None = None, **options: Any
):  # -> UAE
    """Build the converted UAE (eval mode) from local files of one authors' v2 release, strictly.

    Args:
        files: Role -> local path (:data:`RELEASE_FILES`): ``"checkpoint"`` (``checkpoints/<encoder>/
            ep-last.pt``, or the 64-token ``stage_1.pt``), ``"config"`` (``checkpoints/<encoder>/config.yaml``,
            or a YAML with a ``stage_1`` block such as ``64token.yaml``) and ``"stats"`` (``normalization_stats.pt``,
            when the config names one).
        name: ``config.name`` of the result.
        **options: ``entry`` (checkpoint entry, default ``"ema"``), ``encoder_heads``, ``decoder_heads``,
            ``pixel_mean``, ``pixel_std`` (as :func:`authors_v2_to_uae`), ``params`` (the ``stage_1.params``
            mapping, instead of a config file).

    Returns:
        A :class:`uae.UAE` in eval mode.

    Raises:
        InputError: Unknown roles or options, unreadable files, settings or keys that do not convert.
        MissingFileError: A required file is not given (the config, unless ``params`` is) or does not exist.
    """
    allowed = {"entry", "encoder_heads", "decoder_heads", "pixel_mean", "pixel_std", "params"}
    check_release_call("authors' v2 release", files, RELEASE_FILES, options, allowed)
    params = options.pop("params", None)
    if params is None:
        if not files.get("config"):
            raise MissingFileError(
                "authors' v2 release: the config file (config.yaml) is needed (or params=...)", param="config"
            )
        params = read_release_config(files["config"])
    stats = None
    if files.get("stats"):
        stats = read_state_dict(files["stats"], what="latent statistics")
    state = read_checkpoint(files["checkpoint"], options.pop("entry", None))
    return authors_v2_to_uae(state, dict(params), name=name, stats=stats, reuse_source=True, **options)


__all__ = [
    "CONVERSION_CHECK",
    "CONVERTER_VERSION",
    "DECODER_NORM_EPS",
    "ENCODERS",
    "RELEASE_ENCODERS",
    "RELEASE_FILES",
    "STATS_EPS",
    "authors_v2_to_uae",
    "is_v2_state",
    "load_release",
    "read_checkpoint",
    "read_release_config",
    "v2_preprocess",
    "zigzag_settings",
]
