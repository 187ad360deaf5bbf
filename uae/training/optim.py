"""Optimisation shared by the stages: AdamW parameter groups, the warm-up + cosine LR schedule per step,
and global gradient-norm clipping (sharded under FSDP).

Speed: AdamW runs its fused kernel (one pass over all parameters) on CPU and CUDA, and gradient
clipping its ``foreach`` kernels; torch's defaults on CPU are per-parameter Python loops (issue 18:
optimizer + ``zero_grad`` took 1.04 s per step against 0.36 s for a plain loop at DINOv2-B + ViT-B).
Gradients are released with ``zero_grad(set_to_none=True)`` right after each step (:class:`StepHooks`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import torch
from lightning.pytorch.strategies import FSDPStrategy, Strategy
from torch import nn


def cosine_schedule(step: int, total: int, warmup: int, min_ratio: float) -> float:
    """LR multiplier: linear warm-up over ``warmup`` steps, then cosine from 1 to ``min_ratio`` at ``total``."""
    if warmup > 0 and step < warmup:
        return (step + 1) / warmup
    if total <= warmup:
        return 1.0
    t = min(1.0, (step - warmup) / max(1, total - warmup))
    return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * t))


def _decays(name: str, p: nn.Parameter) -> bool:
    """Weight decay applies to matrices only: not to biases, norms, position tables or tokens."""
    return p.ndim >= 2 and "pos_embed" not in name and "token" not in name


def param_groups(
    named_params: Iterable[tuple[str, nn.Parameter]], lr: float, weight_decay: float
) -> list[dict[str, Any]]:
    """AdamW groups: ``weight_decay`` on matrices, none on biases / norms / position tables / tokens.

    Args:
        named_params: ``(name, parameter)`` pairs to optimise (in a fixed order: optimizer states in
            checkpoints are matched by position).
        lr: Learning rate of both groups.
        weight_decay: Decay of the first group.

    Returns:
        One or two parameter groups (the second only when there are parameters without decay).
    """
    named = list(named_params)
    decay = [p for n, p in named if _decays(n, p)]
    no_decay = [p for n, p in named if not _decays(n, p)]
    groups = [{"params": decay, "weight_decay": weight_decay, "lr": lr}]
    if no_decay:
        groups.append({"params": no_decay, "weight_decay": 0.0, "lr": lr})
    return groups


#: Devices with fused AdamW and ``foreach`` kernels for every floating dtype uae trains in.
FAST_KERNEL_DEVICES = frozenset({"cpu", "cuda"})


def _fast(params: Iterable[torch.Tensor]) -> bool:
    params = list(params)
    return bool(params) and all(
        p.device.type in FAST_KERNEL_DEVICES and p.is_floating_point() and not p.is_sparse for p in params
    )


def adamw(
    module: nn.Module, lr: float, betas: tuple[float, float], weight_decay: float, fused: bool | None = None
) -> torch.optim.AdamW:
    """AdamW over the trainable parameters of ``module`` (:func:`param_groups`).

    Args:
        module: The module (already on its training device).
        lr: Learning rate.
        betas: AdamW betas.
        weight_decay: Decay of the matrices.
        fused: Fused kernel; ``None``: where available (CPU and CUDA floating-point parameters), else the
            ``foreach`` implementation.
    """
    named = [(n, p) for n, p in module.named_parameters() if p.requires_grad]
    use_fused = _fast(p for _, p in named) if fused is None else fused
    kernel = {"fused": True} if use_fused else {"foreach": True}
    return torch.optim.AdamW(param_groups(named, lr, weight_decay), lr=lr, betas=betas, **kernel)


def warmup_cosine(
    optimizer: torch.optim.Optimizer, total_steps: int, warmup_steps: int, min_ratio: float
) -> torch.optim.lr_scheduler.LambdaLR:
    """Per-step schedule: :func:`cosine_schedule` times each group's learning rate.

    Args:
        optimizer: The optimizer.
        total_steps: Steps of the run (the cosine ends at ``min_ratio`` there).
        warmup_steps: Linear warm-up steps.
        min_ratio: Final learning rate over the peak one (``min_lr / lr``).
    """
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: cosine_schedule(s, total_steps, warmup_steps, min_ratio)
    )


def clip_grad_norm(
    params: list[nn.Parameter], max_norm: float, strategy: Strategy | None = None
) -> torch.Tensor:
    """Clip the global gradient norm of ``params`` to ``max_norm``; returns the norm before clipping.

    Under :class:`~lightning.pytorch.strategies.FSDPStrategy` the norm is computed over the shards by the
    FSDP module (``params`` are then the flat shards and are not used).
    """
    if isinstance(strategy, FSDPStrategy) and strategy.model is not None:
        return strategy.model.clip_grad_norm_(max_norm)  # type: ignore[operator]
    grads = [p.grad for p in params if p.grad is not None]
    return torch.nn.utils.clip_grad_norm_(params, max_norm, foreach=_fast(grads) or None)


__all__ = [
    "FAST_KERNEL_DEVICES",
    "adamw",
    "clip_grad_norm",
    "cosine_schedule",
    "param_groups",
    "warmup_cosine",
]


class StepHooks:
    """Lightning's optimizer hooks shared by the stages (a mixin for a ``LightningModule`` with ``model`` and
    ``grad_clip`` attributes, placed before ``LightningModule`` in the bases).

    * Clipping: the global gradient norm of :meth:`trainable_parameters` to ``grad_clip`` (sharded under
      FSDP), logged as ``train/grad_norm``, unless the Trainer sets its own ``gradient_clip_val``.
    * Gradients are released right after the optimizer step. Lightning's own loop releases them just
      before the next backward, so the next forward ran beside a full set of stale gradients (one copy of
      the trainable weights): the forward of a DINOv2-B + ViT-B stage-2 step took 1.26x the authors' loop
      on CPU (``benchmarks/train_step.py``).
    """

    grad_clip: float

    def trainable_parameters(self) -> list[nn.Parameter]:
        """The parameters the optimizer steps (those of ``self.model`` that require gradients)."""
        return [p for p in self.model.parameters() if p.requires_grad]  # type: ignore[attr-defined]

    def clip(self, params: list[nn.Parameter], max_norm: float) -> torch.Tensor:
        """Clip the global gradient norm of ``params`` (the FSDP module's when sharded); returns the norm."""
        trainer = self._trainer  # type: ignore[attr-defined]
        return clip_grad_norm(params, max_norm, trainer.strategy if trainer is not None else None)

    def configure_gradient_clipping(
        self,
        optimizer: torch.optim.Optimizer,
        gradient_clip_val: float | None = None,
        gradient_clip_algorithm: str | None = None,
    ) -> None:
        """Clip the global gradient norm to ``grad_clip`` (unless the Trainer sets its own clipping)."""
        if gradient_clip_val is not None:
            self.clip_gradients(optimizer, gradient_clip_val, gradient_clip_algorithm)  # type: ignore[attr-defined]
            return
        if self.grad_clip:
            norm = self.clip(self.trainable_parameters(), self.grad_clip)
            self.log("train/grad_norm", norm, on_step=True, prog_bar=False)  # type: ignore[attr-defined]

    def optimizer_step(
        self, epoch: int, batch_idx: int, optimizer: Any, optimizer_closure: Any = None
    ) -> None:
        """Lightning's step (the closure runs the training step and backward), then the gradients released."""
        super().optimizer_step(epoch, batch_idx, optimizer, optimizer_closure)  # type: ignore[misc]
        optimizer.zero_grad(set_to_none=True)
