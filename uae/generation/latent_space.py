"""What a generator models: which tensor of a tokenizer's latents, which bands, and which normalisation.

A generator trained by :class:`uae.training.latent_diffusion.LatentDiffusionModule` samples in a latent
space described by a :class:`LatentSpace`, saved next to its weights (``latent_space.json`` +
``latent_space.safetensors``) and read back by :meth:`uae.generation.GenerationPipeline.from_pretrained`,
which then decodes its samples the way they were made:

* ``what="fused"``: the band modulator's output, the decoder's input (``UAEOutput.fused``). For RAE's
  tokenizers it is the latent itself, for the ``dct_zigzag`` releases the kept low-pass band: the space the
  released generators were trained in. Decoded with :meth:`uae.UAE.decode_latent` (the decoder alone).
* ``what="latent"``: the encoder's latent before the band split. Decoded with :meth:`uae.UAE.decode`
  (band split, modulator, decoder).
* ``what="bands"``: the **sum** of a subset of bands (``bands=(0,)``, ``"0:2"``...), i.e. the latent
  low-passed to those bands: the paper's low-to-high frequency generation. The sum keeps the latent's
  shape ``(C, h, w)``, so one generator can be trained on band 0 first and on more bands later (a
  curriculum, like the authors' progressive ``band_split.count``), and a sample decodes like a latent
  (:meth:`uae.UAE.decode`: split into bands again, fused, rendered; for the FFT schemes the bands above the
  subset are then near zero, exactly zero where the band masks do not overlap). Stacking the bands on the
  channels was not chosen: it changes the generator's width with the subset and has no decoder.

Normalisation (``stats``): ``"tokenizer"``, the tokenizer's own latent statistics (a release's
per-position ``latent_mean`` / ``latent_std``; the originals' ``(z - mean) / sqrt(var + eps)``, only for
``"fused"`` or a one-band tokenizer, where they apply); ``"export"``, per-channel mean and std of the
``uae encode`` export (``latent_stats.safetensors``; for a band subset the mean is the sum of the band
means and the variance the sum of the band variances, exact when the bands are orthogonal over the grid,
i.e. their frequency masks do not overlap); ``"none"``. The statistics used are stored with the generator,
so decoding never depends on the training data.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from uae.errors import ConfigError, DamagedFileError
from uae.models.uae import UAE

logger = logging.getLogger(__name__)

LATENT_KINDS = ("fused", "latent", "bands")
STATS_SOURCES = ("auto", "tokenizer", "export", "none")
SPACE_FILE = "latent_space.json"
STATS_FILE = "latent_space.safetensors"


def parse_bands(bands: int | str | Sequence[int] | None, num_bands: int) -> tuple[int, ...]:
    """Band indices from ``0``, ``[0, 1]``, ``"0:2"`` (a Python slice, end excluded), ``"1"`` or ``None`` (all).

    Args:
        bands: The selection.
        num_bands: The tokenizer's ``K``.

    Returns:
        Sorted, distinct indices in ``0 .. K-1``.

    Raises:
        ConfigError: An empty, out-of-range or unreadable selection (``param="bands"``).
    """
    if bands is None:
        return tuple(range(num_bands))
    try:
        if isinstance(bands, str):
            text = bands.strip()
            if ":" in text:
                parts = [int(p) if p.strip() else None for p in text.split(":")]
                picked = list(range(num_bands))[slice(*parts)]
            else:
                picked = [int(text)]
        elif isinstance(bands, int) and not isinstance(bands, bool):
            picked = [bands]
        else:
            picked = [int(b) for b in bands if not isinstance(b, bool)]
            if len(picked) != len(list(bands)):
                raise ValueError
    except (TypeError, ValueError):
        raise ConfigError(
            f"bands must be an index, a list of indices or a slice 'a:b', got {bands!r}", param="bands"
        ) from None
    bad = [b for b in picked if not 0 <= b < num_bands]
    if not picked or bad:
        raise ConfigError(
            f"bands {bands!r} selects {'no band' if not picked else f'band {bad[0]}'}; the tokenizer has bands "
            f"0..{num_bands - 1}",
            param="bands",
        )
    return tuple(sorted(set(picked)))


@dataclass
class LatentSpace:
    """The generator's latent space (see the module docs).

    Attributes:
        what: ``"fused"``, ``"latent"`` or ``"bands"``.
        bands: The summed bands (``what="bands"``), else ``None``.
        stats: Where ``mean`` / ``std`` came from: ``"tokenizer"``, ``"export"`` or ``"none"``.
        mean: ``(C,)`` or ``(C, h, w)`` float32 subtracted before training (``None``: 0).
        std: Same shape, divided by (``None``: 1).
        latent_shape: ``(C, h, w)`` of the generator's latents.
        tokenizer: How the tokenizer was named when training started (a ``--model``-style spec).
        tokenizer_fingerprint: :func:`uae.evaluation.common.tokenizer_fingerprint` of that tokenizer.
    """

    what: str = "fused"
    bands: tuple[int, ...] | None = None
    stats: str = "none"
    mean: torch.Tensor | None = field(default=None, repr=False)
    std: torch.Tensor | None = field(default=None, repr=False)
    latent_shape: tuple[int, ...] = ()
    tokenizer: str = ""
    tokenizer_fingerprint: str = ""

    def __post_init__(self) -> None:
        if self.what not in LATENT_KINDS:
            raise ConfigError(f"what must be one of {LATENT_KINDS}, got {self.what!r}", param="what")
        if self.stats not in STATS_SOURCES[1:]:
            raise ConfigError(f"stats must be one of {STATS_SOURCES[1:]}, got {self.stats!r}", param="stats")
        if (self.what == "bands") != (self.bands is not None):
            raise ConfigError("bands are given exactly when what is 'bands'", param="bands")
        self.bands = tuple(int(b) for b in self.bands) if self.bands is not None else None
        self.latent_shape = tuple(int(v) for v in self.latent_shape)

    # ------------------------------------------------------------------ data -> generator space
    def select(self, x: torch.Tensor) -> torch.Tensor:
        """A stored tensor -> the modelled latent (float32): ``bands (..., K, C, h, w)`` summed over
        :attr:`bands`; ``latent`` / ``fused`` ``(..., C, h, w)`` unchanged."""
        x = x.float()
        if self.bands is None:
            return x
        return x[..., list(self.bands), :, :, :].sum(dim=-4)

    def _stats(self, like: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        def shaped(t: torch.Tensor | None) -> torch.Tensor | None:
            if t is None:
                return None
            t = t.to(device=like.device, dtype=like.dtype)
            return t.view(-1, 1, 1) if t.ndim == 1 else t

        return shaped(self.mean), shaped(self.std)

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """``(x - mean) / std`` on ``(B, C, h, w)`` latents (the tokenizer's ``normalize_latent`` arithmetic)."""
        mean, std = self._stats(x)
        if mean is not None:
            x = x - mean
        return x / std if std is not None else x

    def denormalize(self, z: torch.Tensor) -> torch.Tensor:
        """``z * std + mean`` (the inverse of :meth:`normalize`)."""
        mean, std = self._stats(z)
        if std is not None:
            z = z * std
        return z + mean if mean is not None else z

    # ------------------------------------------------------------------ generator space -> images
    @torch.no_grad()
    def decode(self, tokenizer: UAE, z: torch.Tensor, *, clamp: bool = True) -> torch.Tensor:
        """Images ``(B, 3, H, W)`` from generated latents ``(B, C, h, w)`` (see the module docs).

        With the tokenizer's own statistics on its decoder space this is exactly
        :func:`uae.generation.decode.decode_latents` (the originals' decode of a sample).
        """
        if self.what == "fused" and self.stats == "tokenizer":
            return tokenizer.decode_latent(z, normalized=True, clamp=clamp).sample
        latent = self.denormalize(z)
        if self.what == "fused":
            return tokenizer.decode_latent(latent, clamp=clamp).sample
        return tokenizer.decode(latent, clamp=clamp).sample

    def check_tokenizer(self, tokenizer: UAE) -> bool:
        """Whether ``tokenizer`` is the one the generator was trained with (by fingerprint); logs a warning
        when it is not (its samples then decode to noise or worse)."""
        if not self.tokenizer_fingerprint:
            return True
        from uae.evaluation.common import tokenizer_fingerprint

        found = tokenizer_fingerprint(tokenizer)
        if found != self.tokenizer_fingerprint:
            logger.warning(
                "This generator was trained on the latents of tokenizer %r (fingerprint %s...), not of the one "
                "given (%s...): its samples will not decode to images",
                self.tokenizer,
                self.tokenizer_fingerprint[:12],
                found[:12],
            )
            return False
        return True

    # ------------------------------------------------------------------ files
    def to_dict(self) -> dict[str, Any]:
        """The JSON part (the statistics go to :data:`STATS_FILE`)."""
        return {
            "what": self.what,
            "bands": list(self.bands) if self.bands is not None else None,
            "stats": self.stats,
            "latent_shape": list(self.latent_shape),
            "tokenizer": self.tokenizer,
            "tokenizer_fingerprint": self.tokenizer_fingerprint,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any], tensors: dict[str, torch.Tensor] | None = None) -> LatentSpace:
        """Inverse of :meth:`to_dict` (with the statistics tensors ``{"mean", "std"}`` when there are some)."""
        tensors = tensors or {}
        bands = data.get("bands")
        return cls(
            what=data["what"],
            bands=tuple(bands) if bands is not None else None,
            stats=data.get("stats", "none"),
            mean=tensors.get("mean"),
            std=tensors.get("std"),
            latent_shape=tuple(data.get("latent_shape", ())),
            tokenizer=data.get("tokenizer", ""),
            tokenizer_fingerprint=data.get("tokenizer_fingerprint", ""),
        )

    def save(self, directory: str | os.PathLike) -> None:
        """Write :data:`SPACE_FILE` (and :data:`STATS_FILE` when there are statistics) into ``directory``."""
        from safetensors.torch import save_file

        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        (d / SPACE_FILE).write_text(json.dumps(self.to_dict(), indent=1) + "\n")
        tensors = {
            k: v.detach().float().cpu().contiguous()
            for k, v in (("mean", self.mean), ("std", self.std))
            if v is not None  # stats "none": no statistics file
        }
        if tensors:
            save_file(tensors, str(d / STATS_FILE))
        else:  # an earlier save's statistics must not be read back with this space
            (d / STATS_FILE).unlink(missing_ok=True)

    @classmethod
    def load(cls, directory: str | os.PathLike) -> LatentSpace | None:
        """The latent space saved in ``directory``, or ``None`` when there is none (a released generator).

        Raises:
            DamagedFileError: An unreadable file.
        """
        d = Path(directory)
        if not (d / SPACE_FILE).is_file():
            return None
        try:
            data = json.loads((d / SPACE_FILE).read_text())
            tensors: dict[str, torch.Tensor] = {}
            if (d / STATS_FILE).is_file():
                from safetensors.torch import load_file

                tensors = load_file(str(d / STATS_FILE))
            return cls.from_dict(data, tensors)
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise DamagedFileError(f"cannot read the latent space of {d}: {e}") from e


def tokenizer_stats(tokenizer: UAE) -> tuple[torch.Tensor, torch.Tensor] | None:
    """The tokenizer's ``(latent_mean, latent_std)``, or ``None`` when they are the identity (0 and 1)."""
    mean, std = tokenizer.latent_mean.detach().float().cpu(), tokenizer.latent_std.detach().float().cpu()
    if bool((mean == 0).all()) and bool((std == 1).all()):
        return None
    return mean.clone(), std.clone()


__all__ = [
    "LATENT_KINDS",
    "STATS_FILE",
    "SPACE_FILE",
    "STATS_SOURCES",
    "LatentSpace",
    "parse_bands",
    "tokenizer_stats",
]
