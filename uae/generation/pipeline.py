"""One call from class labels to images: a tokenizer, a generator (and its guidance model), sampler settings.

>>> pipe = GenerationPipeline.from_pretrained("dit_dh_xl.rae")   # + rae_base_p14_dinov2_vitxl.rae, dit_dh_s.rae
>>> out = pipe([207, 388], num=4, steps=50, guidance=1.42, seed=0)
>>> out.images.shape                                               # (8, 3, 256, 256) in [0, 1]

:meth:`GenerationPipeline.from_pretrained` reads a generator's weights-table entry
(:class:`uae.models.pretrained.GenerationDefaults`): the tokenizer it was trained on, its autoguidance
model, and the release's sampler and guidance settings; each is loaded with
:func:`uae.factory.create_model` (downloaded, converted strictly, cached).

Determinism: image ``j`` of a call with ``seed=s`` starts from noise drawn from its own CPU generator
seeded with :func:`uae.generation.seeds.image_seed` ``(s, j)``, so on the CPU a seed always gives the same
images, and splitting the labels over several calls (``seeds=`` the same per-image seeds) or changing
``batch_size`` gives the same noise (the float32 results then agree to rounding: the model's matmuls
round differently for another batch size; sample folders keep batches fixed, see
:mod:`uae.generation.sample_folder`). On CUDA, sampling and decoding run under bf16 autocast
(:func:`uae.utils.autocast_dtype`; ``amp=False`` runs float32).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch

from uae.errors import InputError
from uae.factory import create_model, load_model
from uae.generation.guidance import Guidance
from uae.generation.latent_space import LatentSpace
from uae.generation.samplers import SamplerConfig, sample
from uae.generation.seeds import image_noise, image_seed
from uae.generation.settings import (
    call_settings,
    default_shift,
    guidance_from_defaults,
    sampler_from_defaults,
)
from uae.models.dit import DiTDH
from uae.models.hub import HubOptions
from uae.models.pretrained import GenerationDefaults, get_pretrained_cfg
from uae.models.registry import get_entry, list_models
from uae.models.uae import UAE
from uae.utils import maybe_autocast

logger = logging.getLogger(__name__)

ProgressCallback = Callable[[int, int], None]


@dataclass
class GenerationOutput:
    """What a :class:`GenerationPipeline` call returns (all on the CPU, float32).

    Attributes:
        images: ``(B, 3, H, W)`` in ``[0, 1]``.
        latents: ``(B, C, h, w)`` the sampled latents, in the tokenizer's normalised latent space.
        labels: ``(B,)`` class labels.
        seeds: Per-image seeds (``None`` when the noise came from a ``generator`` or was given).
    """

    images: torch.Tensor
    latents: torch.Tensor
    labels: torch.Tensor
    seeds: list[int] | None


class GenerationPipeline:
    """Tokenizer + generator (+ autoguidance model) + sampler settings: class labels in, images out.

    Args:
        tokenizer: The :class:`uae.UAE` whose normalised latents the generator was trained on (it decodes
            them with :meth:`uae.UAE.decode_latent`).
        generator: The :class:`uae.models.dit.DiTDH`.
        guide_model: The autoguidance model (a smaller DiT-DH), or ``None``.
        sampler: Default sampler settings (default: 50-point Euler ODE, the releases' shift for the
            latent shape, :func:`default_shift`).
        guidance: Default guidance (default: none).
        name: What the pipeline is, for messages and file metadata (the generator's registry name).
        tokenizer_name: The tokenizer's name, for metadata.
        latent_space: What the generator models and how its samples decode (a generator trained by uae;
            :mod:`uae.generation.latent_space`); ``None``: the released generators' space (the tokenizer's
            normalised decoder input).

    Raises:
        InputError: The models' latent shapes differ.
    """

    def __init__(
        self,
        tokenizer: UAE,
        generator: DiTDH,
        *,
        guide_model: DiTDH | None = None,
        sampler: SamplerConfig | None = None,
        guidance: Guidance | None = None,
        name: str = "",
        tokenizer_name: str = "",
        latent_space: LatentSpace | None = None,
    ) -> None:
        if not isinstance(tokenizer, UAE):
            raise InputError(
                f"tokenizer must be a uae.UAE, got {type(tokenizer).__name__}", param="tokenizer"
            )
        if not isinstance(generator, DiTDH):
            raise InputError(f"generator must be a DiTDH, got {type(generator).__name__}", param="generator")
        latent = tuple(generator.config.latent_shape)
        if tuple(tokenizer.config.latent_shape) != latent:
            raise InputError(
                f"the tokenizer's latents {tuple(tokenizer.config.latent_shape)} are not the generator's {latent}",
                param="tokenizer",
            )
        if guide_model is not None and tuple(guide_model.config.latent_shape) != latent:
            raise InputError(
                f"the guidance model's latents {tuple(guide_model.config.latent_shape)} are not the generator's "
                f"{latent}",
                param="guide_model",
            )
        self.tokenizer = tokenizer.eval()
        self.generator = generator.eval()
        self.guide_model = guide_model.eval() if guide_model is not None else None
        self.sampler = sampler if sampler is not None else SamplerConfig(shift=default_shift(latent))
        self.guidance = guidance if guidance is not None else Guidance()
        self.name = name or generator.config.name
        self.tokenizer_name = tokenizer_name or tokenizer.config.name
        self.latent_space = latent_space
        for m in self.models():
            m.requires_grad_(False)

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_pretrained(
        cls,
        name: str,
        *,
        tokenizer: UAE | str | None = None,
        guide_model: DiTDH | str | bool | None = None,
        pretrained: bool = True,
        device: str | torch.device = "cpu",
        hub: HubOptions | None = None,
    ) -> GenerationPipeline:
        """A pipeline for a generator: a registry name (``arch`` or ``arch.tag``), a directory or a Hub repo.

        For a registered generator release, the tokenizer, the guidance model and the sampler and guidance
        settings are the release's (:class:`uae.models.pretrained.GenerationDefaults`); the arguments
        override them.

        Args:
            name: ``"dit_dh_xl.rae"``, ``"uae_64token_dit"`` (its default tag), a ``save_pretrained``
                directory of a generator, or a Hub repo id.
            tokenizer: The tokenizer (a :class:`uae.UAE` or a ``--model``-style spec); required for a
                directory or repo, or for a registered architecture without weights, except for a directory
                written by uae's training (``latent_space.json``: the tokenizer it was trained with, whose
                latent space then decodes the samples; :mod:`uae.generation.latent_space`).
            guide_model: The autoguidance model (a model or spec); ``False``: none (the release's
                autoguidance is then switched off); ``None``: the release's.
            pretrained: Load trained weights (``False``: random generator, guidance model and, when given by
                name, tokenizer; for smoke tests).
            device: Where the models go.
            hub: Hub options for every download.

        Raises:
            InputError: Not a generator, no tokenizer known, or mismatched latent shapes.
            MissingFileError: Weights unavailable (offline and not cached), naming repo and file.
        """
        hub_kw = {"hub": hub} if hub is not None else {}
        defaults: GenerationDefaults | None = None
        arch = name.partition(".")[0]
        if arch in list_models():
            if get_entry(arch).family != "generator":
                raise InputError(
                    f"{name!r} is a tokenizer; give a generator (uae models: family generator), "
                    "e.g. dit_dh_xl.rae",
                    param="model",
                )
            cfg = get_pretrained_cfg(name)
            defaults = cfg.generation if cfg is not None else None
            generator = create_model(name, pretrained=pretrained, **(hub_kw if pretrained else {}))
        else:
            generator = load_model(name, family="generator", pretrained=pretrained)
        space = LatentSpace.load(name) if Path(name).expanduser().is_dir() else None
        if tokenizer is None and space is not None and space.tokenizer:
            tokenizer = space.tokenizer  # trained by uae: the tokenizer it was trained with
        if tokenizer is None:
            if defaults is None:
                raise InputError(
                    f"tokenizer needed: no tokenizer is known for {name!r} (give the one it was trained on)",
                    param="tokenizer",
                )
            tokenizer = defaults.tokenizer
        tok_name = tokenizer if isinstance(tokenizer, str) else ""
        if isinstance(tokenizer, str):
            tokenizer = _load(tokenizer, "tokenizer", pretrained, hub_kw)
        guide: DiTDH | None = None
        if guide_model is None and defaults is not None and defaults.guidance_model:
            guide_model = defaults.guidance_model
        if isinstance(guide_model, str):
            guide = _load(guide_model, "generator", pretrained, hub_kw)
        elif isinstance(guide_model, DiTDH):
            guide = guide_model
        sampler = sampler_from_defaults(defaults) if defaults is not None else None
        guidance = guidance_from_defaults(defaults) if defaults is not None else None
        if guidance is not None and guidance.method == "autoguidance" and guide is None:
            logger.info("%s: no guidance model, so its autoguidance is off", name)
            guidance = replace(guidance, scale=1.0)
        pipe = cls(
            tokenizer,  # type: ignore[arg-type]
            generator,  # type: ignore[arg-type]
            guide_model=guide,
            sampler=sampler,
            guidance=guidance,
            name=name,
            tokenizer_name=tok_name,
            latent_space=space,
        )
        if space is not None:
            space.check_tokenizer(pipe.tokenizer)
        return pipe.to(device)

    def models(self) -> list[torch.nn.Module]:
        """The tokenizer, the generator and the guidance model (when there is one)."""
        return [m for m in (self.tokenizer, self.generator, self.guide_model) if m is not None]

    def to(self, device: str | torch.device) -> GenerationPipeline:
        """Move every model to ``device``; returns ``self``."""
        for m in self.models():
            m.to(device)
        return self

    @property
    def device(self) -> torch.device:
        """The generator's device."""
        return next(self.generator.parameters()).device

    @property
    def num_classes(self) -> int:
        """Class labels the generator knows (``0 .. num_classes - 1``)."""
        return self.generator.config.num_classes

    # ------------------------------------------------------------------ settings
    def settings(
        self,
        *,
        steps: int | None = None,
        guidance: float | Guidance | None = None,
        guidance_method: str | None = None,
        t_min: float | None = None,
        t_max: float | None = None,
        sampler: SamplerConfig | None = None,
        method: str | None = None,
    ) -> tuple[SamplerConfig, Guidance]:
        """The sampler and guidance of a call: the pipeline's defaults with the given values changed.

        Raises:
            InputError: A value the sampler or the guidance cannot take (naming the parameter), or
                autoguidance without a guidance model.
        """
        return call_settings(
            sampler if sampler is not None else self.sampler,
            self.guidance,
            steps=steps,
            guidance=guidance,
            guidance_method=guidance_method,
            t_min=t_min,
            t_max=t_max,
            method=method,
            has_guide_model=self.guide_model is not None,
            has_null_class=self.generator.null_class is not None,
        )

    def check_labels(self, class_labels: int | Sequence[int] | torch.Tensor) -> torch.Tensor:
        """``(N,)`` int64 labels, each in ``0 .. num_classes - 1``.

        Raises:
            InputError: Not integers, or out of range (naming the first bad one, ``param="class_labels"``).
        """
        if isinstance(class_labels, torch.Tensor):
            values = class_labels.flatten().tolist() if not class_labels.is_floating_point() else None
        elif isinstance(class_labels, int) and not isinstance(class_labels, bool):
            values = [class_labels]
        else:
            values = list(class_labels)
        if values is None or any(isinstance(v, bool) or not isinstance(v, int) for v in values):
            raise InputError(f"class_labels must be integers, got {class_labels!r}", param="class_labels")
        if not values:
            raise InputError("class_labels is empty", param="class_labels")
        bad = [v for v in values if not 0 <= v < self.num_classes]
        if bad:
            raise InputError(
                f"class index {bad[0]} is out of range: this generator knows classes 0..{self.num_classes - 1}",
                param="class_labels",
            )
        return torch.tensor(values, dtype=torch.long)

    # ------------------------------------------------------------------ generation
    @torch.no_grad()
    def __call__(
        self,
        class_labels: int | Sequence[int] | torch.Tensor,
        *,
        num: int = 1,
        steps: int | None = None,
        guidance: float | Guidance | None = None,
        guidance_method: str | None = None,
        t_min: float | None = None,
        t_max: float | None = None,
        method: str | None = None,
        seed: int = 0,
        seeds: Sequence[int] | None = None,
        generator: torch.Generator | None = None,
        noise: torch.Tensor | None = None,
        batch_size: int | None = None,
        amp: bool = True,
        progress: bool | ProgressCallback = False,
    ) -> GenerationOutput:
        """Generate images of the given classes.

        Args:
            class_labels: Class indices; each gives ``num`` images (``[207, 388], num=2`` -> labels
                ``207, 207, 388, 388``).
            num: Images per label.
            steps: Sampler grid points (the releases: 50); default: the pipeline's.
            guidance: Guidance scale (``<= 1``: none), or a whole :class:`Guidance`; default: the pipeline's.
            guidance_method: ``"cfg"`` or ``"autoguidance"``; default: the pipeline's.
            t_min, t_max: Guidance interval.
            method: Sampler method (``"euler"``, ``"rk4"``, ...); default: the pipeline's.
            seed: Run seed: image ``j`` starts from noise seeded with ``image_seed(seed, j)``.
            seeds: Per-image seeds instead (one per image).
            generator: A CPU ``torch.Generator`` to draw all the noise from at once instead (diffusers style;
                then the images depend on the batch).
            noise: The initial latents ``(B, C, h, w)`` themselves (e.g. to reproduce another run).
            batch_size: Images per forward batch (default: all at once).
            amp: bf16 autocast on CUDA (:func:`uae.utils.autocast_dtype`); no effect on the CPU.
            progress: A tqdm bar over the sampler steps, or a ``callback(step, total)``.

        Returns:
            :class:`GenerationOutput`.

        Raises:
            InputError: Bad labels, counts, steps, guidance or seeds (naming the parameter).
        """
        sampler, guide = self.settings(
            steps=steps,
            guidance=guidance,
            guidance_method=guidance_method,
            t_min=t_min,
            t_max=t_max,
            method=method,
        )
        if isinstance(num, bool) or not isinstance(num, int) or num < 1:
            raise InputError(f"num must be a positive integer (images per class), got {num!r}", param="num")
        labels = self.check_labels(class_labels).repeat_interleave(num)
        n = labels.shape[0]
        x, used_seeds = self._initial_noise(n, noise=noise, generator=generator, seeds=seeds, seed=seed)
        bs = n if batch_size is None else batch_size
        if isinstance(bs, bool) or not isinstance(bs, int) or bs < 1:
            raise InputError(f"batch_size must be a positive integer, got {batch_size!r}", param="batch_size")
        per_batch = sampler.num_steps - 1 + (sampler.mode == "sde" and sampler.last_step != "none")
        bar = _Progress(progress, math.ceil(n / bs) * per_batch)
        sde_gen = generator
        if (
            sampler.mode == "sde" and sde_gen is None
        ):  # one generator per call: SDE images depend on the batch
            sde_gen = torch.Generator().manual_seed(used_seeds[0] if used_seeds else seed)
        latents, images = [], []
        try:
            for k, start in enumerate(range(0, n, bs)):
                z = self.sample_latents(
                    x[start : start + bs],
                    labels[start : start + bs],
                    sampler=sampler,
                    guidance=guide,
                    generator=sde_gen,
                    callback=lambda step, _total, base=k * per_batch: bar(base + step),
                    amp=amp,
                )
                latents.append(z)
                images.append(self.decode(z, amp=amp))
        finally:
            bar.close()
        return GenerationOutput(torch.cat(images), torch.cat(latents), labels, used_seeds)

    def _initial_noise(
        self,
        n: int,
        *,
        noise: torch.Tensor | None,
        generator: torch.Generator | None,
        seeds: Sequence[int] | None,
        seed: int,
    ) -> tuple[torch.Tensor, list[int] | None]:
        """``(B, C, h, w)`` initial latents on the CPU and the per-image seeds they came from (if any)."""
        shape = tuple(self.generator.config.latent_shape)
        if noise is not None:
            if tuple(noise.shape) != (n, *shape):
                raise InputError(
                    f"noise must have shape {(n, *shape)}, got {tuple(noise.shape)}", param="noise"
                )
            return noise.float().cpu(), None
        if generator is not None:
            return torch.randn((n, *shape), generator=generator), None
        if seeds is not None:
            used = [int(s) for s in seeds]
            if len(used) != n:
                raise InputError(f"seeds must give one seed per image ({n}), got {len(used)}", param="seeds")
        else:
            used = [image_seed(seed, j) for j in range(n)]
        return image_noise(used, shape), used

    @torch.no_grad()
    def sample_latents(
        self,
        noise: torch.Tensor,
        labels: torch.Tensor,
        *,
        sampler: SamplerConfig | None = None,
        guidance: Guidance | None = None,
        generator: torch.Generator | None = None,
        callback: ProgressCallback | None = None,
        amp: bool = True,
    ) -> torch.Tensor:
        """Sample normalised latents ``(B, C, h, w)`` (float32, CPU) from given noise and labels.

        The samplers and guidance of :mod:`uae.generation` (bit-identical to the originals on the CPU).
        """
        sampler, guidance = self.settings(sampler=sampler, guidance=guidance)
        dev = self.device
        with maybe_autocast(dev, enabled=amp):
            z = sample(
                self.generator,
                noise.to(dev),
                labels.to(dev),
                sampler=sampler,
                guidance=guidance,
                guide_model=self.guide_model,
                generator=generator,
                callback=callback,
            )
        return z.float().cpu()

    @torch.no_grad()
    def decode(self, latents: torch.Tensor, *, amp: bool = True) -> torch.Tensor:
        """Images ``(B, 3, H, W)`` in ``[0, 1]`` (float32, CPU) from normalised latents, as the originals decode
        a sample (:meth:`uae.UAE.decode_latent` with ``normalized=True``, clamped)."""
        dev = next(self.tokenizer.parameters()).device
        with maybe_autocast(dev, enabled=amp):
            z = latents.to(dev).float()
            if self.latent_space is not None:
                out = self.latent_space.decode(self.tokenizer, z, clamp=True)
            else:
                out = self.tokenizer.decode_latent(z, normalized=True, clamp=True).sample
        return out.float().cpu()


def _load(spec: str, family: str, pretrained: bool, hub_kw: dict[str, Any]) -> Any:
    """A tokenizer or generator by spec (registered name, directory or Hub repo)."""
    arch = spec.partition(".")[0]
    if arch in list_models():
        found = get_entry(arch).family
        if found != family:
            param = "tokenizer" if family == "tokenizer" else "guide_model"
            raise InputError(f"{param} {spec!r} is a {found}, not a {family}", param=param)
        return create_model(spec, pretrained=pretrained, **(hub_kw if pretrained else {})).eval()
    return load_model(spec, family=family, pretrained=pretrained)


class _Progress:
    """Sampler steps done so far -> a tqdm bar (``progress=True``) or the user's ``callback(done, total)``."""

    def __init__(self, progress: bool | ProgressCallback, total: int) -> None:
        self.total = total
        self.callback = progress if callable(progress) else None
        self.bar = None
        if progress is True:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total, desc="sampling", unit="step", dynamic_ncols=True)

    def __call__(self, done: int) -> None:
        if self.callback is not None:
            self.callback(done, self.total)
        if self.bar is not None:
            self.bar.update(done - self.bar.n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


__all__ = ["GenerationOutput", "GenerationPipeline"]
