"""Checkpoints that survive kills and signals: atomic writes, ``weights_only=True`` reads, a checkpoint on SIGTERM.

:class:`AtomicCheckpoints` gives the trainer :class:`uae.training.checkpoint_io.AtomicCheckpointIO` (every
checkpoint is written to a temp file in its folder and renamed into place; every checkpoint is read with
``weights_only=True``), unless the trainer was given a checkpoint plugin of its own.

:class:`SaveOnSigterm` makes ``SIGTERM`` (a scheduler's pre-emption, ``kill``, ``docker stop``) stop the run
with a checkpoint and a non-zero exit status: Lightning finishes the running batch and raises
``SIGTERMException`` (a ``SystemExit`` whose status is 0, so ``uae fit ... && next`` would go on). The
callback writes ``last.ckpt`` at the end of that batch -- the same point as the checkpoint callbacks'
own saves, so a resume from it is exact -- and gives the exception the status 143 (128 + SIGTERM).
"""

from __future__ import annotations

import logging
import signal
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.utilities.exceptions import SIGTERMException

from uae.training.checkpoint_io import AtomicCheckpointIO

logger = logging.getLogger(__name__)

#: Exit status of a run stopped by SIGTERM (the shell's 128 + signal number).
SIGTERM_EXIT = 128 + int(signal.SIGTERM)


class AtomicCheckpoints(pl.Callback):
    """Installs :class:`~uae.training.checkpoint_io.AtomicCheckpointIO` on the trainer's strategy at ``setup``
    (before a checkpoint is loaded or written), when the strategy uses Lightning's default writer."""

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        strategy = trainer.strategy
        if type(strategy.checkpoint_io) is TorchCheckpointIO:  # not a user's or a strategy's own plugin
            strategy.checkpoint_io = AtomicCheckpointIO()


def last_checkpoint_path(trainer: pl.Trainer) -> Path:
    """Where :class:`SaveOnSigterm` writes: ``last.ckpt`` in the first checkpoint callback's folder, else
    ``<default_root_dir>/checkpoints/last.ckpt``."""
    for cb in trainer.checkpoint_callbacks:
        if isinstance(cb, ModelCheckpoint) and cb.dirpath:
            return Path(cb.dirpath) / f"{cb.CHECKPOINT_NAME_LAST}{cb.FILE_EXTENSION}"
    return Path(trainer.default_root_dir) / "checkpoints" / "last.ckpt"


class SaveOnSigterm(pl.Callback):
    """On SIGTERM: write ``last.ckpt`` after the running training batch, then stop with exit status 143.

    Under DDP the ranks agree on whether a SIGTERM arrived (one boolean all-reduce per step), so they save
    together. A SIGTERM that arrives during validation is saved when Lightning stops (best effort: the
    random state of the next batch is not in that checkpoint).
    """

    def __init__(self) -> None:
        self.saved_step: int | None = None
        self.path: Path | None = None

    def _received(self, trainer: pl.Trainer) -> bool:
        flag = bool(trainer.received_sigterm)
        if trainer.world_size > 1:
            flag = bool(trainer.strategy.reduce_boolean_decision(flag, all=False))
        return flag

    def _save(self, trainer: pl.Trainer) -> None:
        path = last_checkpoint_path(trainer)
        trainer.save_checkpoint(path, False)  # the whole state, not the weights only
        self.saved_step, self.path = trainer.global_step, path
        if trainer.is_global_zero:
            logger.warning(
                "SIGTERM: stopped at step %d with a checkpoint in %s (resume with --ckpt_path %s)",
                trainer.global_step,
                path,
                path,
            )

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        if self.saved_step != trainer.global_step and self._received(trainer):
            self._save(trainer)

    def on_exception(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException
    ) -> None:
        if not isinstance(exception, SIGTERMException):
            return
        if (
            self.saved_step != trainer.global_step
            and trainer.state.fn == "fit"
            and not trainer.sanity_checking
        ):
            try:
                self._save(trainer)
            except Exception:  # the exit status still says the run did not finish
                logger.exception("SIGTERM: could not write a checkpoint")
        exception.code = SIGTERM_EXIT


__all__ = ["SIGTERM_EXIT", "AtomicCheckpoints", "SaveOnSigterm", "last_checkpoint_path"]
