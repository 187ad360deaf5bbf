"""The paper authors' v1 release (WeichenFan/UAE, branch ``old_uae``) converted to an exact uae model.

Follows the original code at commit ``e0f28f7ea0b51b92771590aa40ac399be1adc2ea`` ("update ckpt and
logs", 2025-12-29): ``unified_ae/uae.py`` (``UnifiedUAE``: encode, decode), ``unified_ae/uae_frequency.py``
(``FrequencyBandModulator``: schedule, band transform, denoiser), ``unified_ae/uae_residual_split_flow.py``
(``FFTBandProjector`` + ``UAEResidualSplitFlowProcessor``: the band split), ``unified_ae/decoders/decoder.py``
(``GeneralDecoder``), ``unified_ae/encoders/dinov2.py`` (``Dinov2withNorm``), ``model_utils.py`` and
``eval_uae.py`` (which checkpoint entry is loaded, how images are fed), ``unified_ae/configs/stage1_infer.yaml``.
(``unified_ae/band_reference.py`` is the training-time teacher for the band-0 loss; not needed here.)

What the converted model reproduces (eval mode, the evaluation's ``freq_ratio=1``):

* **Encoder**: transformers ``Dinov2WithRegistersModel``, final LayerNorm without affine (eps 1e-6),
  CLS + 4 registers dropped. Its 37x37 position table is kept and resampled to the input's grid at
  every forward exactly as transformers does (``encoder_pos_resample="hf_dinov2"``).
* **Band split** (``band_scheme="authors_v1"``, see :func:`uae.layers.band_projector.authors_v1_band_masks`):
  ring radii ``v_patch_nums / v_patch_nums[-1] * min(h//2, w//2)`` with a 0 prepended, hard and
  inclusive rings on the integer FFT frequency radius, iterative residual projection, real part;
  frequencies beyond ``min(h//2, w//2)`` are in no band and dropped. The schedule comes from the
  checkpoint's (or the YAML's) ``frequency_config``: ``v_patch_nums`` if set, else their
  ``generate_schedule(freq_first_patch, freq_num_bands, freq_max_patch)``. The shipped release has
  ``v_patch_nums = [0.32, 16.0]``: ``K = 2``, band 0 is the DC term alone on a 16x16 grid.
* **Modulator**: no noise and no band dropping at evaluation; ``band_transform`` (``K x K``
  layers applied in order) then ``fused = sum_k b_k + conv3x3(SiLU(conv3x3(concat_k b_k)))``.
* **Decoder**: MAE-style ViT with all LayerNorm eps 1e-12 (``decoder_norm_eps``), fixed sin-cos
  positions, trainable CLS token, ImageNet-normalised pixels de-normalised with ImageNet mean/std.
* **Checkpoint entry**: ``"model"`` (``model_utils.instantiate_from_config_2`` loads ``state_dict["model"]``;
  the ``"ema"`` lines are commented out), so :func:`load_release` defaults to ``entry="model"``.
* **Pre-processing**: their ``encode`` bicubically resizes any input to ``encoder_input_size`` (224)
  before the encoder (``align_corners=False``, no antialias); their evaluation feeds 256 px centre
  crops. uae never resizes silently: use :func:`v1_preprocess` to feed other sizes the same way.
  The output is always ``grid * decoder_patch_size`` (256 px for the release).

Key map (source under ``encoder.encoder.`` / ``decoder.`` -> uae under ``encoder.vit.`` / ``decoder.``;
the encoder and decoder tables are in :mod:`uae.convert`):

====================================================  ===========================================
source                                                uae
====================================================  ===========================================
``encoder.encoder.embeddings.*``, ``encoder.layer.N``   ``encoder.vit.*`` (transformers DINOv2 table)
``encoder.encoder.embeddings.mask_token``               dropped (masked-image-modeling only)
``decoder.decoder_embed`` / ``decoder_layers.N`` / ...  ``decoder.*`` (MAE decoder table, residual
                                                        channels permuted to timm's sin-cos order)
``decoder.decoder_pos_embed``                           checked (MAE sin-cos), not stored
``freq_modulator.denoiser.0.{weight,bias}``             ``modulator.conv_in.*`` (3x3, ``K*C -> max(2C, 512)``)
``freq_modulator.denoiser.2.{weight,bias}``             ``modulator.conv_out.*`` (3x3, ``-> C``)
``freq_modulator.band_transform.layers.0.weight``       ``modulator.mix_in``
``freq_modulator.band_transform.layers.1.weight``       ``modulator.mix_out`` (later layers multiplied in)
====================================================  ===========================================

Config values not visible in the weights: ``K`` and the ring schedule (``frequency_config``), head
counts (DINOv2: ``C // 64``; decoder by width: ViT-XL 16), and the LayerNorm eps (1e-12, fixed in
their ViT-MAE decoder config).
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from uae.convert.common import (
    Source,
    build_checked,
    convert_mae_decoder,
    count_blocks,
    decoder_config,
    latent_stats,
)
from uae.convert.hf_encoders import convert_encoder
from uae.data.transforms import resize_images
from uae.errors import InputError, MissingFileError
from uae.files import read_state_dict, read_torch_dict, read_yaml_mapping, state_dict_in
from uae.models.config import UAEConfig

logger = logging.getLogger(__name__)

#: File roles of one v1 release: the training checkpoint (``{"model", "ema", "config", ...}``) and,
#: optionally, its YAML config (``stage_1.params``; the checkpoint also embeds it under ``"config"``).
RELEASE_FILES: dict[str, bool] = {"checkpoint": True, "config": False}
#: What was compared with the original code (model cards of ``uae publish``).
CONVERSION_CHECK = (
    "Compared with the authors' original code (github.com/WeichenFan/UAE, branch old_uae, commit "
    "e0f28f7ea0b51b92771590aa40ac399be1adc2ea; transformers 4.57.6, CPU, float32) on a scaled-down model of "
    "the same architecture and band settings with every tensor re-drawn at random (the released weights "
    "themselves were not run through it): for one photograph at 224 and 256 px, the encoder latent, the "
    "two bands, the fused latent and the [0, 1] reconstruction agree within 1e-5 max abs (measured: 0, "
    "6.3e-7, 9.5e-7 and 2.4e-7), also when loaded through create_model(..., pretrained=True) from a Hub "
    "cache (tests/test_authors_v1.py, tests/test_pretrained_releases.py)."
)
#: Part of the converted-cache key (:mod:`uae.models.pretrained`): bump it whenever a converted model's
#: tensors or config change (tests/test_pretrained_releases.py pins the converted layout to it).
#: 2: ``preprocess="adm"`` (the authors' evaluation crop and resize travel with the model).
CONVERTER_VERSION = "2"
#: ``frequency_config`` of the released inference config (``unified_ae/configs/stage1_infer.yaml``).
RELEASED_FREQUENCY_CONFIG: dict[str, Any] = {
    "freq_first_patch": 0.32,
    "freq_num_bands": 2,
    "freq_max_patch": 16.0,
    "v_patch_nums": [0.32, 16.0],
}
#: Their ``FrequencyBandModulator`` defaults, used when a ``frequency_config`` omits a field.
_MODULATOR_DEFAULTS: dict[str, Any] = {"freq_first_patch": 1.0, "freq_num_bands": 10, "freq_max_patch": 16.0}
#: LayerNorm eps of their decoder (``layer_norm_eps`` of the ViT-MAE decoder configs they ship).
DECODER_NORM_EPS = 1e-12


def generate_schedule(first_patch: float, num_bands: int, max_patch: float) -> list[float]:
    """Their default ring schedule: square roots of ``K`` values evenly spaced from ``first^2`` to ``max^2``.

    Strictly increasing (ties nudged by 1e-6), first and last values exactly ``first_patch`` and
    ``max(first_patch, max_patch)``.
    """
    first, num = float(first_patch), max(1, int(num_bands))
    top = float(max_patch)
    if num == 1:
        return [max(first, top)]
    top = max(first, top)
    a, b = first**2, top**2
    step = (b - a) / (num - 1)
    tokens = [a + i * step for i in range(num - 1)] + [b]  # numpy.linspace arithmetic
    out: list[float] = []
    for t in tokens:
        patch = math.sqrt(t)
        if out and patch <= out[-1]:
            patch = out[-1] + 1e-6
        out.append(patch)
    out[0], out[-1] = first, top
    return out


def schedule_from_config(frequency_config: Mapping[str, Any]) -> tuple[float, ...]:
    """The ring schedule a ``FrequencyBandModulator`` builds from its ``frequency_config``.

    Raises:
        InputError: A setting the converted model cannot reproduce (learned projector, dynamic schedule).
    """
    cfg = dict(frequency_config)
    projector = str(cfg.get("residual_projector", "fft")).lower()
    if projector != "fft":
        raise InputError(
            f"frequency_config.residual_projector={projector!r}: only the FFT projector converts"
        )
    dynamic = cfg.get("dynamic_schedule") or {}
    if dynamic.get("enabled"):
        raise InputError("frequency_config.dynamic_schedule is enabled: per-K modulators do not convert")
    if cfg.get("v_patch_nums"):
        return tuple(float(v) for v in cfg["v_patch_nums"])
    vals = {k: cfg.get(k, d) for k, d in _MODULATOR_DEFAULTS.items()}
    return tuple(generate_schedule(vals["freq_first_patch"], vals["freq_num_bands"], vals["freq_max_patch"]))


def model_params(config: Mapping[str, Any], stage: str | None = None) -> dict[str, Any]:
    """``stage_1.params`` of a v1 config (a checkpoint's ``"config"`` entry or the YAML file).

    Accepts ``{"stage_1": {"params": ...}}``, a multi-stage ``{"stages": {name: {"stage_1": ...}}}``
    (``stage`` picks one; default the first, as their training script does) or the params themselves.
    """
    cfg: Any = config
    if "stages" in cfg:
        stages = cfg["stages"] or {}
        if not stages:
            raise InputError("config has an empty 'stages' section")
        key = stage if stage is not None else next(iter(stages))
        if key not in stages:
            raise InputError(f"config has no stage {key!r}; stages: {sorted(stages)}")
        cfg = stages[key]
    if "stage_1" in cfg:
        cfg = cfg["stage_1"]
    if "params" in cfg:
        cfg = cfg["params"]
    if not isinstance(cfg, Mapping):
        raise InputError("config has no stage_1.params mapping")
    return dict(cfg)


def authors_to_uae(
    state: Mapping[str, torch.Tensor],
    *,
    encoder_heads: int | None = None,
    decoder_heads: int | None = None,
    stats: Mapping[str, torch.Tensor] | None = None,
    stats_eps: float = 1e-5,
    name: str = "uae_authors_converted",
    band_scheme: str = "authors_v1",
    band_schedule: tuple[float, ...] | list[float] | None = None,
    decoder_norm_eps: float | None = DECODER_NORM_EPS,
    reuse_source: bool = False,
):  # -> UAE
    """Convert the authors' v1 ``UnifiedUAE`` state dict (the ``"model"`` or ``"ema"`` entry) to a UAE.

    Args:
        state: Keys ``encoder.encoder.*``, ``decoder.*``, ``freq_modulator.*``.
        encoder_heads: Encoder attention heads (default ``C // 64``, as in DINOv2).
        decoder_heads: Decoder attention heads (default by width, see :data:`DECODER_HEADS_BY_WIDTH`).
        stats: Optional ``{"mean", "var"}`` latent statistics (per channel).
        stats_eps: ``eps`` of their normalisation ``(z - mean) / sqrt(var + eps)``.
        name: ``config.name`` of the result.
        band_scheme: ``"authors_v1"`` (their split: the outputs match theirs) or ``"smooth"`` (uae's
            split: the same network on different bands, not their outputs).
        band_schedule: Their ``v_patch_nums`` (``K`` values, see :func:`schedule_from_config`); default:
            the released config's ``freq_first_patch=0.32, freq_max_patch=16`` with ``K`` from the weights
            (``[0.32, 16.0]`` for the shipped ``K=2``).
        decoder_norm_eps: Decoder LayerNorm eps (theirs: 1e-12; ``None``: uae's defaults).
        reuse_source: The converter may overwrite ``state``'s tensors (the decoder's channel permutation is
            done in place: the conversion then holds the release once, not twice). ``load_release`` sets it
            for the files it reads; leave it off for a state dict that is used afterwards.

    Returns:
        A :class:`uae.UAE` in eval mode (``band_mixing=True`` when the checkpoint has band-transform layers).

    Raises:
        InputError: Unknown/missing keys, inconsistent shapes or a schedule whose length is not ``K``.
    """
    src = Source(state, "authors' checkpoint", reuse=reuse_source)
    dec, grid = convert_mae_decoder(src, "decoder.")
    latent_norm = not src.has("encoder.encoder.layernorm.weight")
    enc, ecfg = convert_encoder(
        src, "dinov2", "encoder.encoder.", latent_norm=latent_norm, encoder_heads=encoder_heads
    )
    ecfg.pop("latent_norm")
    cfg: dict[str, Any] = {**ecfg, **decoder_config(dec, decoder_heads)}
    c = cfg["encoder_dim"]

    mod: dict[str, torch.Tensor] = {}
    w_in = src.take("freq_modulator.denoiser.0.weight")
    mod["conv_in.weight"] = w_in
    mod["conv_in.bias"] = src.take("freq_modulator.denoiser.0.bias")
    mod["conv_out.weight"] = src.take("freq_modulator.denoiser.2.weight")
    mod["conv_out.bias"] = src.take("freq_modulator.denoiser.2.bias")
    if w_in.shape[1] % c:
        raise InputError(
            f"freq_modulator.denoiser.0 has {w_in.shape[1]} input channels, not a multiple of C={c}"
        )
    k = w_in.shape[1] // c
    mix_keys = src.keys_with("freq_modulator.band_transform.layers.")
    n_mix = count_blocks(src, "freq_modulator.band_transform.layers.")
    if n_mix:
        layers = [src.take(f"freq_modulator.band_transform.layers.{i}.weight") for i in range(n_mix)]
        if any(w.shape != (k, k) for w in layers):
            raise InputError(
                f"band_transform weights must be ({k}, {k}); got {[tuple(w.shape) for w in layers]}"
            )
        mod["mix_in"] = layers[0]
        mix_out = torch.eye(k, dtype=layers[0].dtype)
        for w in layers[1:]:
            mix_out = w @ mix_out  # layers apply in order: x -> W0 x -> W1 W0 x -> ...
        mod["mix_out"] = mix_out
    elif mix_keys:
        raise InputError(f"unexpected band_transform keys {mix_keys}")
    src.check_consumed()

    schedule: tuple[float, ...] | None = None
    if band_scheme == "authors_v1":
        if band_schedule is None:
            released = RELEASED_FREQUENCY_CONFIG
            band_schedule = generate_schedule(released["freq_first_patch"], k, released["freq_max_patch"])
            logger.info(
                "No v1 ring schedule given; using the released config's for K=%d: %s", k, band_schedule
            )
        schedule = tuple(float(v) for v in band_schedule)
        if len(schedule) != k:
            raise InputError(
                f"the ring schedule {list(schedule)} has {len(schedule)} values but the checkpoint has K={k} bands"
            )
    elif band_schedule is not None:
        raise InputError(f"band_schedule is only used with band_scheme='authors_v1', not {band_scheme!r}")

    config = UAEConfig(
        name=name,
        img_size=grid * cfg["patch_size"],
        encoder_weights="",
        latent_norm=latent_norm,
        num_bands=k,
        band_scheme=band_scheme,
        band_schedule=schedule,
        modulator_hidden_dim=w_in.shape[0],
        modulator_in_kernel=w_in.shape[-1],
        modulator_out_kernel=mod["conv_out.weight"].shape[-1],
        band_mixing=n_mix > 0,
        decoder_norm_eps=decoder_norm_eps,
        preprocess="adm",  # their eval_uae.py: 256 px ADM crops, resized to 224 by their encode
        **cfg,
    )
    full = dict(enc)
    full.update({f"decoder.{a}": v for a, v in dec.items()})
    full.update({f"modulator.{a}": v for a, v in mod.items()})
    full.update(latent_stats(stats, c, stats_eps))
    return build_checked(config, full, "authors' checkpoint", reuse=reuse_source)


# ---------------------------------------------------------------------------------------------- release files
def _check_params(params: Mapping[str, Any], model: Any, what: str) -> None:
    """Settings in the config that the weights cannot show: refuse what would not reproduce their outputs."""
    enc_cls = params.get("encoder_cls", "Dinov2withNorm")
    if enc_cls != "Dinov2withNorm":
        raise InputError(
            f"{what}: encoder_cls={enc_cls!r}; only 'Dinov2withNorm' (DINOv2 with registers) converts"
        )
    if not params.get("reshape_to_2d", True):
        raise InputError(f"{what}: reshape_to_2d=false models have no band split and do not convert")
    size = params.get("encoder_input_size")
    if size is not None and int(size) != model.config.img_size:
        raise InputError(
            f"{what}: encoder_input_size={size} but the weights give a {model.config.grid_size}x"
            f"{model.config.grid_size} grid of {model.config.patch_size} px patches ({model.config.img_size} px)"
        )
    patch = params.get("decoder_patch_size")
    if patch is not None and int(patch) != model.config.decoder_patch_size:
        raise InputError(
            f"{what}: decoder_patch_size={patch} but the weights give {model.config.decoder_patch_size}"
        )
    if params.get("normalization_stat_path"):
        logger.warning(
            "%s: the model normalises its latent with %s; pass those statistics as stats= to store them "
            "(reconstructions do not depend on them)",
            what,
            params["normalization_stat_path"],
        )


def load_release(
    files: Mapping[str, str | os.PathLike],
    *,
    name: str | None = None,
    entry: str = "model",
    stage: str | None = None,
    encoder_heads: int | None = None,
    decoder_heads: int | None = None,
    stats: Mapping[str, torch.Tensor] | str | os.PathLike | None = None,
):  # -> UAE
    """Build the converted UAE (eval mode) from local files of one v1 release, strictly.

    Args:
        files: ``{"checkpoint": path}`` (required; a ``.pt`` with ``"model"``/``"ema"`` and usually the
            training ``"config"``) and optionally ``{"config": path}`` (their YAML; it takes precedence
            over the embedded config). See :data:`RELEASE_FILES`.
        name: ``config.name`` of the result (default ``"uae_authors_converted"``).
        entry: Checkpoint entry to convert: ``"model"`` (what their evaluation loads) or ``"ema"``.
        stage: For a multi-stage YAML (``stages:``), the stage whose ``stage_1`` to read.
        encoder_heads, decoder_heads: Head counts (defaults: ``C // 64``; decoder by width).
        stats: Optional ``{"mean", "var"}`` latent statistics, per channel, or the file holding them (the
            one their ``normalization_stat_path`` names, read with :func:`uae.files.read_state_dict`).

    Returns:
        The converted :class:`uae.UAE` in eval mode.

    Raises:
        MissingFileError: A named file does not exist (a ``FileNotFoundError``).
        InputError: Unknown file roles, a missing entry, or weights/config the converter cannot reproduce
            (a ``ValueError``).
    """
    unknown = sorted(set(files) - set(RELEASE_FILES))
    if unknown:
        raise InputError(f"unknown v1 release file role(s) {unknown}; expected {sorted(RELEASE_FILES)}")
    if "checkpoint" not in files:
        raise MissingFileError("a v1 release needs its 'checkpoint' file (.pt with 'model'/'ema')")
    ckpt_path = Path(files["checkpoint"])
    obj = read_torch_dict(ckpt_path, "v1 checkpoint")
    state = state_dict_in(obj, ckpt_path, entry)
    if isinstance(stats, (str, os.PathLike)):
        stats = read_state_dict(stats, what="latent statistics")

    if files.get("config") is not None:
        cfg_path = Path(files["config"])
        raw_cfg, what = read_yaml_mapping(cfg_path, "v1 config"), str(cfg_path)
    elif isinstance(obj.get("config"), dict):
        raw_cfg, what = obj["config"], f"{ckpt_path} (embedded config)"
    else:
        raw_cfg, what = None, ""
    schedule: tuple[float, ...] | None = None
    params: dict[str, Any] = {}
    if raw_cfg is None:
        logger.warning(
            "%s has no embedded config and none was given: using the released config's ring schedule "
            "(freq_first_patch=0.32, freq_max_patch=16, K from the weights)",
            ckpt_path,
        )
    else:
        params = model_params(raw_cfg, stage)
        freq = params.get("frequency_config")
        if not freq:
            raise InputError(
                f"{what}: no frequency_config (models without the band modulator do not convert)"
            )
        schedule = schedule_from_config(freq)
    model = authors_to_uae(
        state,
        encoder_heads=encoder_heads,
        decoder_heads=decoder_heads,
        stats=stats,
        name=name or "uae_authors_converted",
        band_schedule=schedule,
        reuse_source=True,  # read here, used by nobody else
    )
    _check_params(params, model, what)
    return model


def v1_preprocess(images: torch.Tensor, size: int = 224) -> torch.Tensor:
    """Resize images to the encoder input size the way their ``UnifiedUAE.encode`` does.

    The same function as :func:`uae.data.resize_images` (one implementation; kept under this name for
    code written against it). To read image files the way the authors evaluate, use the model's data
    config: ``uae.data.create_transform(uae.data.resolve_data_config(model))``, which crops (ADM) and
    resizes in one step.

    Their evaluation feeds 256 px centre crops; ``encode`` resizes every input whose side is not
    ``encoder_input_size`` with bicubic interpolation (``align_corners=False``, no antialias). The
    result is not clamped (theirs is not): bicubic overshoot leaves ``[0, 1]`` by a little, which
    uae's input check tolerates.

    Args:
        images: ``(B, 3, H, W)`` in ``[0, 1]``.
        size: The converted model's ``config.img_size``.

    Returns:
        ``(B, 3, size, size)``; ``images`` itself when it already has that size.
    """
    return resize_images(images, size)


__all__ = [
    "CONVERSION_CHECK",
    "CONVERTER_VERSION",
    "DECODER_NORM_EPS",
    "RELEASED_FREQUENCY_CONFIG",
    "RELEASE_FILES",
    "authors_to_uae",
    "generate_schedule",
    "load_release",
    "model_params",
    "schedule_from_config",
    "v1_preprocess",
]
