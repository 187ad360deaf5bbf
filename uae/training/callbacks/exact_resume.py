"""Exact resumes across epoch ends: the repair of Lightning's epoch counter after a resume at an epoch's end.

A checkpoint written after the last batch of an epoch (``on_train_batch_end``) resumes into the next
epoch: Lightning (2.6) closes the finished epoch when it restores the loop, but then starts the next one
as if it were still restarting inside it and never counts it as started. The run goes on correctly, but
every checkpoint it writes in that epoch says one epoch less than the data it has seen (ready = started =
processed instead of one more), so the *second* resume replays the previous epoch's data order: a run
killed at two epoch ends and resumed each time diverged from the uninterrupted run (every tensor
differed), while one kill, or kills inside an epoch, were exact.

:class:`EpochBoundaryResume` fixes both sides: when a resume closes a finished epoch it lets Lightning
open the next one normally (``on_train_start``), and it repairs checkpoints written with the wrong count
(``on_load_checkpoint``: an epoch with a batch in progress but not counted as started).
"""

from __future__ import annotations

import logging
from typing import Any

import lightning.pytorch as pl

logger = logging.getLogger(__name__)


def repair_epoch_progress(checkpoint: dict[str, Any]) -> bool:
    """Count the running epoch as started in a checkpoint whose loop state lost it (in place).

    The fit loop's epoch progress says no epoch is open (``ready == processed``) while its batch progress
    says a batch of an epoch was running or the epoch had batches left: only the state written after a
    resume at an epoch's end looks like that.

    Returns:
        Whether the checkpoint was changed.
    """
    fit = checkpoint.get("loops", {}).get("fit_loop", {})
    epochs, batches = fit.get("epoch_progress"), fit.get("epoch_loop.batch_progress")
    if not epochs or not batches:
        return False
    total, current = epochs["total"], epochs["current"]
    b = batches["current"]
    in_batch = b["completed"] < b["ready"]
    between_batches = b["ready"] > 0 and not batches.get("is_last_batch", False)
    if total["ready"] != total["processed"] or not (in_batch or between_batches):
        return False
    for progress in (total, current):
        progress["ready"] += 1
        progress["started"] += 1
    return True


class EpochBoundaryResume(pl.Callback):
    """Keeps Lightning's epoch counter right across resumes at an epoch's end (see the module docstring)."""

    def on_load_checkpoint(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        if repair_epoch_progress(checkpoint):
            logger.info("Repaired the epoch counter of a checkpoint written after a resume at an epoch's end")

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        loop = trainer.fit_loop
        epochs = loop.epoch_progress.current
        # Restored "mid-epoch" at the last batch: the restore closed that epoch (ready == processed), so the
        # next one must be opened (counted, its on_train_epoch_start hooks called) like any new epoch.
        # (Lightning versions without restart stages do not have the problem.)
        if getattr(loop, "restarted_mid_epoch", False) and epochs.ready == epochs.processed:
            loop.reset_restart_stage()


__all__ = ["EpochBoundaryResume", "repair_epoch_progress"]
