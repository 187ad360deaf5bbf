"""Callbacks of the kill-and-resume tests (test_resume.py, test_ldm_resume.py): a kill between two steps and a
record of the data order."""

from __future__ import annotations

import lightning.pytorch as pl


class Killed(Exception):
    """Stands for a SIGKILL between two training steps."""


class Kill(pl.Callback):
    """Raises :class:`Killed` when the step ``at_step`` is about to start."""

    def __init__(self, at_step: int) -> None:
        self.at_step = at_step

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.global_step == self.at_step:
            raise Killed


class Indices(pl.Callback):
    """The dataset indices of every training batch, in order."""

    def __init__(self) -> None:
        self.seen: list[list[int]] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.seen.append(batch["index"].tolist())
