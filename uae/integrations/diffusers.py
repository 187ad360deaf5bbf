"""A UAE as a diffusers autoencoder: :class:`UAEAutoencoder`.

diffusers code talks to its autoencoders through a few names: ``vae.encode(x).latent_dist.sample()``
(or ``.mode()``), ``vae.decode(z).sample``, ``vae.config.scaling_factor``, ``vae.config.latents_mean``
/ ``latents_std``, ``vae.dtype``, ``vae.device``, ``enable_slicing()``. :class:`UAEAutoencoder` wraps a
:class:`uae.UAE` behind exactly those names, as diffusers' ``AutoencoderRAE`` wraps RAE:

* ``encode(x)`` returns ``latent_dist``, a deterministic distribution (diffusers'
  ``IdentityDistribution``: ``sample()`` and ``mode()`` both give the latent; the UAE has no posterior
  variance), and ``latent`` (``AutoencoderRAE``'s field). The latent is the UAE's encoder latent
  ``(B, C, h, w)``, standardised with the model's latent statistics and multiplied by
  ``scaling_factor``: ``(z - latents_mean) / latents_std * scaling_factor``, what ``AutoencoderRAE``
  returns (RAE's ``encode``). ``normalize_latents=False`` returns ``z * scaling_factor`` instead and
  leaves ``config.latents_mean`` / ``latents_std`` for the pipeline to apply (the SDXL / SD3
  convention).
* ``decode(z)`` inverts that and runs the UAE's band split, modulator and pixel decoder; the image is
  not clamped (as ``AutoencoderRAE`` and RAE's ``decode``).
* Images are in ``[0, 1]`` as in ``AutoencoderRAE`` (the UAE normalises with its ``pixel_mean`` /
  ``pixel_std`` itself); ``signed_images=True`` takes and returns ``[-1, 1]`` images instead, as
  ``AutoencoderKL`` and diffusers' ``VaeImageProcessor`` do.
* An input whose side is not the encoder's (``img_size``) is resized the way the model's release
  evaluates (its data config: the authors' and RAE's torch bicubic without antialias; uae's models
  antialiased), as ``AutoencoderRAE`` resizes to ``encoder_input_size``; ``resize_inputs=False``
  refuses other sizes instead (uae's own rule: nothing is resized silently).

``save_pretrained`` / ``from_pretrained`` are diffusers' (``config.json`` holds the UAE config,
``diffusion_pytorch_model.safetensors`` the weights under ``uae.``). Importing this module imports
diffusers (``pip install 'uae[peers]'``); ``import uae`` never does.

Example::

    from uae.integrations.diffusers import UAEAutoencoder
    vae = UAEAutoencoder.from_uae("rae_base_p14_dinov2_vitxl")      # any --model spec, or a UAE
    z = vae.encode(images).latent_dist.sample()                      # (B, 768, 16, 16), RAE's latent
    out = vae.decode(z).sample                                       # (B, 3, 256, 256)
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Any

import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.autoencoders.vae import AutoencoderMixin, DecoderOutput, IdentityDistribution
from diffusers.models.modeling_utils import ModelMixin
from diffusers.utils import BaseOutput
from diffusers.utils.accelerate_utils import apply_forward_hook

from uae.data.transforms import resize_images, resolve_data_config
from uae.errors import InputError
from uae.models.config import UAEConfig
from uae.models.uae import UAE


class DeterministicLatent(IdentityDistribution):
    """diffusers' ``IdentityDistribution`` (``sample()`` = ``mode()`` = the latent) with the fields
    training code reads from a posterior: ``mean``, ``std`` / ``var`` (zeros) and ``kl()`` (zeros)."""

    @property
    def mean(self) -> torch.Tensor:
        return self.parameters

    @property
    def std(self) -> torch.Tensor:
        return torch.zeros_like(self.parameters)

    @property
    def var(self) -> torch.Tensor:
        return torch.zeros_like(self.parameters)

    def kl(self, other: Any = None) -> torch.Tensor:
        """No posterior variance, no KL term: zeros ``(B,)``."""
        return self.parameters.new_zeros(self.parameters.shape[0])


@dataclass
class UAEEncoderOutput(BaseOutput):
    """Output of :meth:`UAEAutoencoder.encode`.

    Args:
        latent_dist: :class:`DeterministicLatent` of the latent (``AutoencoderKL``'s field).
        latent: The same latent ``(B, C, h, w)`` as a tensor (``AutoencoderRAE``'s field).
    """

    latent_dist: DeterministicLatent
    latent: torch.Tensor | None = None


class UAEAutoencoder(ModelMixin, AutoencoderMixin, ConfigMixin):
    """A :class:`uae.UAE` with diffusers' autoencoder interface (see the module docstring).

    Build it from a model with :meth:`from_uae`; the constructor (what diffusers' ``from_pretrained``
    calls) builds an untrained UAE from a config dict.

    Args:
        uae_config: ``UAEConfig.to_dict()`` of the wrapped model.
        scaling_factor: Multiplies the (standardised) latent in ``encode``; divided out in ``decode``.
        normalize_latents: Standardise with the latent statistics inside ``encode`` / ``decode``
            (``AutoencoderRAE``'s behaviour).
        latents_mean: Latent mean, flattened (``(C,)`` or ``(C, h, w)`` values); ``None``: the model's
            buffers (zeros unless statistics were stored).
        latents_std: Latent std, flattened, as ``latents_mean``.
        signed_images: Images in ``[-1, 1]`` (``AutoencoderKL``) instead of ``[0, 1]`` (``AutoencoderRAE``).
        resize_inputs: Resize inputs of another side to the encoder's, as the model's release does.
        sample_size: Image side of ``decode``'s output (informational, diffusers' field; the UAE's
            ``output_size`` when ``None``).
        latent_channels: Latent channels (informational; the UAE's ``C`` when ``None``).
    """

    _supports_gradient_checkpointing = False

    @register_to_config
    def __init__(
        self,
        uae_config: dict[str, Any] | None = None,
        scaling_factor: float = 1.0,
        normalize_latents: bool = True,
        latents_mean: list[float] | None = None,
        latents_std: list[float] | None = None,
        signed_images: bool = False,
        resize_inputs: bool = True,
        sample_size: int | None = None,
        latent_channels: int | None = None,
        in_channels: int = 3,
        out_channels: int = 3,
    ) -> None:
        super().__init__()
        if not (isinstance(scaling_factor, int | float) and math.isfinite(scaling_factor) and scaling_factor):
            raise InputError(f"scaling_factor must be a finite non-zero number, got {scaling_factor!r}")
        config = UAEConfig.from_dict(dict(uae_config or {}))
        self.uae = UAE(config)
        if latents_mean is not None or latents_std is not None:
            shape = config.latent_stats_shape
            mean = (
                torch.tensor(latents_mean).view(shape) if latents_mean is not None else self.uae.latent_mean
            )
            std = torch.tensor(latents_std).view(shape) if latents_std is not None else self.uae.latent_std
            self.uae.set_latent_stats(mean, std)
        self.register_to_config(
            sample_size=sample_size or config.output_size,
            latent_channels=latent_channels or config.latent_dim,
        )
        self.use_slicing = False
        self.use_tiling = False

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_uae(
        cls,
        model: UAE | str | os.PathLike,
        *,
        scaling_factor: float = 1.0,
        normalize_latents: bool = True,
        signed_images: bool = False,
        resize_inputs: bool = True,
    ) -> UAEAutoencoder:
        """Wrap a model (a :class:`uae.UAE`, or a name / directory / Hub repo id for
        :func:`uae.factory.load_model`); the weights are copied, the result is in eval mode.

        ``config.latents_mean`` / ``latents_std`` are the model's latent statistics (``None`` when it
        has none: zero mean, unit std).
        """
        if not isinstance(model, UAE):
            from uae.factory import load_model

            model = load_model(str(model))
        mean, std = model.latent_mean.detach().float().cpu(), model.latent_std.detach().float().cpu()
        trivial = bool((mean == 0).all()) and bool((std == 1).all())
        vae = cls(
            uae_config=model.config.to_dict(),
            scaling_factor=scaling_factor,
            normalize_latents=normalize_latents,
            latents_mean=None if trivial else mean.flatten().tolist(),
            latents_std=None if trivial else std.flatten().tolist(),
            signed_images=signed_images,
            resize_inputs=resize_inputs,
        )
        vae.uae.load_state_dict(model.state_dict(), strict=True)
        return vae.to(device=model.pixel_mean.device).eval()

    @property
    def latents_mean(self) -> torch.Tensor:
        """The latent mean the model stores (``(C,)`` or ``(C, h, w)``)."""
        return self.uae.latent_mean

    @property
    def latents_std(self) -> torch.Tensor:
        """The latent std the model stores (``(C,)`` or ``(C, h, w)``)."""
        return self.uae.latent_std

    # ------------------------------------------------------------------ the autoencoder
    def _to_model_input(self, x: torch.Tensor) -> torch.Tensor:
        if self.config.signed_images:
            x = (x + 1) / 2
        size = self.uae.config.img_size
        if x.shape[-2:] != (size, size) and self.config.resize_inputs:
            x = resize_images(x, size, antialias=bool(resolve_data_config(self.uae)["antialias"]))
        return x

    def _encode(self, x: torch.Tensor) -> torch.Tensor:
        z = self.uae.encode(self._to_model_input(x)).latent
        if self.config.normalize_latents:
            z = self.uae.normalize_latent(z)
        return (z * self.config.scaling_factor).to(x.dtype)

    def _decode(self, z: torch.Tensor) -> torch.Tensor:
        z = z / self.config.scaling_factor
        if self.config.normalize_latents:
            z = self.uae.denormalize_latent(z)
        image = self.uae.decode(z, clamp=False).sample
        if self.config.signed_images:
            image = image * 2 - 1
        return image.to(z.dtype)

    @apply_forward_hook
    def encode(
        self, x: torch.Tensor, return_dict: bool = True
    ) -> UAEEncoderOutput | tuple[DeterministicLatent]:
        """Images ``(B, 3, H, W)`` -> latent ``(B, C, h, w)`` (``[0, 1]`` images, or ``[-1, 1]`` with
        ``signed_images``).

        Returns:
            :class:`UAEEncoderOutput` (``latent_dist`` and ``latent``), or ``(latent_dist,)``.
        """
        if self.use_slicing and x.shape[0] > 1:
            z = torch.cat([self._encode(s) for s in x.split(1)])
        else:
            z = self._encode(x)
        dist = DeterministicLatent(z)
        if not return_dict:
            return (dist,)
        return UAEEncoderOutput(latent_dist=dist, latent=z)

    @apply_forward_hook
    def decode(
        self, z: torch.Tensor, return_dict: bool = True, **kwargs: Any
    ) -> DecoderOutput | tuple[torch.Tensor]:
        """Latent ``(B, C, h, w)`` (as :meth:`encode` returns it) -> images ``(B, 3, H', W')``, not clamped.

        ``generator`` and other keywords diffusers passes to some decoders are accepted and ignored.
        """
        if self.use_slicing and z.shape[0] > 1:
            image = torch.cat([self._decode(s) for s in z.split(1)])
        else:
            image = self._decode(z)
        if not return_dict:
            return (image,)
        return DecoderOutput(sample=image)

    def forward(
        self,
        sample: torch.Tensor,
        sample_posterior: bool = False,
        return_dict: bool = True,
        generator: torch.Generator | None = None,
    ) -> DecoderOutput | tuple[torch.Tensor]:
        """Reconstruct: ``decode(encode(sample).latent_dist.mode())`` (``sample_posterior`` changes nothing)."""
        z = self.encode(sample).latent
        return self.decode(z, return_dict=return_dict)


__all__ = ["DeterministicLatent", "UAEAutoencoder", "UAEEncoderOutput"]
