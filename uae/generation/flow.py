"""Flow matching on tokenizer latents: the linear path, the time shift and the training loss.

The convention of the released generators (``src/stage2/transport/`` of bytetriper/RAE and
WeichenFan/UAE, a flipped SiT transport): ``t = 1`` is pure noise, ``t = 0`` is data, and

    x_t = (1 - t) * x_data + t * noise,        u_t = dx_t/dt = noise - x_data.

The model predicts the velocity ``u_t`` (``prediction="velocity"``, every release) or the clean latent
(``prediction="x"``, the authors' ``prediction: x`` option, turned into a velocity by
:func:`velocity_from_x_start`). Samplers integrate from ``t = 1`` down to (almost) ``0``.

The time shift (``time_dist_shift``) moves the times towards the noise end for latents with many
dimensions: ``t -> s t / (1 + (s - 1) t)`` with ``s = sqrt(shift_dim / shift_base)``; the releases use
``shift_dim = C * H * W = 768 * 16 * 16`` (``32 * 32`` at 512 px) and ``shift_base = 4096``. The same
shift is applied to the training times and to the sampling grid.

Every function does the arithmetic of the originals in the same order, so a run on the CPU gives the same
float32 results for the same inputs and random draws.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from torch import nn
from torch.distributions import Normal

from uae.errors import InputError

Prediction = Literal["velocity", "x"]
PREDICTIONS = ("velocity", "x")
#: The originals' epsilon for models that do not predict the velocity (``sample_eps = train_eps = 1e-3``).
X_PREDICTION_EPS = 1e-3
#: Default ``time_dist_shift_base`` of the originals' configs.
SHIFT_BASE = 4096


def time_shift(shift_dim: int, shift_base: int = SHIFT_BASE) -> float:
    """``sqrt(shift_dim / shift_base)``; the originals require it to be ``>= 1``.

    Args:
        shift_dim: Latent dimensions (``C * H * W``; the releases' configs: 196608 at 256 px).
        shift_base: Reference dimensions (4096).

    Raises:
        InputError: Non-positive values or a shift below 1.
    """
    if shift_dim <= 0 or shift_base <= 0:
        raise InputError(f"shift_dim and shift_base must be positive, got {shift_dim} and {shift_base}")
    shift = math.sqrt(shift_dim / shift_base)
    if shift < 1.0:
        raise InputError(
            f"time shift sqrt({shift_dim} / {shift_base}) = {shift:.4f} is below 1 (the originals refuse it)",
            param="shift_dim",
        )
    return shift


def shift_times(t: torch.Tensor, shift: float) -> torch.Tensor:
    """``shift * t / (1 + (shift - 1) * t)`` (elementwise; ``shift = 1`` is the identity)."""
    return shift * t / (1 + (shift - 1) * t)


def _expand(t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    return t.view(t.shape[0], *([1] * (x.ndim - 1)))


def interpolate(
    x_data: torch.Tensor, noise: torch.Tensor, t: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """The linear path: ``x_t = (1 - t) x_data + t noise`` and its velocity ``noise - x_data``.

    Args:
        x_data: ``(B, ...)`` clean latents.
        noise: ``(B, ...)`` standard normal noise.
        t: ``(B,)`` times.

    Returns:
        ``(x_t, u_t)``, both ``(B, ...)``.
    """
    te = _expand(t, x_data)
    return (1 - te) * x_data + te * noise, -1 * x_data + 1 * noise


def velocity_from_x_start(
    x_start: torch.Tensor, x: torch.Tensor, t: torch.Tensor, eps: float = 1e-8
) -> torch.Tensor:
    """Velocity of a clean-latent prediction: ``noise - x_start`` with ``noise = (x - (1 - t) x_start) / t``."""
    te = _expand(t, x)
    noise = (x - (1 - te) * x_start) / te.abs().clamp_min(eps)
    return -1 * x_start + 1 * noise


def score_from_velocity(velocity: torch.Tensor, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """The score ``grad log p_t(x)`` implied by a velocity on the linear path."""
    te = _expand(t, x)
    ratio = (1 - te) / -1  # alpha_t / d(alpha_t)/dt
    var = te**2 - ratio * 1 * te
    return (ratio * velocity - x) / var


def score_from_x_start(
    x_start: torch.Tensor, x: torch.Tensor, t: torch.Tensor, eps: float = 1e-8
) -> torch.Tensor:
    """The score implied by a clean-latent prediction: ``-noise / t``."""
    te = _expand(t, x)
    sigma = te.abs().clamp_min(eps)
    noise = (x - (1 - te) * x_start) / sigma
    return -noise / sigma


# ---------------------------------------------------------------------------------------------- training
def training_interval(prediction: Prediction = "velocity") -> tuple[float, float]:
    """The range training times are drawn from (before the shift): ``[0, 0.999]`` for the velocity,
    ``[1e-3, 1 - 1e-3]`` for a clean-latent model (the originals' ``check_interval``)."""
    if prediction == "velocity":
        return 0, 1 - 1 / 1000
    return X_PREDICTION_EPS, 1 - X_PREDICTION_EPS


def _parse_time_dist(time_dist: str) -> tuple[str, float, float]:
    parts = time_dist.split("_")
    if parts[0] == "uniform" and len(parts) == 1:
        return "uniform", 0.0, 1.0
    if parts[0] == "logit-normal" and len(parts) == 3:
        try:
            mu, sigma = float(parts[1]), float(parts[2])
        except ValueError:
            mu, sigma = math.nan, math.nan
        if math.isfinite(mu) and sigma > 0:
            return "logit-normal", mu, sigma
    raise InputError(
        f"time_dist must be 'uniform' or 'logit-normal_<mean>_<std>' (std > 0), got {time_dist!r}",
        param="time_dist",
    )


def sample_training_times(
    batch: int,
    *,
    time_dist: str = "uniform",
    shift: float = 1.0,
    prediction: Prediction = "velocity",
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Draw training times ``(batch,)`` as the originals do, then shift them.

    Args:
        batch: Number of times.
        time_dist: ``"uniform"`` or ``"logit-normal_<mean>_<std>"`` (the releases train with
            ``"logit-normal_0_1"``), truncated to :func:`training_interval`.
        shift: Time shift (:func:`time_shift`).
        prediction: ``"velocity"`` or ``"x"`` (changes the interval).
        generator: Random generator (on the CPU, like the originals' draws); ``None`` uses torch's
            global one.
        device: Device of the result.

    Returns:
        ``(batch,)`` float32 times.
    """
    kind, mu, sigma = _parse_time_dist(time_dist)
    low, high = training_interval(prediction)
    if kind == "uniform":
        t = torch.rand((batch,), generator=generator) * (high - low) + low
    else:
        mu_t, sigma_t = torch.as_tensor(mu), torch.as_tensor(sigma)
        low_t, high_t = torch.as_tensor(low), torch.as_tensor(high)
        base = Normal(torch.zeros_like(mu_t), torch.ones_like(sigma_t))
        cdf_low = base.cdf((torch.logit(low_t) - mu_t) / sigma_t)
        cdf_high = base.cdf((torch.logit(high_t) - mu_t) / sigma_t)
        u = torch.rand((batch,), generator=generator, dtype=mu_t.dtype)
        u = cdf_low + (cdf_high - cdf_low) * u.clamp_(0, 1)
        t = torch.sigmoid(mu_t + sigma_t * base.icdf(u)).clamp(low_t, high_t)
    if device is not None:
        t = t.to(device)
    return shift_times(t, shift)


def drop_labels(
    labels: torch.Tensor, *, prob: float, null_class: int, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Classifier-free-guidance label dropout: each label becomes ``null_class`` with probability ``prob``.

    One uniform draw per label (``rand(B) < prob``), as the originals' ``LabelEmbedder`` does in training
    mode after the noise and time draws.
    """
    drop = torch.rand(labels.shape[0], generator=generator, device=labels.device) < prob
    return torch.where(drop, null_class, labels)


def flow_matching_loss(
    model: nn.Module,
    x_data: torch.Tensor,
    labels: torch.Tensor,
    *,
    t: torch.Tensor,
    noise: torch.Tensor,
    prediction: Prediction = "velocity",
) -> torch.Tensor:
    """Per-sample flow-matching loss (the originals' ``training_losses`` with ``loss_weight: null``).

    ``mean((model(x_t, t, y) - (noise - x_data))^2)`` for a velocity model,
    ``mean((model(x_t, t, y) - x_data)^2)`` for a clean-latent model, over all but the batch dimension.

    The originals draw, in this order: ``noise`` (``randn_like``), the times
    (:func:`sample_training_times`), then the label dropout inside the model (:func:`drop_labels`);
    drawing them in the same order from one CPU generator reproduces their training step.

    Args:
        model: ``model(x_t, t, y) -> (B, ...)``.
        x_data: ``(B, ...)`` clean (normalised) latents.
        labels: ``(B,)`` labels (after dropout).
        t: ``(B,)`` shifted times.
        noise: ``(B, ...)`` standard normal noise.
        prediction: ``"velocity"`` or ``"x"``.

    Returns:
        ``(B,)`` losses.
    """
    if prediction not in PREDICTIONS:
        raise InputError(f"prediction must be one of {PREDICTIONS}, got {prediction!r}", param="prediction")
    x_t, u_t = interpolate(x_data, noise, t.to(x_data))
    out = model(x_t, t.to(x_data), labels)
    target = u_t if prediction == "velocity" else x_data
    return torch.mean((out - target) ** 2, dim=list(range(1, out.ndim)))


__all__ = [
    "PREDICTIONS",
    "SHIFT_BASE",
    "X_PREDICTION_EPS",
    "drop_labels",
    "flow_matching_loss",
    "interpolate",
    "sample_training_times",
    "score_from_velocity",
    "score_from_x_start",
    "shift_times",
    "time_shift",
    "training_interval",
    "velocity_from_x_start",
]
