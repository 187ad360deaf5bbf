"""The originals' optimisation details of the latent-diffusion stage (``src/train.py``,
``src/utils/optim_utils.py``, ``src/utils/train_utils.py`` of bytetriper/RAE and WeichenFan/UAE).

* :func:`flow_lr_lambda`: their learning-rate schedule (constant "warm-up", then linear or cosine decay);
* :class:`ParameterEMA`: their EMA (``update_ema``), from the first step, parameters only;
* :func:`step_seed`: the seed of one micro-batch's random draws (noise, times, label dropout), from the
  run seed, the step, the micro-batch and the rank: no random state is carried between steps, so a
  resumed run draws what the uninterrupted one drew.
"""

from __future__ import annotations

import copy
import math

import numpy as np
import torch
from torch import nn

SCHEDULES = ("linear", "cosine", "constant")


def flow_lr_lambda(
    step: int,
    *,
    warmup_steps: int,
    decay_end_steps: int,
    final_ratio: float,
    schedule: str = "linear",
    warmup_from_zero: bool = False,
) -> float:
    """The originals' learning-rate multiplier (``build_scheduler`` of ``src/utils/optim_utils.py``).

    Up to ``warmup_steps``: 1 (their default, ``warmup_from_zero: false``) or ``(step + 1) / warmup_steps``;
    then a linear (or cosine) decay to ``final_ratio`` at ``decay_end_steps``, and ``final_ratio`` after;
    ``"constant"``: 1 after the warm-up.
    """
    if step < warmup_steps:
        return (step + 1) / warmup_steps if warmup_from_zero else 1.0
    if schedule == "constant":
        return 1.0
    if step >= decay_end_steps:
        return final_ratio
    progress = (step - warmup_steps) / max(decay_end_steps - warmup_steps, 1)
    if schedule == "cosine":
        return final_ratio + (1.0 - final_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))
    return 1.0 - (1.0 - final_ratio) * progress


class ParameterEMA(nn.Module):
    """The originals' EMA (``update_ema``): ``ema.mul_(decay).add_(param, alpha=1 - decay)`` for every
    parameter, from the first step (no warm-up, unlike timm's ``ModelEmaV3``); buffers are copied at start.

    Args:
        model: The module to average (deep-copied, frozen).
        decay: The decay (0.9995 in the releases' training configs).
    """

    def __init__(self, model: nn.Module, decay: float) -> None:
        super().__init__()
        self.module = copy.deepcopy(model).eval().requires_grad_(False)
        self.decay = float(decay)

    @torch.no_grad()
    def update(self, model: nn.Module, step: int | None = None) -> None:
        """One EMA step towards ``model`` (``step`` is accepted for :class:`EMAUpdate` and not used)."""
        mine = dict(self.module.named_parameters())
        for name, p in model.named_parameters():
            mine[name].mul_(self.decay).add_(p.data, alpha=1 - self.decay)


def step_seed(seed: int, step: int, micro: int = 0, rank: int = 0, stream: int = 0) -> int:
    """The 63-bit seed of the draws of one micro-batch of one optimizer step on one rank.

    ``stream`` separates independent uses (0: training; 1: the validation loss, ``step`` = its batch).
    """
    entropy = [int(seed), int(step), int(micro), int(rank), int(stream)]
    state = np.random.SeedSequence(entropy).generate_state(2, np.uint32)
    return ((int(state[0]) << 32) | int(state[1])) & ((1 << 63) - 1)


__all__ = ["SCHEDULES", "ParameterEMA", "flow_lr_lambda", "step_seed"]
