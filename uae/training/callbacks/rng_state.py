"""The process's random states in checkpoints, restored just before the first resumed batch.

Stage 3's band noise, DiffAugment and dropout draw from the global generators; saving them with every
checkpoint (top-level entry ``uae_rng``, as checkpoints written before this callback existed have it) and
restoring them right before the next training batch makes a killed and resumed run bit-identical to an
uninterrupted one. Whatever runs in between (sanity checks, dataloader set-up) does not shift them.
Under DDP rank 0 writes the checkpoint, so its states are given to every rank.
"""

from __future__ import annotations

import random
from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch

#: Top-level checkpoint entry holding :func:`rng_state`.
CHECKPOINT_KEY = "uae_rng"


def rng_state() -> dict[str, Any]:
    """The process's random states (torch CPU / CUDA, numpy, ``random``), as tensors and plain values
    (loadable with ``torch.load(weights_only=True)``)."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {
            "kind": str(kind),
            "keys": torch.from_numpy(keys.astype("int64")),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "gauss": float(gauss),
        },
        "python": random.getstate(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    """Set the random states saved by :func:`rng_state` (CUDA only when the device count matches)."""
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state(
        (n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"])
    )
    random.setstate(state["python"])
    cuda = state.get("cuda")
    if cuda is not None and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda)


class RNGState(pl.Callback):
    """Writes :func:`rng_state` into training checkpoints and restores it before the first resumed batch."""

    def __init__(self) -> None:
        self._to_restore: dict[str, Any] | None = None

    def on_save_checkpoint(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        if trainer.training:
            checkpoint[CHECKPOINT_KEY] = rng_state()

    def on_load_checkpoint(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        self._to_restore = checkpoint.get(CHECKPOINT_KEY)

    def on_train_batch_start(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        if self._to_restore is not None:  # first batch after a resume: the interrupted run's RNG
            restore_rng_state(self._to_restore)
            self._to_restore = None


__all__ = ["CHECKPOINT_KEY", "RNGState", "restore_rng_state", "rng_state"]
