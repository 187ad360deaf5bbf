"""A progress bar in optimizer steps over the whole run, with its ETA (the default bar of ``uae fit``).

Lightning's bars count the batches of the current epoch: a step-budgeted run (``max_steps``) on a small
folder shows ``Epoch 14/-2`` and a bar that restarts every few steps, with no idea of the end. This one
counts ``global_step`` from 0 (or the resumed step) to ``max_steps`` and shows tqdm's elapsed / remaining
time and rate, the epoch and the progress-bar metrics (``train/loss_step``, ``val/psnr``...).
"""

from __future__ import annotations

from typing import Any

import lightning.pytorch as pl
from lightning.pytorch.callbacks import TQDMProgressBar
from lightning.pytorch.callbacks.progress.tqdm_progress import Tqdm, convert_inf


def total_steps(trainer: pl.Trainer) -> int | None:
    """Optimizer steps of the run: ``max_steps``, else Lightning's estimate (``None`` when unknown)."""
    if trainer.max_steps is not None and trainer.max_steps > 0:
        return int(trainer.max_steps)
    try:
        estimate = convert_inf(trainer.estimated_stepping_batches)
    except Exception:  # no estimate before the data is set up, or an unsized loader
        return None
    return int(estimate) if estimate is not None else None


class StepProgressBar(TQDMProgressBar):
    """tqdm bar over the run's optimizer steps (``global_step`` / ``max_steps``), not the epoch's batches.

    Validation keeps Lightning's own (temporary) bar below it.

    Args:
        refresh_rate: Redraw every N steps.
    """

    def __init__(self, refresh_rate: int = 1) -> None:
        super().__init__(refresh_rate=refresh_rate, leave=True)

    def init_train_tqdm(self) -> Tqdm:
        bar = super().init_train_tqdm()
        bar.unit = "step"
        return bar

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.train_progress_bar = self.init_train_tqdm()
        bar = self.train_progress_bar
        bar.reset(total=total_steps(trainer))
        bar.initial = bar.n = trainer.global_step  # a resumed run starts where it stopped
        bar.set_description("Training")
        bar.refresh()

    def on_train_epoch_start(self, trainer: pl.Trainer, *_: Any) -> None:
        pass  # one bar for the whole run

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        bar = self.train_progress_bar
        n = trainer.global_step
        if bar is not None and self._should_update(n, bar.total):
            bar.n = n
            bar.set_postfix(self.get_metrics(trainer, pl_module), refresh=False)
            bar.refresh()

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not self.train_progress_bar.disable:
            self.train_progress_bar.set_postfix(self.get_metrics(trainer, pl_module))

    def get_metrics(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> dict[str, Any]:
        """The progress-bar metrics with the epoch; without the logger's version number."""
        items = dict(super().get_metrics(trainer, pl_module))
        items.pop("v_num", None)
        return {"epoch": trainer.current_epoch, **items}


__all__ = ["StepProgressBar", "total_steps"]
