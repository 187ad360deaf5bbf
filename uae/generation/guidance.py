"""Classifier-free guidance and autoguidance with a guidance interval.

What the originals do (``forward_with_cfg`` / ``forward_with_autoguidance`` of ``DiTwDDTHead``; the
sampling scripts turn guidance on only when ``scale > 1``):

* **CFG**: one forward pass on ``[x, x]`` with labels ``[y, null]``; the guided output
  ``uncond + scale * (cond - uncond)`` where ``t_min <= t <= t_max``, the conditional output elsewhere.
* **Autoguidance**: the main model and a smaller guidance model (DiT-DH-S for RAE's DiT-DH-XL) both
  conditional; ``guide + scale * (main - guide)`` inside the interval, ``main`` elsewhere.

Guidance acts on the model output (a velocity, or a clean latent for ``prediction="x"`` models,
converted to a velocity afterwards), as in the originals.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from uae.errors import ConfigError, InputError

GuidanceMethod = Literal["cfg", "autoguidance"]
GUIDANCE_METHODS = ("cfg", "autoguidance")


@dataclass(frozen=True)
class Guidance:
    """Guidance settings.

    Attributes:
        scale: Guidance scale; ``<= 1`` disables guidance (the originals then run the plain forward).
        method: ``"cfg"`` or ``"autoguidance"`` (needs a guidance model).
        t_min, t_max: Guidance is applied where ``t_min <= t <= t_max`` (``t = 1`` noise); the originals
            require ``t_min < t_max``.
        original_batching: Autoguidance only: run both models on ``[x, x]`` with labels ``[y, null]`` and
            keep the first half, as the originals do (they integrate the guidance-doubled batch). The
            extra rows change nothing mathematically, but float32 matmuls round differently for another
            batch size, so this keeps samples bit-identical to the originals on the CPU, at twice the cost.
            ``False`` runs only the conditional rows (about 1e-5 apart on the tiny fixtures).
    """

    scale: float = 1.0
    method: GuidanceMethod = "cfg"
    t_min: float = 0.0
    t_max: float = 1.0
    original_batching: bool = True

    def __post_init__(self) -> None:
        if self.method not in GUIDANCE_METHODS:
            raise ConfigError(
                f"method must be one of {GUIDANCE_METHODS}, got {self.method!r}", param="method"
            )
        for name in ("scale", "t_min", "t_max"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value:
                raise ConfigError(f"{name} must be a number, got {value!r}", param=name)
        if not self.t_min < self.t_max:
            raise ConfigError(f"t_min must be below t_max, got {self.t_min} and {self.t_max}", param="t_min")
        if not isinstance(self.original_batching, bool):
            raise ConfigError(
                f"original_batching must be true or false, got {self.original_batching!r}",
                param="original_batching",
            )

    @property
    def active(self) -> bool:
        """Whether guidance changes anything (``scale > 1``)."""
        return self.scale > 1.0


def guided_model(
    model: nn.Module,
    labels: torch.Tensor,
    guidance: Guidance,
    *,
    null_class: int | None = None,
    guide_model: nn.Module | None = None,
) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """``f(x, t) -> output`` of ``model`` for fixed labels, with guidance.

    Args:
        model: ``model(x, t, y) -> (B, ...)``.
        labels: ``(B,)`` class labels.
        guidance: The settings.
        null_class: The unconditional label (CFG); defaults to ``model.null_class``.
        guide_model: The guidance model (autoguidance).

    Returns:
        A function of ``x (B, ...)`` and ``t (B,)``.

    Raises:
        InputError: CFG without a null class, autoguidance without a guidance model.
    """
    if not guidance.active:
        return lambda x, t: model(x, t, labels)
    null = null_class if null_class is not None else getattr(model, "null_class", None)
    if guidance.method == "cfg":
        if null is None:
            raise InputError("classifier-free guidance needs a model with a null class", param="null_class")
        both = torch.cat([labels, torch.full_like(labels, null)])

        def cfg(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            cond, uncond = model(torch.cat([x, x]), torch.cat([t, t]), both).chunk(2)
            return _in_interval(t, guidance, uncond + guidance.scale * (cond - uncond), cond)

        return cfg
    if guide_model is None:
        raise InputError("autoguidance needs a guidance model", param="guide_model")
    doubled = torch.cat([labels, labels if null is None else torch.full_like(labels, null)])

    def autoguidance(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        if guidance.original_batching:
            b = x.shape[0]
            xx, tt = torch.cat([x, x]), torch.cat([t, t])
            main, weak = model(xx, tt, doubled)[:b], guide_model(xx, tt, doubled)[:b]
        else:
            main, weak = model(x, t, labels), guide_model(x, t, labels)
        return _in_interval(t, guidance, weak + guidance.scale * (main - weak), main)

    return autoguidance


def _in_interval(t: torch.Tensor, g: Guidance, guided: torch.Tensor, plain: torch.Tensor) -> torch.Tensor:
    inside = ((t >= g.t_min) & (t <= g.t_max)).view(-1, *([1] * (plain.ndim - 1)))
    return torch.where(inside, guided, plain)


__all__ = ["GUIDANCE_METHODS", "Guidance", "guided_model"]
