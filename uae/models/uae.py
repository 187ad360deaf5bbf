"""The UAE model: unified encoder -> band projector -> band modulator -> pixel decoder.

The model only: its Hub I/O (``save_pretrained``, ``from_pretrained``, ``push_to_hub``, the model card)
is :class:`uae.models.hub.UAEHubMixin`, which it inherits.
"""

from __future__ import annotations

import numbers
import os
from typing import Any, Literal

import torch
from torch import nn

from uae.errors import InputError
from uae.layers.band_modulator import BandModulator
from uae.layers.bands import build_band_scheme
from uae.layers.decoder import PixelDecoder
from uae.layers.encoder import FAMILY_PIXEL_STATS, UnifiedEncoder
from uae.models.config import UAEConfig
from uae.models.dinov2 import read_dinov2_weights
from uae.models.hub import UAEHubMixin
from uae.models.outputs import DecoderOutput, EncoderOutput, UAEOutput
from uae.models.preprocess import data_config_for
from uae.utils import check_images


def _zigzag_options(config: UAEConfig) -> dict[str, Any] | None:
    """The ``dct_zigzag`` band split's options from the config (``None`` for other schemes)."""
    if config.band_scheme != "dct_zigzag":
        return None
    return {
        "keep_count": config.zigzag_keep_count,
        "count_min": config.zigzag_count_min,
        "count_max": config.zigzag_count_max,
        "apply_prob": config.zigzag_apply_prob,
    }


#: The tensor method that casts to a model dtype (for messages).
_TENSOR_CAST = {
    torch.float32: "float",
    torch.float16: "half",
    torch.bfloat16: "bfloat16",
    torch.float64: "double",
}


class UAE(nn.Module, UAEHubMixin):
    """Unified Autoencoder.

    ``encode`` maps images to a latent grid and its ``K`` frequency bands; ``decode`` fuses the bands
    with the band modulator and renders pixels with the ViT decoder. The image normalisation and the
    latent statistics are persistent buffers, so ``model.safetensors`` holds everything needed at
    inference. Constructors never touch the network: load DINOv2 weights explicitly with
    :meth:`load_encoder_weights`. ``save_pretrained``, ``from_pretrained`` and ``push_to_hub`` come from
    :class:`~uae.models.hub.UAEHubMixin`.

    Args:
        config: The model configuration (defaults to the DINOv2-B setting).
    """

    def __init__(self, config: UAEConfig | None = None) -> None:
        super().__init__()
        config = config if config is not None else UAEConfig()
        self.config = config
        self.encoder = UnifiedEncoder(
            img_size=config.img_size,
            patch_size=config.patch_size,
            embed_dim=config.encoder_dim,
            depth=config.encoder_depth,
            num_heads=config.encoder_heads,
            mlp_ratio=config.encoder_mlp_ratio,
            reg_tokens=config.encoder_reg_tokens,
            init_values=config.encoder_init_values,
            latent_norm=config.latent_norm,
            family=config.encoder_family,
            pos_grid=config.encoder_pos_grid,
            pos_resample=config.encoder_pos_resample,
        )
        # The band scheme is chosen here, once; the model never asks which one it runs.
        self.band_projector = build_band_scheme(
            config.num_bands,
            transform=config.band_transform,
            softness=config.band_softness,
            scheme=config.band_scheme,
            grid_size=config.grid_size,
            schedule=config.band_schedule,
            zigzag=_zigzag_options(config),
        )
        self.modulator = BandModulator(
            config.latent_dim,
            config.num_bands,
            hidden_dim=config.modulator_hidden_dim,
            in_kernel=config.modulator_in_kernel,
            out_kernel=config.modulator_out_kernel,
            noise_std=config.noise_std,
            noise_min_band=config.noise_min_band,
            band_mixing=config.band_mixing,
        )
        self.decoder = PixelDecoder(
            config.latent_dim,
            dim=config.decoder_dim,
            depth=config.decoder_depth,
            num_heads=config.decoder_heads,
            mlp_ratio=config.decoder_mlp_ratio,
            patch_size=config.decoder_patch_size,
            grid_size=config.grid_size,
            norm_eps=config.decoder_norm_eps,
        )
        mixing = self.band_projector.initial_mixing()  # dct_zigzag: the decoder sees band 0 only, as in v2
        if mixing is not None:
            with torch.no_grad():
                self.modulator.mix_in.copy_(mixing)
        mean, std = FAMILY_PIXEL_STATS[config.encoder_family]  # the encoder's image processor statistics
        self.register_buffer("pixel_mean", torch.tensor(mean).view(1, 3, 1, 1))
        self.register_buffer("pixel_std", torch.tensor(std).view(1, 3, 1, 1))
        # (C,) or (C, h, w) by config.latent_stats; saved in model.safetensors with that exact shape.
        self.register_buffer("latent_mean", torch.zeros(config.latent_stats_shape))
        self.register_buffer("latent_std", torch.ones(config.latent_stats_shape))

    # ------------------------------------------------------------------ preprocessing
    @property
    def pretrained_cfg(self) -> dict[str, Any]:
        """The evaluation preprocessing of this model in timm's ``pretrained_cfg`` fields (a new dict).

        Derived from ``config`` (``img_size``, ``output_size``, ``preprocess``), so it is saved in
        ``config.json`` and restored by ``from_pretrained``; ``timm.data.resolve_data_config(model=m)`` and
        :func:`uae.data.resolve_data_config` read it. See :mod:`uae.models.preprocess`.
        """
        stats = tuple(
            [float(str(v)) for v in t.detach().float().flatten().cpu().numpy()]  # float32's shortest repr
            for t in (self.pixel_mean, self.pixel_std)
        )
        return data_config_for(self.config, stats)

    # ------------------------------------------------------------------ pixels
    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """``[0, 1]`` images -> ImageNet-normalised (the encoder's and decoder's pixel space)."""
        return (x - self.pixel_mean.to(x.dtype)) / self.pixel_std.to(x.dtype)

    def denormalize(self, y: torch.Tensor) -> torch.Tensor:
        """ImageNet-normalised -> ``[0, 1]`` scale (not clamped)."""
        return y * self.pixel_std.to(y.dtype) + self.pixel_mean.to(y.dtype)

    # ------------------------------------------------------------------ API
    def encode(self, x: torch.Tensor) -> EncoderOutput:
        """Encode images.

        Args:
            x: ``(B, 3, H, W)`` float images in ``[0, 1]``; ``H, W`` multiples of ``patch_size``.

        Returns:
            :class:`EncoderOutput` with ``latent (B, C, h, w)`` and ``bands (B, K, C, h, w)`` (float32).

        Raises:
            ValueError: Wrong rank, channels, dtype, size, non-finite or out-of-range values; ``x`` of
                another floating dtype than the model's (outside autocast; an :class:`~uae.errors.InputError`
                saying what to do).
        """
        check_images(x, self.config.patch_size, self.config.img_size)
        self._check_input_dtype(x)
        z = self.encoder(self.normalize(x)).float()
        return EncoderOutput(latent=z, bands=self.band_projector(z))

    def split(self, latent: torch.Tensor) -> torch.Tensor:
        """Split a latent grid ``(B, C, h, w)`` into bands ``(B, K, C, h, w)`` (float32: the spectra)."""
        self._check_latent(latent)
        return self.band_projector(latent.float())

    def fuse(self, bands: torch.Tensor) -> torch.Tensor:
        """Band modulator: bands ``(B, K, C, h, w)`` -> fused latent ``q (B, C, h, w)``
        (adds high-band noise in training mode), computed in the model's dtype."""
        return self.modulator(self._to_compute_dtype(bands))

    def render(self, fused: torch.Tensor, clamp: bool | None = None) -> torch.Tensor:
        """Pixel decoder on a fused latent ``(B, C, h, w)`` -> images ``(B, 3, h*p, w*p)`` in [0, 1] scale.

        Args:
            fused: Modulator output.
            clamp: Clamp to ``[0, 1]``; default: clamp outside training mode.
        """
        y = self.denormalize(self.decoder(self._to_compute_dtype(fused)).float())
        if clamp is None:
            clamp = not self.training
        return y.clamp(0.0, 1.0) if clamp else y

    def decode(self, latent: torch.Tensor, clamp: bool | None = None) -> DecoderOutput:
        """Decode a latent grid (split into bands, fused, rendered).

        Args:
            latent: ``(B, C, h, w)``, e.g. ``model.encode(x).latent``.
            clamp: Clamp to ``[0, 1]``; default: clamp outside training mode.

        Returns:
            :class:`DecoderOutput` with ``sample (B, 3, h*p, w*p)``.
        """
        return DecoderOutput(sample=self.render(self.fuse(self.split(latent)), clamp=clamp))

    def decode_latent(
        self, latent: torch.Tensor, *, normalized: bool = False, clamp: bool | None = None
    ) -> DecoderOutput:
        """Decode a latent that did not come from :meth:`encode` (a generated one), as the originals do.

        The latent is taken to be in the decoder's input space (``UAEOutput.fused``): no band split and
        no band modulator are applied, only the latent statistics (with ``normalized=True``) and the pixel
        decoder. That is what RAE's ``RAE.decode`` and the authors' ``UAE.decode`` do with a sampled
        latent (``decoder(denormalize(z))``; no DCT low-pass), and what their generators were trained
        on: RAE's latent (one band, identity modulator) and, for the ``dct_zigzag`` releases, the kept
        low-pass latent (band 0). :meth:`decode` instead splits its input into bands first, which is
        right for ``encode(x).latent`` but changes a latent that was never low-passed.

        Args:
            latent: ``(B, C, h, w)``.
            normalized: The latent is standardised with the model's latent statistics (a generator's
                output): it is de-normalised first (``latent * latent_std + latent_mean``).
            clamp: Clamp to ``[0, 1]``; default: clamp outside training mode.

        Returns:
            :class:`DecoderOutput` with ``sample (B, 3, h*p, w*p)``.

        Raises:
            InputError: A latent of the wrong channel count (or grid, for per-position statistics).
        """
        self._check_latent(latent)
        z = self.denormalize_latent(latent) if normalized else latent
        return DecoderOutput(sample=self.render(z, clamp=clamp))

    def decode_bands(
        self, bands: torch.Tensor, upto: int | None = None, clamp: bool | None = None
    ) -> DecoderOutput:
        """Progressive decoding from bands ``0..upto`` (the higher bands are zeroed).

        Args:
            bands: ``(B, K, C, h, w)``.
            upto: Last band kept, an integer (``0 <= upto < K``); ``None`` keeps all.
            clamp: Clamp to ``[0, 1]``; default: clamp outside training mode.

        Returns:
            :class:`DecoderOutput`.

        Raises:
            InputError: ``bands`` of the wrong shape, or ``upto`` not an integer in ``0..K-1`` (a ``bool``
                or ``1.5`` included).
        """
        k = self.config.num_bands
        if bands.ndim != 5 or bands.shape[1] != k or bands.shape[2] != self.config.latent_dim:
            raise InputError(
                f"expected bands of shape (B, {k}, {self.config.latent_dim}, h, w), got {tuple(bands.shape)}",
                param="bands",
            )
        if upto is not None:
            if isinstance(upto, bool) or not isinstance(upto, numbers.Integral) or not 0 <= upto < k:
                raise InputError(
                    f"upto must be in 0..{k - 1} (an integer band index), got {upto!r}", param="upto"
                )
            upto = int(upto)
            keep = (torch.arange(k, device=bands.device) <= upto).to(bands.dtype).view(1, k, 1, 1, 1)
            bands = bands * keep
        return DecoderOutput(sample=self.render(self.fuse(bands), clamp=clamp))

    def forward(self, x: torch.Tensor, clamp: bool | None = None) -> UAEOutput:
        """Reconstruct images.

        Args:
            x: ``(B, 3, H, W)`` float images in ``[0, 1]``.
            clamp: Clamp the reconstruction to ``[0, 1]``; default: clamp outside training mode.

        Returns:
            :class:`UAEOutput` with ``sample``, ``latent``, ``bands`` and the fused latent.
        """
        enc = self.encode(x)
        fused = self.fuse(enc.bands)
        return UAEOutput(
            sample=self.render(fused, clamp=clamp), latent=enc.latent, bands=enc.bands, fused=fused
        )

    def features(
        self,
        x: torch.Tensor,
        band: int | Literal["all", "latent"] = 0,
        pool: Literal["mean"] | None = "mean",
    ) -> torch.Tensor:
        """Features for linear probes and downstream models.

        Args:
            x: ``(B, 3, H, W)`` float images in ``[0, 1]``.
            band: A band index (``0`` = the semantic band), ``"all"`` (bands concatenated on channels,
                ``K*C``) or ``"latent"`` (the raw encoder latent).
            pool: ``"mean"`` -> ``(B, C')`` averaged over the grid; ``None`` -> ``(B, C', h, w)``.

        Returns:
            Feature tensor (float32).
        """
        if pool not in ("mean", None):
            raise InputError(f"pool must be 'mean' or None, got {pool!r}", param="pool")
        enc = self.encode(x)
        if band == "latent":
            f = enc.latent
        elif band == "all":
            f = enc.bands.flatten(1, 2)
        elif isinstance(band, int) and not isinstance(band, bool) and 0 <= band < self.config.num_bands:
            f = enc.bands[:, band]
        else:
            raise InputError(
                f"band must be an int in 0..{self.config.num_bands - 1}, 'all' or 'latent'; got {band!r}",
                param="band",
            )
        return f.mean(dim=(-2, -1)) if pool == "mean" else f

    # ------------------------------------------------------------------ latent statistics
    def _latent_stats_view(self, latent: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The stored mean/std shaped to broadcast against ``latent (B, C, h, w)``."""
        self._check_latent(latent)
        if self.config.latent_stats == "per_position":
            if tuple(latent.shape[1:]) != tuple(self.latent_mean.shape):
                raise InputError(
                    f"per-position latent statistics have shape {tuple(self.latent_mean.shape)}; "
                    f"got a latent of shape {tuple(latent.shape)}"
                )
            return self.latent_mean.unsqueeze(0), self.latent_std.unsqueeze(0)
        return self.latent_mean.view(1, -1, 1, 1), self.latent_std.view(1, -1, 1, 1)

    def normalize_latent(self, latent: torch.Tensor) -> torch.Tensor:
        """Standardise a latent ``(B, C, h, w)`` with the stored statistics (for diffusion training).

        ``(latent - latent_mean) / latent_std`` with per-channel ``(C,)`` or per-position ``(C, h, w)``
        statistics (``config.latent_stats``); RAE's ``(z - mean) / sqrt(var + eps)`` with
        ``latent_std = sqrt(var + eps)`` stored at conversion.
        """
        mean, std = self._latent_stats_view(latent)
        return (latent - mean) / std

    def denormalize_latent(self, latent: torch.Tensor) -> torch.Tensor:
        """Inverse of :meth:`normalize_latent`: ``latent * latent_std + latent_mean``."""
        mean, std = self._latent_stats_view(latent)
        return latent * std + mean

    @torch.no_grad()
    def set_latent_stats(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        """Store latent mean/std (saved in ``model.safetensors``).

        Args:
            mean, std: Per-channel ``(C,)`` / ``(C, 1, 1)`` statistics, or (for a model with
                ``latent_stats="per_position"``) per-position ``(C, h, w)`` / ``(1, C, h, w)`` ones;
                per-channel values given to a per-position model are broadcast over the grid.

        Raises:
            InputError: A shape the model's buffers cannot hold, or a non-positive std (a ``ValueError``).
        """
        mean, std = self.fit_latent_stats(mean, "mean"), self.fit_latent_stats(std, "std")
        if not bool((std > 0).all()):
            raise InputError("latent std must be positive", param="std")
        self.latent_mean.copy_(mean)
        self.latent_std.copy_(std)

    def fit_latent_stats(self, value: torch.Tensor, what: str = "statistics") -> torch.Tensor:
        """Shape a statistics tensor to this model's ``latent_mean`` buffer shape (float32, exact values).

        Accepts ``(C,)``, ``(C, 1, 1)``, ``(C, h, w)`` and the same with a leading ``1``.

        Raises:
            InputError: The tensor cannot be stored in the buffer (naming both shapes; a ``ValueError``).
        """
        c, h, w = self.config.latent_shape
        target = tuple(self.config.latent_stats_shape)
        t = value.detach().float().cpu()
        if t.ndim == 4 and t.shape[0] == 1:
            t = t[0]
        if t.ndim == 1 and t.shape[0] == c:
            t = t.view(c, 1, 1)
        ok = t.ndim == 3 and t.shape[0] == c and t.shape[1] in (1, h) and t.shape[2] in (1, w)
        if ok and self.config.latent_stats == "per_channel":
            ok = t.shape[1:] == (1, 1)
        if not ok:
            raise InputError(
                f"latent {what} of shape {tuple(value.shape)} does not fit this model's latent statistics "
                f"{target} (config.latent_stats={self.config.latent_stats!r}; per-position statistics need "
                f"latent_stats='per_position')"
            )
        return t.expand(c, h, w).clone() if len(target) == 3 else t.reshape(c).clone()

    def _to_compute_dtype(self, t: torch.Tensor) -> torch.Tensor:
        """``t`` in the dtype of the model's weights (a float16 / bfloat16 model computes in it); under
        autocast, unchanged (autocast chooses)."""
        if torch.is_autocast_enabled(t.device.type):
            return t
        dtype = self.dtype
        return t if t.dtype == dtype else t.to(dtype)

    def _check_input_dtype(self, x: torch.Tensor, name: str = "x") -> None:
        """Images must have the model's dtype (or run under autocast); the model's dtype must run on ``x``'s device.

        Raises:
            InputError: Saying which dtype the model has and what to do (a ``ValueError``).
        """
        from uae.models.loading import check_dtype_on_device

        dtype = self.dtype
        if x.dtype != dtype and not torch.is_autocast_enabled(x.device.type):
            kind = str(dtype).removeprefix("torch.")
            raise InputError(
                f"{name} has dtype {str(x.dtype).removeprefix('torch.')} but the model's weights are {kind}: "
                f"pass {name}.to(model.dtype) (here {name}.{_TENSOR_CAST.get(dtype, 'float')}()), convert the "
                f"model with model.to({str(x.dtype)}), or run under torch.autocast",
                param=name,
            )
        check_dtype_on_device(dtype, x.device, param="dtype")

    def _check_latent(self, latent: torch.Tensor) -> None:
        c = self.config.latent_dim
        if latent.ndim != 4 or latent.shape[1] != c:
            raise InputError(f"expected a latent of shape (B, {c}, h, w), got {tuple(latent.shape)}")

    # ------------------------------------------------------------------ encoder weights
    def load_encoder_weights(self, source: str | os.PathLike | None = None) -> UAE:
        """Initialise the encoder from DINOv2 weights (explicit step; strict key checks).

        Args:
            source: A local ``.safetensors`` / ``.pth`` file (timm or original facebookresearch key
                names), or a timm Hub id such as ``"timm/vit_base_patch14_reg4_dinov2.lvd142m"``
                (from the Hub cache, or downloaded when online). Defaults to ``config.encoder_weights``.

        Returns:
            ``self``.

        Raises:
            MissingFileError: The weights are not available, naming the file to supply.
            ValueError: The checkpoint's keys or shapes do not match the encoder.
        """
        source = source if source is not None else self.config.encoder_weights
        self.encoder.load_dinov2_state_dict(read_dinov2_weights(str(source)))
        return self
