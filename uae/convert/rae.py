"""RAE's released decoders (bytetriper/RAE, Hub ``nyu-visionx/RAE-collections``) as exact uae models.

Followed: ``bytetriper/RAE`` branch ``main``, commit ``a4d18c4db766419cbe7cb8c02cd9f7ceb0ec9041``, files
``src/stage1/rae.py`` (``RAE.encode`` / ``decode``), ``src/stage1/encoders/{dinov2,siglip2,mae}.py``
(``Dinov2withNorm``, ``SigLIP2wNorm``, ``MAEwNorm``), ``src/stage1/decoders/decoder.py``
(``GeneralDecoder``, ``ViTMAELayer``), ``configs/decoder/{ViTB,ViTL,ViTXL}/config.json``,
``configs/stage1/pretrained/{DINOv2-B,DINOv2-B_512,SigLIP2,MAE}.yaml``, ``src/calculate_stat.py`` and
``src/extract_decoder.py``.

**The encoder a decoder was trained with is never guessed.** RAE's decoders for DINOv2-B, SigLIP2-B and
MAE-B have the same tensor shapes (768-wide latent on a 16x16 grid, ViT-XL), so the weights cannot tell
them apart. The family (:data:`RAE_ENCODERS`) comes from the ``encoder`` option, RAE's stage-1 config
(``encoder_cls``, the ``config`` file role) or the release layout of the decoder's path
(``decoders/<family>/...``); sources that disagree, encoder weights of another family, or no source at
all are refused with one line. What the three encoders compute in RAE (at evaluation):

* DINOv2 (``Dinov2withNorm``): ``Dinov2WithRegistersModel``, ``last_hidden_state[:, 5:]``, 224 px (448
  for the 512 px decoder), patch 14, the 37x37 table resampled per input (``"hf_dinov2"``).
* SigLIP2 (``SigLIP2wNorm``): ``SiglipModel.from_pretrained(...).vision_model`` of
  ``google/siglip2-base-patch16-256``, ``last_hidden_state`` (no CLS), ``post_layernorm`` without
  affine, ``interpolate_pos_encoding=True``; 256 px, patch 16, 16x16 table (no resampling at 256 px).
* MAE (``MAEwNorm``): ``ViTMAEForPreTraining.from_pretrained(...).vit`` of ``facebook/vit-mae-base``
  with ``mask_ratio = 0`` and ``noise = arange`` (nothing masked, patch order kept: the encoder sees the
  whole image), final ``layernorm`` without affine, ``last_hidden_state[:, 1:]``; 256 px, patch 16, the
  14x14 table (224 px pre-training) resampled to 16x16 by bicubic interpolation without antialias
  (``"hf_clip"``).

What RAE's forward does at evaluation (``noise_tau: 0.`` in the released configs, and the noise is
only added in training mode), and how uae reproduces it:

* Input: ``[0, 1]`` images (their evaluation: ADM centre crops at 256 px, 512 for the 512 px decoder),
  resized bicubically (no antialias) to ``encoder_input_size`` only when the size differs, then
  normalised with the encoder's image-processor mean/std (ImageNet for DINOv2 and MAE, 0.5 for
  SigLIP2). uae: ``img_size`` = the decoder's grid times the encoder's patch, the same statistics, and
  ``preprocess="adm"`` (the crop and that resize happen in :func:`uae.data.create_transform`).
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
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
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
from uae.convert.hf_encoders import convert_hf_encoder, detect_family
from uae.errors import InputError, MissingFileError
from uae.files import read_state_dict, read_yaml_mapping
from uae.models.config import UAEConfig


@dataclass(frozen=True)
class RaeEncoder:
    """One of RAE's frozen encoders, as its released stage-1 configs use it.

    Attributes:
        family: uae's ``encoder_family``.
        encoder_cls: RAE's class name (``encoder_cls`` of ``configs/stage1/pretrained/*.yaml``).
        hub_id: The transformers model RAE loads (``encoder_config_path``).
        input_size: ``encoder_input_size`` of the 256 px release.
        patch_size: The encoder's patch size.
    """

    family: str
    encoder_cls: str
    hub_id: str
    input_size: int
    patch_size: int


#: RAE's encoders by family (``configs/stage1/pretrained/{DINOv2-B,SigLIP2,MAE}.yaml``).
RAE_ENCODERS: dict[str, RaeEncoder] = {
    "dinov2": RaeEncoder("dinov2", "Dinov2withNorm", "facebook/dinov2-with-registers-base", 224, 14),
    "siglip2": RaeEncoder("siglip2", "SigLIP2wNorm", "google/siglip2-base-patch16-256", 256, 16),
    "mae": RaeEncoder("mae", "MAEwNorm", "facebook/vit-mae-base", 256, 16),
}
#: The release layout's decoder folders name the encoder (``decoders/siglip2/base_p16_i256/...``).
_DECODER_PATH = re.compile(r"(?:^|/)decoders/(" + "|".join(RAE_ENCODERS) + r")/")

#: LayerNorm eps of RAE's decoders (``layer_norm_eps`` in ``configs/decoder/*/config.json``).
RAE_DECODER_NORM_EPS = 1e-12
#: ``eps`` of RAE's latent normalisation (``RAE.__init__`` default; no released config overrides it).
RAE_STATS_EPS = 1e-5
#: File roles of one RAE release -> required? (``decoder``: ``model.pt``; ``stats``: ``stat.pt``;
#: ``encoder``: the encoder's weights (transformers naming; DINOv2 also timm/facebookresearch);
#: ``config``: RAE's stage-1 YAML, ``configs/stage1/pretrained/*.yaml``, naming the encoder).
RELEASE_FILES: dict[str, bool] = {"decoder": True, "stats": False, "encoder": False, "config": False}
#: What was compared with the original code (model cards of ``uae publish``).
CONVERSION_CHECK = (
    "Compared with RAE's original code (github.com/bytetriper/RAE, branch main, commit "
    "a4d18c4db766419cbe7cb8c02cd9f7ceb0ec9041; transformers 4.57.6, CPU, float32) on scaled-down "
    "DINOv2-with-registers, SigLIP2 and ViT-MAE encoders and ViT-B/L/XL-shaped decoders with every tensor "
    "re-drawn at random (the released weights themselves were not run through it), without and with latent "
    "statistics: the encoder latent, the normalised latent and the unclamped reconstruction agree within "
    "1e-5 max abs (measured: latents 0, images up to 4.8e-7), also when loaded through "
    "create_model(..., pretrained=True) from a Hub cache (tests/test_convert_rae.py, "
    "tests/test_convert_rae_encoders.py, tests/test_pretrained_releases.py)."
)
#: Part of the converted-cache key (:mod:`uae.models.pretrained`): bump it whenever a converted model's
#: tensors or config change (tests/test_pretrained_releases.py pins the converted layout to it).
#: 2: ``preprocess="adm"`` (RAE's evaluation crop and resize travel with the model); SigLIP2 and MAE.
CONVERTER_VERSION = "2"


def encoder_family_of(
    *,
    encoder: str | None = None,
    config: Mapping[str, Any] | None = None,
    decoder_path: str | os.PathLike | None = None,
) -> str:
    """The encoder family an RAE decoder was trained with, from the sources that can say it.

    Args:
        encoder: Stated by the caller (``"dinov2"``, ``"siglip2"`` or ``"mae"``).
        config: RAE's stage-1 config (``{"stage_1": {"params": {"encoder_cls": ...}}}`` or its params).
        decoder_path: The decoder file; the release layout names the family (``decoders/mae/...``).

    Returns:
        The family (a key of :data:`RAE_ENCODERS`).

    Raises:
        InputError: An unknown family or ``encoder_cls``, sources that disagree, or none at all
            (``param="encoder"``).
    """
    said: dict[str, str] = {}
    if encoder is not None:
        if encoder not in RAE_ENCODERS:
            raise InputError(
                f"encoder must be one of {', '.join(RAE_ENCODERS)} (RAE's encoders), got {encoder!r}",
                param="encoder",
            )
        said["given"] = encoder
    if config is not None:
        cls = _config_params(config).get("encoder_cls")
        by_cls = {e.encoder_cls: f for f, e in RAE_ENCODERS.items()}
        if cls not in by_cls:
            raise InputError(
                f"RAE config: encoder_cls {cls!r} is none of RAE's released encoders ({', '.join(by_cls)})",
                param="config",
            )
        said["config (encoder_cls)"] = by_cls[cls]
    if decoder_path is not None and (m := _DECODER_PATH.search(Path(decoder_path).as_posix())):
        said["decoder path"] = m.group(1)
    if not said:
        raise InputError(
            "encoder is not given and nothing says which one this RAE decoder was trained with (RAE's DINOv2, "
            "SigLIP2 and MAE decoders have the same shapes): give encoder 'dinov2', 'siglip2' or 'mae', or RAE's "
            "stage-1 config (configs/stage1/pretrained/*.yaml)",
            param="encoder",
        )
    if len(set(said.values())) > 1:
        raise InputError(
            "encoder: the sources disagree on which encoder this RAE decoder was trained with: "
            + ", ".join(f"{k} {v!r}" for k, v in said.items()),
            param="encoder",
        )
    return next(iter(said.values()))


def _config_params(config: Mapping[str, Any]) -> Mapping[str, Any]:
    """``stage_1.params`` of RAE's stage-1 YAML (or the mapping itself when it is the params)."""
    stage = config.get("stage_1", config)
    params = stage.get("params", stage) if isinstance(stage, Mapping) else None
    if not isinstance(params, Mapping):
        raise InputError(
            "RAE config: expected stage_1.params (configs/stage1/pretrained/*.yaml)", param="config"
        )
    return params


def _encoder_weights(
    family: str, encoder_state: Mapping[str, torch.Tensor] | None, encoder_heads: int | None
) -> tuple[dict[str, torch.Tensor] | None, dict[str, Any] | None]:
    """``(converted "encoder.vit.*" tensors, config fields)`` of transformers weights of ``family``;
    ``(None, None)`` for timm-named DINOv2 weights or none (the encoder's own loader takes those).

    Raises:
        InputError: Weights of another family, or (SigLIP2/MAE) not in transformers naming.
    """
    if encoder_state is None:
        return None, None
    found = detect_family(encoder_state)
    if found is None and family == "dinov2":
        return None, None  # timm / facebookresearch names: DINOv2's own strict loader
    if found != family:
        what = f"hold a transformers {found} encoder" if found else "are not a transformers vision encoder"
        raise InputError(
            f"encoder_weights {what}, but this RAE decoder was trained with {family!r}: give the weights of "
            f"{RAE_ENCODERS[family].hub_id}",
            param="encoder_weights",
        )
    enc = convert_hf_encoder(encoder_state, family, latent_norm=True, encoder_heads=encoder_heads)
    cfg = dict(enc.config)
    for key in ("img_size", "latent_norm", "encoder_family"):
        cfg.pop(key)
    return enc.state, cfg


def rae_to_uae(
    decoder_state: Mapping[str, torch.Tensor],
    encoder_state: Mapping[str, torch.Tensor] | None = None,
    *,
    encoder: str | None = None,
    encoder_heads: int | None = None,
    decoder_heads: int | None = None,
    stats: Mapping[str, torch.Tensor] | None = None,
    stats_eps: float = RAE_STATS_EPS,
    decoder_norm_eps: float | None = RAE_DECODER_NORM_EPS,
    name: str | None = None,
    reuse_source: bool = False,
):  # -> UAE
    """Convert an RAE decoder (``model.pt``) plus its encoder's weights to a UAE with ``K=1``.

    The band modulator is the identity (both convs zero), so the model is RAE's autoencoder:
    ``decoder(LayerNorm(encoder(x)))``.

    Args:
        decoder_state: RAE ``GeneralDecoder`` state dict (``decoder_embed.*``, ``decoder_layers.N.*``, ...;
            a ``decoder.`` prefix is accepted).
        encoder_state: The encoder's weights: transformers naming for every family (a whole
            ``SiglipModel`` or ``ViTMAEForPreTraining`` file is fine), DINOv2 also in timm or
            facebookresearch naming. ``None``: DINOv2 loads ``config.encoder_weights`` (the timm Hub id)
            from the Hub cache; SigLIP2 and MAE read their transformers ``model.safetensors`` from it.
        encoder: The family the decoder was trained with (:data:`RAE_ENCODERS`); ``None`` takes the
            family of ``encoder_state`` (which must then be given).
        encoder_heads: Encoder attention heads (default ``C // 64``).
        decoder_heads: Decoder attention heads (default by width: ViT-B 12, ViT-L 16, ViT-XL 16).
        stats: Optional ``stat.pt`` contents ``{"mean", "var"}``, per channel (``(C,)``, ``(C, 1, 1)``)
            or per position (``(C, h, w)``, ``(1, C, h, w)``); stored as ``latent_mean`` and
            ``latent_std = sqrt(var + stats_eps)`` with the matching ``config.latent_stats``.
        stats_eps: ``eps`` of RAE's ``(z - mean) / sqrt(var + eps)`` (1e-5).
        decoder_norm_eps: eps of the decoder's LayerNorms (RAE's 1e-12; ``None``: uae's defaults).
        name: ``config.name`` (default ``uae_rae_base_p14_dinov2``, ``uae_rae_base_p16_siglip2`` or
            ``uae_rae_base_p16_mae`` for a 768-wide latent).
        reuse_source: The converter may overwrite ``state``'s tensors (the decoder's channel permutation is
            done in place: the conversion then holds the release once, not twice). ``load_release`` sets it
            for the files it reads; leave it off for a state dict that is used afterwards.

    Returns:
        A :class:`uae.UAE` in eval mode (``config.preprocess="adm"``: RAE's evaluation crop and resize).

    Raises:
        InputError: Unknown/missing keys, inconsistent shapes, an unknown family, or encoder weights of
            another family than ``encoder`` (one line naming both).
        MissingFileError: No encoder weights given and none in the Hub cache.
    """
    from uae.models.loading import build_empty
    from uae.models.uae import UAE

    if encoder is None:
        found = detect_family(encoder_state) if encoder_state is not None else None
        if (
            encoder_state is not None
            and found is None
            and "patch_embed.proj.weight" in _unprefixed(encoder_state)
        ):
            found = "dinov2"  # timm / facebookresearch names exist for DINOv2 only
        encoder = encoder_family_of(encoder=found) if found in RAE_ENCODERS else encoder_family_of()
    else:
        encoder = encoder_family_of(encoder=encoder)
    spec = RAE_ENCODERS[encoder]
    dstate = dict(decoder_state)
    if dstate and all(k.startswith("decoder.") for k in dstate):
        dstate = {k[len("decoder.") :]: v for k, v in dstate.items()}
    src = Source(dstate, "RAE decoder checkpoint", reuse=reuse_source)
    dec, grid = convert_mae_decoder(src, "")
    src.check_consumed()
    dcfg = decoder_config(dec, decoder_heads)
    c = dec["embed.weight"].shape[1]

    if encoder_state is None and encoder != "dinov2":
        encoder_state = _hub_encoder(spec)
    enc, ecfg = _encoder_weights(encoder, encoder_state, encoder_heads)
    if ecfg is None and encoder_state is not None:
        ecfg = timm_encoder_config(encoder_state, encoder_heads)
    elif ecfg is None:
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
    default_name = (
        f"uae_rae_base_p{spec.patch_size}_{encoder}" if c == 768 else f"uae_rae_{encoder}_c{c}_converted"
    )
    config = UAEConfig(
        name=name or default_name,
        img_size=grid * ecfg["patch_size"],
        encoder_family=encoder,
        encoder_weights=DINOV2_TIMM_IDS.get(c, "") if encoder == "dinov2" else "",
        latent_norm=True,
        latent_stats=stats_layout(stats, c, grid),
        decoder_norm_eps=decoder_norm_eps,
        num_bands=1,
        num_semantic_bands=1,
        modulator_hidden_dim=8,
        modulator_in_kernel=1,
        modulator_out_kernel=1,
        preprocess="adm",
        **ecfg,
        **dcfg,
    )
    if enc is None:
        # timm / facebookresearch naming (or the Hub cache): the encoder's own strict loader.
        model = build_empty(UAE, config, source="RAE checkpoint")  # the encoder takes the weights as they are
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
    return build_checked(config, full, "RAE checkpoint", reuse=reuse_source)


def _unprefixed(state: Mapping[str, torch.Tensor]) -> set[str]:
    """Key names without a common wrapper prefix (as the DINOv2 loader strips them)."""
    keys = set(state)
    for prefix in ("module.", "backbone.", "encoder.vit.", "vit."):
        if keys and all(k.startswith(prefix) for k in keys):
            keys = {k[len(prefix) :] for k in keys}
    return keys


def _hub_encoder(spec: RaeEncoder) -> dict[str, torch.Tensor]:
    """The transformers weights RAE loads for ``spec`` (``model.safetensors`` of its Hub repo, cache first).

    Raises:
        MissingFileError: Not available (offline and not cached), naming the repo and file.
    """
    from uae.models.hub import hub_download

    hint = f"or pass the encoder weights (encoder_weights=, the 'encoder' file role) of {spec.hub_id}"
    try:
        path = hub_download(spec.hub_id, "model.safetensors", hint=hint)
    except MissingFileError as e:
        raise MissingFileError(
            f"RAE's {spec.family} decoder needs its encoder: {e}", param="encoder_weights"
        ) from e
    return read_state_dict(path, what="encoder weights")


def load_release(
    files: Mapping[str, str | os.PathLike], *, name: str | None = None, **options: Any
):  # -> UAE
    """Build the converted UAE (eval mode) from local files of one RAE release, strictly.

    Args:
        files: Role -> local path (:data:`RELEASE_FILES`): ``"decoder"`` (required; ``model.pt``, a
            ``GeneralDecoder`` state dict), ``"stats"`` (optional; ``stat.pt`` with ``mean``/``var``),
            ``"encoder"`` (optional; the encoder's weights, e.g. transformers' ``model.safetensors`` of
            ``facebook/dinov2-with-registers-base``, ``google/siglip2-base-patch16-256`` or
            ``facebook/vit-mae-base``; default: from the Hub cache), ``"config"`` (optional; RAE's
            stage-1 YAML, whose ``encoder_cls`` names the encoder and whose ``encoder_input_size`` must
            agree with the decoder).
        name: ``config.name`` of the result.
        **options: ``encoder`` (the family: ``"dinov2"``, ``"siglip2"`` or ``"mae"``; needed unless the
            config or the decoder's path in the release layout, ``decoders/<family>/...``, says it),
            ``entry`` (the decoder file's entry; default ``"ema"``, else ``"model"``, else the file
            itself), ``encoder_heads``, ``decoder_heads``, ``stats_eps``, ``decoder_norm_eps`` (as
            :func:`rae_to_uae`).

    Returns:
        A :class:`uae.UAE` in eval mode.

    Raises:
        InputError: Unknown file roles or options, unreadable files, keys or shapes that do not convert,
            an ambiguous or mismatched encoder (one line, ``param="encoder"`` / ``"encoder_weights"``).
        MissingFileError: A given file is missing, or the required decoder file is not given.
    """
    allowed = {"entry", "encoder", "encoder_heads", "decoder_heads", "stats_eps", "decoder_norm_eps"}
    check_release_call("RAE release", files, RELEASE_FILES, options, allowed)
    for role, path in files.items():  # a missing file is named before anything is decided or read
        if path and not Path(path).is_file():
            raise MissingFileError(f"RAE {role} file not found: {path}")
    config = read_yaml_mapping(files["config"], "RAE stage-1 config") if files.get("config") else None
    family = encoder_family_of(
        encoder=options.pop("encoder", None), config=config, decoder_path=files["decoder"]
    )
    decoder = read_state_dict(files["decoder"], options.pop("entry", None))
    stats = read_state_dict(files["stats"], what="latent statistics") if files.get("stats") else None
    if stats is not None:
        extra = sorted(set(stats) - {"mean", "var"})
        if extra or not stats:
            raise InputError(
                f"{files['stats']}: expected 'mean' and 'var' latent statistics, got {sorted(stats)}"
            )
    encoder = read_state_dict(files["encoder"], what="encoder weights") if files.get("encoder") else None
    model = rae_to_uae(decoder, encoder, encoder=family, stats=stats, name=name, reuse_source=True, **options)
    size = _config_params(config).get("encoder_input_size") if config is not None else None
    if size is not None and size != model.config.img_size:
        raise InputError(
            f"RAE config: encoder_input_size {size} does not match the decoder ({model.config.grid_size}x"
            f"{model.config.grid_size} latent grid x patch {model.config.patch_size} = {model.config.img_size} px)",
            param="config",
        )
    return model
