"""The one flat configuration dataclass of a UAE model (saved as ``config.json``)."""

from __future__ import annotations

import dataclasses
import functools
import logging
import math
import types
import typing
from dataclasses import dataclass, fields
from typing import Any, Literal

from uae.errors import ConfigError

logger = logging.getLogger(__name__)

#: Keys that ``config.json`` carries besides the dataclass fields (stamped on save, checked on load).
METADATA_KEYS = ("architecture", "uae_version")
ARCHITECTURE = "UAE"

#: Transform the bands are cut in: the 2-D FFT (paper v1) or the orthonormal DCT-II (authors' v2).
BandTransform = Literal["fft", "dct"]
#: How the latent spectrum is cut into bands: uae's smooth split (new models) or a release's own scheme.
BandScheme = Literal["smooth", "authors_v1", "dct_zigzag"]
#: Shape of the stored latent statistics: one value per channel ``(C,)`` or per position ``(C, h, w)``.
LatentStats = Literal["per_channel", "per_position"]
#: Encoder families (timm ViT options reproducing transformers' Dinov2WithRegisters, CLIP, SigLIP2 and ViT-MAE).
EncoderFamily = Literal["dinov2", "clip", "siglip2", "mae"]
#: How the encoder's position table is resampled to the input grid at every forward.
PosResampleRule = Literal["timm", "hf_dinov2", "hf_clip", "hf_siglip"]
#: How an image file becomes the model's input at evaluation and inference (``model.pretrained_cfg``).
Preprocess = Literal["uae", "adm"]

BAND_TRANSFORMS: tuple[str, ...] = typing.get_args(BandTransform)
BAND_SCHEMES: tuple[str, ...] = typing.get_args(BandScheme)
LATENT_STATS: tuple[str, ...] = typing.get_args(LatentStats)
ENCODER_FAMILIES: tuple[str, ...] = typing.get_args(EncoderFamily)
POS_RESAMPLE_RULES: tuple[str, ...] = typing.get_args(PosResampleRule)
PREPROCESSES: tuple[str, ...] = typing.get_args(Preprocess)


#: Range of numeric fields: name -> (min, max, min_inclusive); checked after the type check. Fields not
#: listed only get the type check (and floats must be finite). ``None`` values of ``X | None`` fields
#: are not range-checked. num_bands, num_semantic_bands, noise_std, noise_min_band and band_softness
#: have their own checks (with their explanations) in :meth:`UAEConfig.validate`.
FIELD_RANGES: dict[str, tuple[float | None, float | None, bool]] = {
    "img_size": (1, None, True),
    "patch_size": (1, None, True),
    "encoder_dim": (1, None, True),
    "encoder_depth": (1, None, True),
    "encoder_heads": (1, None, True),
    "encoder_mlp_ratio": (0, None, False),
    "encoder_reg_tokens": (0, None, True),
    "encoder_init_values": (0, None, False),
    "modulator_hidden_dim": (1, None, True),
    "modulator_in_kernel": (1, None, True),
    "modulator_out_kernel": (1, None, True),
    "decoder_dim": (1, None, True),
    "decoder_depth": (1, None, True),
    "decoder_heads": (1, None, True),
    "decoder_mlp_ratio": (0, None, False),
    "decoder_patch_size": (1, None, True),
}


def _type_name(tp: Any) -> str:
    choices = _literal_choices(tp)
    if choices:
        kinds = {type(c) for c in choices}
        return f"{_type_name(kinds.pop())}, one of {choices}" if len(kinds) == 1 else f"one of {choices}"
    if tp is type(None):
        return "None"
    if isinstance(tp, type) and not typing.get_args(tp):
        return {"int": "an int", "float": "a number", "bool": "a bool (true/false)", "str": "a string"}.get(
            tp.__name__, tp.__name__
        )
    return str(tp).replace("typing.", "")


def _matches(value: Any, tp: Any) -> bool:
    """Whether ``value`` is of type ``tp``: bool is not an int, int is a float, lists pass for tuples."""
    if tp is Any:
        return True
    if tp is type(None) or tp is None:
        return value is None
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        return any(_matches(value, a) for a in args)
    if origin is typing.Literal:
        return any(value == a and type(value) is type(a) for a in args)
    if tp is bool:
        return isinstance(value, bool)
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if tp is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if origin is tuple or tp is tuple:
        if not isinstance(value, (tuple, list)):
            return False
        if not args:
            return True
        if len(args) == 2 and args[1] is Ellipsis:
            return all(_matches(v, args[0]) for v in value)
        return len(value) == len(args) and all(_matches(v, a) for v, a in zip(value, args))
    if origin is list or tp is list:
        return isinstance(value, list) and (not args or all(_matches(v, args[0]) for v in value))
    if origin is dict or tp is dict:
        return isinstance(value, dict) and (
            not args or all(_matches(k, args[0]) and _matches(v, args[1]) for k, v in value.items())
        )
    if isinstance(tp, type):
        return isinstance(value, tp)
    return True  # an annotation this checker does not understand: accept


def _literal_choices(tp: Any) -> tuple[Any, ...]:
    """The values of a ``Literal[...]`` annotation (``()`` for any other annotation)."""
    return typing.get_args(tp) if typing.get_origin(tp) is Literal else ()


def _type_problem(name: str, value: Any, tp: Any) -> str | None:
    """Why ``value`` does not fit the annotation ``tp`` of field ``name`` (``None`` when it does)."""
    if _matches(value, tp):
        return None
    choices = _literal_choices(tp)
    if choices and any(type(value) is type(c) for c in choices):  # the right type, not one of the values
        return f"{name} must be one of {choices}, got {value!r}"
    return f"{name} must be {_type_name(tp)}, got {type(value).__name__} {value!r}"


def _is_tuple_type(tp: Any) -> bool:
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        return any(_is_tuple_type(a) for a in typing.get_args(tp))
    return tp is tuple or typing.get_origin(tp) is tuple


def _check_range(name: str, value: Any) -> str | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    if isinstance(value, float) and not math.isfinite(value):
        return f"{name} must be finite, got {value}"
    lo, hi, lo_inclusive = FIELD_RANGES.get(name, (None, None, True))
    if lo is not None and (value < lo if lo_inclusive else value <= lo):
        return f"{name} must be {'>=' if lo_inclusive else '>'} {lo}, got {value}"
    if hi is not None and value > hi:
        return f"{name} must be <= {hi}, got {value}"
    return None


@dataclass
class UAEConfig:
    """Everything needed to build a :class:`uae.UAE`; weights and buffers live in ``model.safetensors``.

    The defaults are the paper's DINOv2-B setting: a ViT-B/14 encoder with 4 registers at 224 px
    (16x16x768 latent grid), 4 frequency bands and a ViT-XL pixel decoder (patch 16, 256 px output).

    Attributes:
        name: Registry name the config was built from (informational).
        img_size: Encoder input resolution (square). Other sizes divisible by ``patch_size`` also work.
        patch_size: Encoder patch size; the latent grid is ``img_size // patch_size``.
        encoder_dim: Encoder width ``C``; also the latent channel count.
        encoder_depth: Number of encoder transformer blocks.
        encoder_heads: Encoder attention heads.
        encoder_mlp_ratio: Encoder MLP hidden ratio.
        encoder_reg_tokens: Register tokens (DINOv2 "with registers" uses 4); dropped from the latent.
        encoder_init_values: LayerScale init (DINOv2 uses 1e-5); ``None`` disables LayerScale.
        encoder_family: ``"dinov2"`` (DINOv2 with registers), ``"clip"`` (OpenAI CLIP vision tower:
            pre-norm, QuickGELU, latent = last block output), ``"siglip2"`` (SigLIP2 fixed-resolution
            vision tower: no CLS token, tanh GELU) or ``"mae"`` (ViT-MAE encoder, no masking: RAE's MAE
            release). See ``docs/released_models.md``.
        encoder_pos_grid: Side of the encoder's stored position table; ``None`` means ``grid_size``.
            Converted transformers encoders keep their source table (DINOv2: 37 from 518 px).
        encoder_pos_resample: How the table is resampled to the input's grid at every forward:
            ``"timm"`` (timm's antialiased bicubic), ``"hf_dinov2"``, ``"hf_clip"`` or ``"hf_siglip"``
            (transformers' ``interpolate_pos_encoding`` of that model, bit for bit).
        encoder_weights: Where :meth:`uae.UAE.load_encoder_weights` looks by default: a timm Hub id
            (``"timm/vit_base_patch14_reg4_dinov2.lvd142m"``) or a local file. Never read at construction.
        latent_norm: Replace the encoder's final LayerNorm by a LayerNorm without affine parameters
            (as RAE and the authors do), so the latent has unit per-token statistics.
        band_transform: ``"fft"`` (paper v1: radial masks on the 2-D FFT) or ``"dct"`` (authors' v2:
            orthonormal DCT-II, radial masks on the DCT index).
        band_scheme: ``"smooth"`` (uae's raised-cosine radial split whose last band takes the whole
            residual; the default for new models), ``"authors_v1"`` (the authors' v1 hard ring schedule,
            for their converted weights) or ``"dct_zigzag"`` (the authors' v2 keep-N zigzag DCT low-pass).
        zigzag_keep_count: ``dct_zigzag`` only: coefficients ``N`` kept at evaluation (the first ``N``
            of the zigzag scan of the DCT grid); ``None`` turns the low-pass off at evaluation.
        zigzag_count_min: ``dct_zigzag`` only: smallest ``N`` drawn per sample in training
            (with ``zigzag_count_max``); ``None``: training uses ``zigzag_keep_count``.
        zigzag_count_max: ``dct_zigzag`` only: largest ``N`` drawn per sample in training.
        zigzag_apply_prob: ``dct_zigzag`` only: probability that a training batch is low-passed.
        band_schedule: ``band_scheme="authors_v1"`` only: the release's ``v_patch_nums`` ring schedule
            (``num_bands`` non-decreasing values, scaled so the last one is ``min(h, w) // 2``);
            ``None`` gives evenly spaced ring radii. Must be ``None`` for the other schemes.
        num_bands: Number of frequency bands ``K`` (1..16). 4 by default: the paper finds 2-10 equal
            in quality; with 4 bands on a 16x16 grid band 0 is a real low-frequency disc (radius
            1/4 of Nyquist, 13 frequencies) rather than only the DC term.
        band_softness: Width of the raised-cosine transition between bands, as a fraction of one
            band's width (0 gives hard ring masks, 1 the smoothest non-overlapping-DC masks).
        num_semantic_bands: ``K_base``: the lowest bands tied to the teacher by the semantic loss.
        noise_std: Std of the Gaussian noise added to the high bands (training mode only).
        noise_min_band: First band that receives noise (>= 1: band 0 is never noised).
        modulator_hidden_dim: Hidden channels of the spectral transform (conv, SiLU, conv).
        modulator_in_kernel: Kernel size of the first spectral-transform conv (on ``K*C`` channels).
        modulator_out_kernel: Kernel size of the second (zero-initialised) conv.
        band_mixing: Add the authors' learnable ``K x K`` band-mixing pair (identity-initialised).
        decoder_dim: Pixel-decoder width.
        decoder_depth: Pixel-decoder blocks.
        decoder_heads: Pixel-decoder attention heads.
        decoder_mlp_ratio: Pixel-decoder MLP ratio (ViT-XL: 4096 / 1152).
        decoder_patch_size: Pixels per latent cell on each side; output size is ``grid * decoder_patch_size``.
        decoder_norm_eps: eps of every decoder LayerNorm; ``None`` keeps uae's (1e-5 in the blocks, 1e-6
            for the final norm). Converted MAE-style decoders (the authors' releases, RAE) use 1e-12.
        latent_stats: Shape of the ``latent_mean`` / ``latent_std`` buffers: ``"per_channel"`` ``(C,)``
            or ``"per_position"`` ``(C, h, w)`` on the ``grid_size`` grid (RAE's released ``stat.pt``).
        preprocess: How an image becomes the model's input at evaluation and inference
            (``model.pretrained_cfg``, :func:`uae.data.create_transform`): ``"uae"`` (a square centre
            crop of the whole shorter side, resized by PIL, bicubic and antialiased, to ``img_size``, the
            reference at ``output_size`` from the same crop: what uae's recipes train on) or ``"adm"``
            (the converted releases' own evaluation, the authors' and RAE's: ADM's ``center_crop_arr``
            at ``output_size`` is the reference, resized to ``img_size`` by torch's bicubic
            interpolation without antialiasing, as their ``encode`` does).
    """

    name: str = "uae_base_p14_dinov2"
    img_size: int = 224
    patch_size: int = 14
    encoder_dim: int = 768
    encoder_depth: int = 12
    encoder_heads: int = 12
    encoder_mlp_ratio: float = 4.0
    encoder_reg_tokens: int = 4
    encoder_init_values: float | None = 1e-5
    encoder_family: EncoderFamily = "dinov2"
    encoder_pos_grid: int | None = None
    encoder_pos_resample: PosResampleRule = "timm"
    encoder_weights: str = "timm/vit_base_patch14_reg4_dinov2.lvd142m"
    latent_norm: bool = True
    band_transform: BandTransform = "fft"
    band_scheme: BandScheme = "smooth"
    zigzag_keep_count: int | None = None
    zigzag_count_min: int | None = None
    zigzag_count_max: int | None = None
    zigzag_apply_prob: float = 1.0
    band_schedule: tuple[float, ...] | None = None
    num_bands: int = 4
    band_softness: float = 0.5
    num_semantic_bands: int = 1
    noise_std: float = 0.5
    noise_min_band: int = 1
    modulator_hidden_dim: int = 256
    modulator_in_kernel: int = 1
    modulator_out_kernel: int = 3
    band_mixing: bool = False
    decoder_dim: int = 1152
    decoder_depth: int = 28
    decoder_heads: int = 16
    decoder_mlp_ratio: float = 4096 / 1152
    decoder_patch_size: int = 16
    decoder_norm_eps: float | None = None
    latent_stats: LatentStats = "per_channel"
    preprocess: Preprocess = "uae"

    def __post_init__(self) -> None:
        if self.band_schedule is not None and not isinstance(self.band_schedule, tuple):
            self.band_schedule = tuple(self.band_schedule)  # a list from config.json / YAML
        self.validate()

    # ------------------------------------------------------------------ derived values
    @property
    def grid_size(self) -> int:
        """Latent grid side ``h = w = img_size // patch_size``."""
        return self.img_size // self.patch_size

    @property
    def latent_dim(self) -> int:
        """Latent channels ``C`` (the encoder width)."""
        return self.encoder_dim

    @property
    def output_size(self) -> int:
        """Decoder output side in pixels."""
        return self.grid_size * self.decoder_patch_size

    @property
    def latent_stats_shape(self) -> tuple[int, ...]:
        """Shape of the ``latent_mean`` / ``latent_std`` buffers: ``(C,)`` or ``(C, h, w)``."""
        if self.latent_stats == "per_position":
            return self.latent_shape
        return (self.latent_dim,)

    @property
    def latent_shape(self) -> tuple[int, int, int]:
        """``(C, h, w)`` of one image's latent."""
        return (self.latent_dim, self.grid_size, self.grid_size)

    def estimate_num_params(self) -> int:
        """The model's parameter count from the fields alone, nothing allocated (:mod:`uae.models.size`)."""
        from uae.models.size import uae_num_params

        return uae_num_params(dataclasses.asdict(self))

    # ------------------------------------------------------------------ checks and (de)serialisation
    def validate(self) -> None:
        """Raise :class:`~uae.errors.ConfigError` naming every field of a wrong type, out of range, or inconsistent.

        Types come from the field annotations (so new fields are checked too): a ``bool`` field needs
        a real bool, an ``int`` field a real int (not a float, not a bool), a ``float`` field accepts
        ints, ``X | None`` accepts ``None``, a ``Literal[...]`` field one of its values, and tuple fields
        accept lists (from JSON; they are converted to tuples). Ranges come from :data:`FIELD_RANGES`;
        cross-field checks follow. The error's ``param`` is the field when only one field is wrong.
        """
        problems: list[tuple[str, str]] = []  # (field, message)
        for f in fields(self):
            tp = _field_types(type(self)).get(f.name, Any)
            value = getattr(self, f.name)
            why = _type_problem(f.name, value, tp)
            if why is None:
                if isinstance(value, list) and _is_tuple_type(tp):
                    setattr(self, f.name, tuple(value))
                why = _check_range(f.name, value)
            if why:
                problems.append((f.name, why))
        if problems:  # the cross-field checks below assume well-typed, positive values
            _raise(problems)
        if self.img_size % self.patch_size:
            problems.append(
                ("img_size", f"img_size {self.img_size} is not divisible by patch_size {self.patch_size}")
            )
        problems += [("band_scheme", p) for p in self._zigzag_problems()]
        if self.decoder_norm_eps is not None and not self.decoder_norm_eps > 0:
            problems.append(
                ("decoder_norm_eps", f"decoder_norm_eps must be > 0 or None, got {self.decoder_norm_eps}")
            )
        if not 1 <= self.num_bands <= 16:
            problems.append(("num_bands", f"num_bands must be in 1..16, got {self.num_bands}"))
        if self.band_scheme == "authors_v1":
            from uae.layers.bands.authors_v1 import check_authors_v1_schedule

            try:
                check_authors_v1_schedule(self.band_schedule, self.num_bands, self.band_transform)
            except (TypeError, ValueError) as e:
                problems.append(("band_schedule", f"band_schedule: {e}"))
        elif self.band_schedule is not None:
            problems.append(
                (
                    "band_schedule",
                    f"band_schedule is only used by band_scheme='authors_v1', not {self.band_scheme!r}",
                )
            )
        if not 0 <= self.num_semantic_bands <= self.num_bands:
            problems.append(
                (
                    "num_semantic_bands",
                    f"num_semantic_bands must be in 0..num_bands, got {self.num_semantic_bands}",
                )
            )
        if self.noise_min_band < 1:
            problems.append(
                (
                    "noise_min_band",
                    f"noise_min_band must be >= 1 (band 0 is never noised), got {self.noise_min_band}",
                )
            )
        if self.noise_std < 0:
            problems.append(("noise_std", f"noise_std must be >= 0, got {self.noise_std}"))
        if not 0.0 <= self.band_softness <= 1.0:
            problems.append(("band_softness", f"band_softness must be in [0, 1], got {self.band_softness}"))
        if self.encoder_dim % self.encoder_heads:
            problems.append(
                (
                    "encoder_heads",
                    f"encoder_dim {self.encoder_dim} is not divisible by encoder_heads {self.encoder_heads}",
                )
            )
        if self.encoder_pos_grid is not None and self.encoder_pos_grid < 1:
            problems.append(
                ("encoder_pos_grid", f"encoder_pos_grid must be >= 1 or None, got {self.encoder_pos_grid}")
            )
        if self.decoder_dim % self.decoder_heads:
            problems.append(
                (
                    "decoder_heads",
                    f"decoder_dim {self.decoder_dim} is not divisible by decoder_heads {self.decoder_heads}",
                )
            )
        for k in ("modulator_in_kernel", "modulator_out_kernel"):
            if getattr(self, k) % 2 == 0:
                problems.append((k, f"{k} must be odd, got {getattr(self, k)}"))
        if problems:
            _raise(problems)

    def _zigzag_problems(self) -> list[str]:
        """Checks of the ``dct_zigzag`` fields (the authors' v2 keep-N low-pass)."""
        problems = []
        zig = {
            "zigzag_keep_count": self.zigzag_keep_count,
            "zigzag_count_min": self.zigzag_count_min,
            "zigzag_count_max": self.zigzag_count_max,
        }
        if self.band_scheme != "dct_zigzag":
            used = [k for k, v in zig.items() if v is not None]
            if self.zigzag_apply_prob != 1.0:
                used.append("zigzag_apply_prob")
            if used:
                problems.append(f"{used} only apply to band_scheme='dct_zigzag', not {self.band_scheme!r}")
            return problems
        if self.num_bands != 2 or self.band_transform != "dct" or not self.band_mixing:
            problems.append(
                "band_scheme='dct_zigzag' needs num_bands=2 (kept, dropped), band_transform='dct' and "
                f"band_mixing=True; got {self.num_bands}, {self.band_transform!r}, {self.band_mixing}"
            )
        for k, v in zig.items():
            if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 0):
                problems.append(f"{k} must be a non-negative int or None, got {v!r}")
        if (self.zigzag_count_min is None) != (self.zigzag_count_max is None):
            problems.append("zigzag_count_min and zigzag_count_max must be set together")
        elif self.zigzag_count_min is not None and self.zigzag_count_min > self.zigzag_count_max:
            problems.append(
                f"zigzag_count_min {self.zigzag_count_min} > zigzag_count_max {self.zigzag_count_max}"
            )
        if not 0.0 <= self.zigzag_apply_prob <= 1.0:
            problems.append(f"zigzag_apply_prob must be in [0, 1], got {self.zigzag_apply_prob}")
        return problems

    def to_dict(self) -> dict[str, Any]:
        """The fields as a JSON-ready dict."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any], strict: bool = True) -> UAEConfig:
        """Build a config from a dict (e.g. a loaded ``config.json``).

        Args:
            data: Field values; the metadata keys ``architecture`` and ``uae_version`` are checked and dropped.
            strict: Raise on unknown keys instead of ignoring them with a warning.

        Raises:
            ConfigError: Wrong architecture, invalid values, or unknown keys with ``strict=True`` (a ``ValueError``).
        """
        data = dict(data)
        arch = data.pop("architecture", ARCHITECTURE)
        data.pop("uae_version", None)
        if arch != ARCHITECTURE:
            raise ConfigError(
                f"config.json describes architecture {arch!r}, expected {ARCHITECTURE!r}",
                param="architecture",
            )
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            if strict:
                raise ConfigError(f"config.json has keys UAEConfig does not know: {unknown}")
            logger.warning("Ignoring unknown config keys %s", unknown)
        return cls(**{k: v for k, v in data.items() if k in names})

    def replace(self, **overrides: Any) -> UAEConfig:
        """A copy with some fields replaced; unknown names raise ``TypeError`` listing the valid ones."""
        names = {f.name for f in fields(self)}
        unknown = sorted(set(overrides) - names)
        if unknown:
            raise TypeError(f"Unknown UAEConfig field(s) {unknown}; valid fields: {sorted(names)}")
        return dataclasses.replace(self, **overrides)


def _raise(problems: list[tuple[str, str]]) -> None:
    """One :class:`ConfigError` listing every problem (``param``: the field, when only one is wrong)."""
    names = {name for name, _ in problems}
    raise ConfigError(
        "Invalid UAEConfig: " + "; ".join(why for _, why in problems),
        param=names.pop() if len(names) == 1 else None,
    )


@functools.cache
def _field_types(cls: type) -> dict[str, Any]:
    """The resolved field annotations of a config dataclass (``from __future__`` makes them strings).

    An annotation that cannot be resolved (a name only imported for type checking) is not checked.
    """
    try:
        return typing.get_type_hints(cls)
    except Exception:  # resolve field by field, skipping the unresolvable ones
        hints: dict[str, Any] = {}
        module = vars(__import__(cls.__module__, fromlist=["_"]))
        for f in fields(cls):
            try:
                hints[f.name] = eval(f.type, module) if isinstance(f.type, str) else f.type  # noqa: S307
            except Exception:
                hints[f.name] = Any
        return hints
