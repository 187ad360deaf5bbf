"""The one flat configuration dataclass of a UAE model (saved as ``config.json``)."""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass, fields
from typing import Any

logger = logging.getLogger(__name__)

#: Keys that ``config.json`` carries besides the dataclass fields (stamped on save, checked on load).
METADATA_KEYS = ("architecture", "uae_version")
ARCHITECTURE = "UAE"
BAND_TRANSFORMS = ("fft", "dct")
#: How the latent spectrum is cut into bands: uae's smooth split (new models) or a release's own scheme.
BAND_SCHEMES = ("smooth", "authors_v1", "dct_zigzag")
#: Shape of the stored latent statistics: one value per channel ``(C,)`` or per position ``(C, h, w)``.
LATENT_STATS = ("per_channel", "per_position")
#: Encoder families (timm ViT options reproducing transformers' Dinov2WithRegisters, CLIP and SigLIP2 towers).
ENCODER_FAMILIES = ("dinov2", "clip", "siglip2")
#: How the encoder's position table is resampled to the input grid at every forward.
POS_RESAMPLE_RULES = ("timm", "hf_dinov2", "hf_clip", "hf_siglip")


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
            pre-norm, QuickGELU, latent = last block output) or ``"siglip2"`` (SigLIP2 fixed-resolution
            vision tower: no CLS token, tanh GELU). See ``docs/released_models.md``.
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
    encoder_family: str = "dinov2"
    encoder_pos_grid: int | None = None
    encoder_pos_resample: str = "timm"
    encoder_weights: str = "timm/vit_base_patch14_reg4_dinov2.lvd142m"
    latent_norm: bool = True
    band_transform: str = "fft"
    band_scheme: str = "smooth"
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
    latent_stats: str = "per_channel"

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

    # ------------------------------------------------------------------ checks and (de)serialisation
    def validate(self) -> None:
        """Raise ``ValueError`` on an inconsistent configuration."""
        problems = []
        if self.img_size % self.patch_size:
            problems.append(f"img_size {self.img_size} is not divisible by patch_size {self.patch_size}")
        if self.band_transform not in BAND_TRANSFORMS:
            problems.append(f"band_transform must be one of {BAND_TRANSFORMS}, got {self.band_transform!r}")
        if self.band_scheme not in BAND_SCHEMES:
            problems.append(f"band_scheme must be one of {BAND_SCHEMES}, got {self.band_scheme!r}")
        if self.latent_stats not in LATENT_STATS:
            problems.append(f"latent_stats must be one of {LATENT_STATS}, got {self.latent_stats!r}")
        if self.decoder_norm_eps is not None and not self.decoder_norm_eps > 0:
            problems.append(f"decoder_norm_eps must be > 0 or None, got {self.decoder_norm_eps}")
        if not 1 <= self.num_bands <= 16:
            problems.append(f"num_bands must be in 1..16, got {self.num_bands}")
        if self.band_scheme == "authors_v1":
            from uae.layers.band_projector import check_authors_v1_schedule

            try:
                check_authors_v1_schedule(self.band_schedule, self.num_bands, self.band_transform)
            except (TypeError, ValueError) as e:
                problems.append(f"band_schedule: {e}")
        elif self.band_schedule is not None:
            problems.append(
                f"band_schedule is only used by band_scheme='authors_v1', not {self.band_scheme!r}"
            )
        if not 0 <= self.num_semantic_bands <= self.num_bands:
            problems.append(f"num_semantic_bands must be in 0..num_bands, got {self.num_semantic_bands}")
        if self.noise_min_band < 1:
            problems.append(
                f"noise_min_band must be >= 1 (band 0 is never noised), got {self.noise_min_band}"
            )
        if self.noise_std < 0:
            problems.append(f"noise_std must be >= 0, got {self.noise_std}")
        if not 0.0 <= self.band_softness <= 1.0:
            problems.append(f"band_softness must be in [0, 1], got {self.band_softness}")
        if self.encoder_dim % self.encoder_heads:
            problems.append(
                f"encoder_dim {self.encoder_dim} is not divisible by encoder_heads {self.encoder_heads}"
            )
        if self.encoder_family not in ENCODER_FAMILIES:
            problems.append(f"encoder_family must be one of {ENCODER_FAMILIES}, got {self.encoder_family!r}")
        if self.encoder_pos_resample not in POS_RESAMPLE_RULES:
            problems.append(
                f"encoder_pos_resample must be one of {POS_RESAMPLE_RULES}, got {self.encoder_pos_resample!r}"
            )
        if self.encoder_pos_grid is not None and self.encoder_pos_grid < 1:
            problems.append(f"encoder_pos_grid must be >= 1 or None, got {self.encoder_pos_grid}")
        if self.decoder_dim % self.decoder_heads:
            problems.append(
                f"decoder_dim {self.decoder_dim} is not divisible by decoder_heads {self.decoder_heads}"
            )
        for k in ("modulator_in_kernel", "modulator_out_kernel"):
            if getattr(self, k) % 2 == 0:
                problems.append(f"{k} must be odd, got {getattr(self, k)}")
        if problems:
            raise ValueError("Invalid UAEConfig: " + "; ".join(problems))

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
            ValueError: Wrong architecture, or unknown keys with ``strict=True``.
        """
        data = dict(data)
        arch = data.pop("architecture", ARCHITECTURE)
        data.pop("uae_version", None)
        if arch != ARCHITECTURE:
            raise ValueError(f"config.json describes architecture {arch!r}, expected {ARCHITECTURE!r}")
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            if strict:
                raise ValueError(f"config.json has keys UAEConfig does not know: {unknown}")
            logger.warning("Ignoring unknown config keys %s", unknown)
        return cls(**{k: v for k, v in data.items() if k in names})

    def replace(self, **overrides: Any) -> UAEConfig:
        """A copy with some fields replaced; unknown names raise ``TypeError`` listing the valid ones."""
        names = {f.name for f in fields(self)}
        unknown = sorted(set(overrides) - names)
        if unknown:
            raise TypeError(f"Unknown UAEConfig field(s) {unknown}; valid fields: {sorted(names)}")
        return dataclasses.replace(self, **overrides)
