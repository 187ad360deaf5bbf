"""Samplers of the released generators: ODE (Euler, RK4) and SDE (Euler-Maruyama, Heun) on a shifted grid.

Reproduces ``Sampler.sample_ode`` / ``sample_sde`` of the originals' ``src/stage2/transport``
(torchdiffeq's fixed-grid ``euler`` and ``rk4`` for the ODE; ``rk4`` there is the 3/8 rule,
``rk4_alt_step_func``), written out by hand:

* **Time grid**: ``t_i = shift(1 - linspace(t0, t1, num_steps))``, from ``t = 1`` (noise) towards 0.
  ``num_steps`` counts grid points, so there are ``num_steps - 1`` steps. For velocity models the ODE
  uses ``t0 = 0, t1 = 0.999`` (it stops at ``shift(0.001)``); clean-latent models use
  ``t0 = 0.001, t1 = 0.999``; the SDE uses ``t1 = 1 - last_step_size`` and then one last step.
* **ODE**: ``x <- x + (t_{i+1} - t_i) v(x, t_i)`` (Euler) or the 3/8-rule RK4 step.
* **SDE**: reverse-time Euler-Maruyama / Heun with drift ``v - D(t) * score`` and diffusion ``D(t)``
  (``"sigma"``/``"linear"``: ``norm * t``; ``"decreasing"``; ``"increasing-decreasing"``), Wiener
  increments from a CPU generator, then a last step (``"mean"``, ``"euler"``, ``"tweedie"`` or none).
  Quirks kept from the originals: the last step evaluates the model at the *unshifted* time
  ``last_step_size``; with guidance the noise is drawn for the guidance-doubled batch the originals
  integrate (its first half is used), so a seed gives their sample. Their default
  ``diffusion_form="SBDM"`` gives a negative diffusion under this time convention (NaN samples) and
  ``"constant"`` fails in their code; both are refused here.

Everything runs under ``torch.no_grad`` on any device; on the CPU a run is deterministic for a seed.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from uae.errors import ConfigError, InputError
from uae.generation.flow import (
    PREDICTIONS,
    X_PREDICTION_EPS,
    Prediction,
    score_from_velocity,
    score_from_x_start,
    shift_times,
    velocity_from_x_start,
)
from uae.generation.guidance import Guidance, guided_model

ODE_METHODS = ("euler", "rk4")
SDE_METHODS = ("euler", "heun")
DIFFUSION_FORMS = ("sigma", "linear", "decreasing", "increasing-decreasing")
LAST_STEPS = ("mean", "euler", "tweedie", "none")
#: Grid end of the originals' ODE for velocity models (``1 - 1/1000``).
ODE_T_END = 1 - 1 / 1000

ProgressCallback = Callable[[int, int], None]


@dataclass(frozen=True)
class SamplerConfig:
    """How to integrate from noise to a latent.

    Attributes:
        mode: ``"ode"`` or ``"sde"``.
        method: ODE ``"euler"`` (RAE's configs) or ``"rk4"`` (the authors' 64-token config); SDE
            ``"euler"`` (Euler-Maruyama) or ``"heun"``.
        num_steps: Grid points (the originals' ``num_steps``; ``num_steps - 1`` steps, 50 in the releases).
        shift: Time shift (:func:`uae.generation.flow.time_shift`; ``sqrt(196608 / 4096)`` for 16x16x768).
        prediction: What the model predicts: ``"velocity"`` or ``"x"`` (clean latent).
        diffusion_form, diffusion_norm: SDE diffusion ``D(t)`` (see the module docs).
        last_step, last_step_size: SDE last step (``"mean"``: one more drift step; ``"euler"``: one
            velocity step; ``"tweedie"``: Tweedie's denoiser; ``"none"``) and its size.
    """

    mode: Literal["ode", "sde"] = "ode"
    method: str = "euler"
    num_steps: int = 50
    shift: float = 1.0
    prediction: Prediction = "velocity"
    diffusion_form: str = "sigma"
    diffusion_norm: float = 1.0
    last_step: str = "mean"
    last_step_size: float = 0.04

    def __post_init__(self) -> None:
        if self.mode not in ("ode", "sde"):
            raise ConfigError(f"mode must be 'ode' or 'sde', got {self.mode!r}", param="mode")
        methods = ODE_METHODS if self.mode == "ode" else SDE_METHODS
        if self.method not in methods:
            raise ConfigError(
                f"method for mode {self.mode!r} must be one of {methods}, got {self.method!r}", param="method"
            )
        if isinstance(self.num_steps, bool) or not isinstance(self.num_steps, int) or self.num_steps < 2:
            raise ConfigError(
                f"num_steps must be an int >= 2 (grid points), got {self.num_steps!r}", param="num_steps"
            )
        if not isinstance(self.shift, (int, float)) or not math.isfinite(self.shift) or self.shift < 1:
            raise ConfigError(f"shift must be a number >= 1, got {self.shift!r}", param="shift")
        if self.prediction not in PREDICTIONS:
            raise ConfigError(
                f"prediction must be one of {PREDICTIONS}, got {self.prediction!r}", param="prediction"
            )
        if self.mode == "sde":
            if self.diffusion_form not in DIFFUSION_FORMS:
                raise ConfigError(
                    f"diffusion_form must be one of {DIFFUSION_FORMS}, got {self.diffusion_form!r} (the originals' "
                    "'SBDM' is negative under their time convention and gives NaN; 'constant' fails there)",
                    param="diffusion_form",
                )
            if self.last_step not in LAST_STEPS:
                raise ConfigError(
                    f"last_step must be one of {LAST_STEPS}, got {self.last_step!r}", param="last_step"
                )
            if self.last_step != "none" and not 0 < self.last_step_size < 1:
                raise ConfigError(
                    f"last_step_size must be in (0, 1), got {self.last_step_size!r}", param="last_step_size"
                )

    def interval(self) -> tuple[float, float]:
        """``(t0, t1)`` of the grid before ``1 - .`` and the shift (the originals' ``check_interval``)."""
        eps = 0.0 if self.prediction == "velocity" else X_PREDICTION_EPS
        if self.mode == "ode":
            return (0, ODE_T_END) if self.prediction == "velocity" else (eps, 1 - eps)
        size = 0.0 if self.last_step == "none" else self.last_step_size
        t0 = eps if self.prediction != "velocity" else 0
        return t0, (1 - eps if size == 0 else 1 - size)

    def times(self, device: torch.device | str | None = None) -> torch.Tensor:
        """The ``(num_steps,)`` float32 time grid, from ``t = 1`` down."""
        t0, t1 = self.interval()
        return shift_times(1 - torch.linspace(t0, t1, self.num_steps), self.shift).to(device)


def _velocity_and_score(
    fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], prediction: Prediction
) -> tuple[Callable, Callable]:
    def velocity(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        out = fn(x, t)
        return out if prediction == "velocity" else velocity_from_x_start(out, x, t)

    def both(x: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = fn(x, t)
        if prediction == "velocity":
            return out, score_from_velocity(out, x, t)
        return velocity_from_x_start(out, x, t), score_from_x_start(out, x, t)

    return velocity, both


def _diffusion(form: str, norm: float, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    te = t.view(t.shape[0], *([1] * (x.ndim - 1)))
    if form in ("sigma", "linear"):
        return norm * te
    if form == "decreasing":
        return 0.25 * (norm * torch.cos(math.pi * (1 - te)) + 1) ** 2
    return norm * torch.sin(math.pi * (1 - te)) ** 2  # increasing-decreasing


def sample_ode(
    velocity: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    noise: torch.Tensor,
    config: SamplerConfig,
    *,
    callback: ProgressCallback | None = None,
) -> torch.Tensor:
    """Integrate ``dx/dt = velocity(x, t)`` from ``t = 1`` over :meth:`SamplerConfig.times`.

    Args:
        velocity: ``(x (B, ...), t (B,)) -> (B, ...)``.
        noise: ``(B, ...)`` the initial latents.
        config: ``mode="ode"`` settings.
        callback: Called as ``callback(step, total)`` after each step.

    Returns:
        ``(B, ...)`` the final latents.
    """
    times = config.times(noise.device)
    b = noise.shape[0]

    def f(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return velocity(x, torch.ones(b, device=x.device) * t)

    x, third, two_thirds = noise, 1 / 3, 2 / 3
    total = len(times) - 1
    for i in range(total):
        t0, t1 = times[i], times[i + 1]
        h = t1 - t0
        if config.method == "euler":
            x = x + h * f(x, t0)
        else:  # torchdiffeq's "rk4": the 3/8 rule
            k1 = f(x, t0)
            k2 = f(x + h * k1 * third, t0 + h * third)
            k3 = f(x + h * (k2 - k1 * third), t0 + h * two_thirds)
            k4 = f(x + h * (k1 - k2 + k3), t1)
            x = x + (k1 + 3 * (k2 + k3) + k4) * h * 0.125
        if callback is not None:
            callback(i + 1, total)
    return x


def sample_sde(
    fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    noise: torch.Tensor,
    config: SamplerConfig,
    *,
    generator: torch.Generator | None = None,
    noise_rows: int | None = None,
    callback: ProgressCallback | None = None,
) -> torch.Tensor:
    """Reverse-time SDE from ``t = 1`` over :meth:`SamplerConfig.times`, then the last step.

    Args:
        fn: The (guided) model output ``(x, t (B,)) -> (B, ...)`` (a velocity or a clean latent, by
            ``config.prediction``).
        noise: ``(B, ...)`` initial latents.
        config: ``mode="sde"`` settings.
        generator: Generator of the Wiener increments (drawn with ``torch.randn`` on its device, the CPU
            by default, then moved to ``noise``'s); ``None`` uses torch's global one.
        noise_rows: Rows of each increment draw (``2 B`` with guidance, as the originals integrate the
            doubled batch); the first ``B`` are used.
        callback: Called as ``callback(step, total)``.

    Returns:
        ``(B, ...)`` the final latents.
    """
    b = noise.shape[0]
    rows = noise_rows or b
    shape = (rows, *noise.shape[1:])
    gen_device = generator.device if generator is not None else torch.device("cpu")
    velocity, both = _velocity_and_score(fn, config.prediction)
    form, norm = config.diffusion_form, config.diffusion_norm

    def drift(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        v, score = both(x, t)
        return v - _diffusion(form, norm, x, t) * score

    times = config.times(noise.device)
    x = noise
    total = len(times) - 1 + (config.last_step != "none")
    for i in range(len(times) - 1):
        tc, tn = times[i], times[i + 1]
        w = torch.randn(shape, generator=generator, device=gen_device)[:b].to(x)
        dw = w * torch.sqrt(tc - tn)
        t = torch.ones(b, device=x.device) * tc
        if config.method == "euler":
            mean_x = x - drift(x, t) * (tc - tn)
            x = mean_x + torch.sqrt(2 * _diffusion(form, norm, x, t)) * dw
        else:  # heun
            xhat = x + torch.sqrt(2 * _diffusion(form, norm, x, t)) * dw
            k1 = drift(xhat, t)
            k2 = drift(xhat - (tc - tn) * k1, torch.ones(b, device=x.device) * tn)
            x = xhat - 0.5 * (tc - tn) * (k1 + k2)
        if callback is not None:
            callback(i + 1, total)
    if config.last_step != "none":
        size = config.last_step_size
        t = torch.ones(b, device=x.device) * (1 - (1 - size))  # the unshifted time, as the originals
        if config.last_step == "mean":
            x = x - drift(x, t) * size
        elif config.last_step == "euler":
            x = x - velocity(x, t) * size
        else:  # tweedie
            alpha, sigma = (1 - t)[0], t[0]
            x = x / alpha + (sigma**2) / alpha * both(x, t)[1]
        if callback is not None:
            callback(total, total)
    return x


@torch.no_grad()
def sample(
    model: nn.Module,
    noise: torch.Tensor,
    labels: torch.Tensor,
    *,
    sampler: SamplerConfig | None = None,
    guidance: Guidance | None = None,
    guide_model: nn.Module | None = None,
    generator: torch.Generator | None = None,
    callback: ProgressCallback | None = None,
) -> torch.Tensor:
    """Generate latents from noise with a class-conditional model.

    Args:
        model: ``model(x, t, y)`` (e.g. :class:`uae.models.dit.DiTDH`), in eval mode.
        noise: ``(B, C, H, W)`` initial noise (standard normal).
        labels: ``(B,)`` class labels.
        sampler: Integration settings (default: 50-point Euler ODE, no shift).
        guidance: Guidance settings (default: none).
        guide_model: The guidance model for autoguidance.
        generator: Random generator of the SDE's increments.
        callback: Progress, ``callback(step, total)``.

    Returns:
        ``(B, C, H, W)`` latents in the model's (normalised) latent space.

    Raises:
        InputError: Mismatched batch sizes; guidance settings the models cannot serve.
    """
    sampler = sampler if sampler is not None else SamplerConfig()
    guidance = guidance if guidance is not None else Guidance()
    if labels.ndim != 1 or labels.shape[0] != noise.shape[0]:
        raise InputError(
            f"labels must be ({noise.shape[0]},) for noise of shape {tuple(noise.shape)}, got {tuple(labels.shape)}",
            param="labels",
        )
    fn = guided_model(model, labels, guidance, guide_model=guide_model)
    if sampler.mode == "ode":
        velocity, _ = _velocity_and_score(fn, sampler.prediction)
        return sample_ode(velocity, noise, sampler, callback=callback)
    rows = 2 * noise.shape[0] if guidance.active else noise.shape[0]
    return sample_sde(fn, noise, sampler, generator=generator, noise_rows=rows, callback=callback)


__all__ = [
    "DIFFUSION_FORMS",
    "LAST_STEPS",
    "ODE_METHODS",
    "ODE_T_END",
    "SDE_METHODS",
    "SamplerConfig",
    "sample",
    "sample_ode",
    "sample_sde",
]
