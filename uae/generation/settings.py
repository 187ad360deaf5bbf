"""A generation call's sampler and guidance: a release's defaults, and the per-call changes, checked once.

:class:`uae.models.pretrained.GenerationDefaults` (a generator's weights-table entry) becomes a
:class:`~uae.generation.samplers.SamplerConfig` and a :class:`~uae.generation.guidance.Guidance`;
:func:`call_settings` applies the values a call changes (``steps``, ``guidance``, ...) with errors that
name the parameter.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

from uae.errors import ConfigError, InputError
from uae.generation.flow import SHIFT_BASE, time_shift
from uae.generation.guidance import GUIDANCE_METHODS, Guidance
from uae.generation.samplers import SamplerConfig
from uae.models.pretrained import GenerationDefaults


def default_shift(latent_shape: Sequence[int]) -> float:
    """The releases' time shift for a latent shape: ``sqrt(C*H*W / 4096)``, at least 1 (no shift)."""
    dims = math.prod(latent_shape)
    return time_shift(dims) if dims >= SHIFT_BASE else 1.0


def sampler_from_defaults(d: GenerationDefaults) -> SamplerConfig:
    """The release's :class:`SamplerConfig`."""
    return SamplerConfig(
        mode=d.mode,  # type: ignore[arg-type]
        method=d.method,
        num_steps=d.num_steps,
        shift=time_shift(d.shift_dim, d.shift_base),
        prediction=d.prediction,  # type: ignore[arg-type]
    )


def guidance_from_defaults(d: GenerationDefaults) -> Guidance:
    """The release's :class:`Guidance`."""
    return Guidance(
        scale=d.guidance_scale,
        method=d.guidance_method,  # type: ignore[arg-type]
        t_min=d.guidance_t_min,
        t_max=d.guidance_t_max,
    )


def call_settings(
    sampler: SamplerConfig,
    base_guidance: Guidance,
    *,
    steps: int | None = None,
    guidance: float | Guidance | None = None,
    guidance_method: str | None = None,
    t_min: float | None = None,
    t_max: float | None = None,
    method: str | None = None,
    has_guide_model: bool = False,
    has_null_class: bool = True,
) -> tuple[SamplerConfig, Guidance]:
    """The sampler and guidance of one call: the defaults with the given values changed.

    Args:
        sampler, base_guidance: The defaults.
        steps: Grid points (``>= 2``).
        guidance: A scale (``>= 0``; ``<= 1`` is none) or a whole :class:`Guidance`.
        guidance_method: ``"cfg"`` or ``"autoguidance"``.
        t_min, t_max: The guidance interval.
        method: The sampler method.
        has_guide_model: Whether an autoguidance model is there.
        has_null_class: Whether the generator has the null class CFG needs.

    Raises:
        InputError: A value the sampler or the guidance cannot take (naming the parameter), or guidance the
            models cannot serve.
    """
    s = sampler
    if steps is not None:
        if isinstance(steps, bool) or not isinstance(steps, int) or steps < 2:
            raise InputError(f"steps must be an integer >= 2 (grid points), got {steps!r}", param="steps")
        s = replace(s, num_steps=steps)
    if method is not None:
        s = _checked(lambda: replace(s, method=method), "method")
    g = guidance if isinstance(guidance, Guidance) else base_guidance
    if isinstance(guidance, (int, float)) and not isinstance(guidance, bool):
        if not math.isfinite(guidance) or guidance < 0:
            raise InputError(f"guidance must be a scale >= 0, got {guidance!r}", param="guidance")
        g = replace(g, scale=float(guidance))
    elif guidance is not None and not isinstance(guidance, Guidance):
        raise InputError(f"guidance must be a number or a Guidance, got {guidance!r}", param="guidance")
    if guidance_method is not None:
        if guidance_method not in GUIDANCE_METHODS:
            raise InputError(
                f"guidance_method must be one of {GUIDANCE_METHODS}, got {guidance_method!r}",
                param="guidance_method",
            )
        g = replace(g, method=guidance_method)  # type: ignore[arg-type]
    if t_min is not None or t_max is not None:
        g = _checked(
            lambda: replace(
                g, t_min=g.t_min if t_min is None else t_min, t_max=g.t_max if t_max is None else t_max
            ),
            "t_min",
        )
    if g.active and g.method == "autoguidance" and not has_guide_model:
        raise InputError(
            "guidance_method autoguidance needs a guidance model (guide_model), and this pipeline has none: "
            "use cfg, or a guidance scale of 1",
            param="guidance_method",
        )
    if g.active and g.method == "cfg" and not has_null_class:
        raise InputError(
            "this generator has no null class: classifier-free guidance is impossible", param="guidance"
        )
    return s, g


def _checked(build: Callable[[], Any], param: str) -> Any:
    """Build a settings object; its :class:`ConfigError` becomes an :class:`InputError` about ``param``."""
    try:
        return build()
    except ConfigError as e:
        raise InputError(str(e), param=e.param or param) from e


__all__ = ["call_settings", "default_shift", "guidance_from_defaults", "sampler_from_defaults"]
