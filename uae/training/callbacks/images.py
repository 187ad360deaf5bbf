"""Image grids during training: inputs' targets, reconstructions and progressive band decodes.

:func:`image_grid` draws one grid (the model's progressive decodes come from
:func:`uae.visualize.progressive_decodes`, the one progressive decode of the package); :class:`ImageGrids`
writes it as PNG under ``<log_dir>/images`` (and to TensorBoard / W&B when that logger is used) every N
training steps and for the first batch of every validation.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from torch import nn

from uae.models.uae import UAE
from uae.visualize import progressive_decodes


@contextlib.contextmanager
def eval_mode(model: nn.Module) -> Iterator[None]:
    """Eval mode and no gradients inside; afterwards every submodule's own mode is back (frozen parts of a
    training model stay in eval mode)."""
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        with torch.no_grad():
            yield
    finally:
        for m, was in modes:
            m.training = was


@torch.no_grad()
def image_grid(model: UAE, x: torch.Tensor, target: torch.Tensor, num_images: int = 4) -> torch.Tensor:
    """Grid ``(3, H, W)``: rows are targets, reconstructions, then decodes from bands ``0..k``.

    Args:
        model: The model to draw (in any mode; drawn in eval mode).
        x: ``(B, 3, h, w)`` encoder inputs in ``[0, 1]``.
        target: ``(B, 3, H, W)`` targets at the output resolution.
        num_images: Columns of the grid (the first images of the batch).
    """
    from torchvision.utils import make_grid

    x, target = x[:num_images], target[:num_images]
    with eval_mode(model):
        decodes, _ = progressive_decodes(model, x)  # decodes[:, -1] is the reconstruction
        rows = [target, decodes[:, -1], *decodes[:, :-1].unbind(1)]
    return make_grid(torch.cat(rows).float().cpu().clamp(0, 1), nrow=x.shape[0], padding=1)


class ImageGrids(pl.Callback):
    """Writes :func:`image_grid` of the module's ``export_model()`` (the EMA when there is one).

    Training grids show the batch about to be trained on, with the weights before its step, every
    ``every_n_steps`` optimizer steps (file ``train_step<global step>.png``); validation grids show the first
    validation batch (``val_step<global step>.png``). Only rank 0 draws.

    Args:
        every_n_steps: Training grid interval (0: none; validation grids are still written).
        num_images: Images per grid.
    """

    def __init__(self, every_n_steps: int = 1000, num_images: int = 4) -> None:
        self.every_n_steps = int(every_n_steps)
        self.num_images = int(num_images)
        self.image_dir: Path | None = None

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        # trainer.log_dir is a collective under DDP: resolved here, on every rank, never in rank-0-only code.
        self.image_dir = Path(trainer.log_dir or trainer.default_root_dir) / "images"

    def on_train_batch_start(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        n = self.every_n_steps
        if n and trainer.global_step % n == 0:
            self.write(trainer, pl_module, batch, "train")

    def on_validation_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        if batch_idx == 0:
            self.write(trainer, pl_module, batch, "val")

    def write(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, tag: str) -> Path | None:
        """Draw the grid of ``batch`` and write it (rank 0 only); returns the PNG's path."""
        if not trainer.is_global_zero:
            return None
        from torchvision.utils import save_image

        x, target = pl_module.batch_inputs(batch)  # type: ignore[operator]
        grid = image_grid(pl_module.export_model(), x, target, self.num_images)  # type: ignore[operator]
        step = trainer.global_step
        name = f"{tag}/reconstructions"
        for lg in trainer.loggers:
            exp = getattr(lg, "experiment", None)
            if hasattr(lg, "log_image"):  # W&B
                lg.log_image(key=name, images=[grid], step=step)
            elif exp is not None and hasattr(exp, "add_image"):  # TensorBoard
                exp.add_image(name, grid, step)
        root = self.image_dir or Path(trainer.default_root_dir) / "images"
        out = root / f"{tag}_step{step:07d}.png"
        out.parent.mkdir(parents=True, exist_ok=True)
        save_image(grid, out)
        return out


__all__ = ["ImageGrids", "eval_mode", "image_grid"]
