"""EMA of the model weights: built with the stage module, stepped by a callback after each batch.

The EMA copy (timm ``ModelEmaV3``) is a submodule of the stage module (``module.ema``), so its weights are
in every checkpoint as ``ema.module.*`` (what :func:`uae.training.export.export_checkpoint` exports, and
what checkpoints written before this callback existed hold). :class:`EMAUpdate` steps it after each
training batch: Lightning runs checkpoint callbacks after all others, so a checkpoint written at the end
of a batch holds that batch's EMA (a module hook would run after the checkpoint was written).
"""

from __future__ import annotations

from typing import Any

import lightning.pytorch as pl
from lightning.pytorch.strategies import FSDPStrategy
from timm.utils import ModelEmaV3
from torch import nn

from uae.errors import ConfigError


def model_ema(model: nn.Module, decay: float, warmup: bool = False) -> ModelEmaV3:
    """A frozen EMA copy of ``model`` (parameters and buffers).

    Args:
        model: The module to average.
        decay: EMA decay in ``(0, 1)``.
        warmup: timm's decay warm-up (useful for short runs).
    """
    ema = ModelEmaV3(model, decay=decay, use_warmup=warmup)
    ema.requires_grad_(False)
    return ema


class EMAUpdate(pl.Callback):
    """Steps ``pl_module.ema`` towards ``pl_module.model`` at the end of every training batch.

    Raises (at ``setup``):
        ConfigError: The trainer shards the weights (FSDP): the EMA needs the whole model on every rank.
    """

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if isinstance(trainer.strategy, FSDPStrategy) and getattr(pl_module, "ema", None) is not None:
            raise ConfigError(
                "EMA needs unsharded weights: set ema_decay to null with the FSDP strategy", param="ema_decay"
            )

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        ema = getattr(pl_module, "ema", None)
        if ema is not None:
            ema.update(pl_module.model, step=pl_module.global_step)


__all__ = ["EMAUpdate", "model_ema"]
