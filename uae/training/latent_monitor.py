"""Watching a generator train: sample grids for fixed labels and noise, and a small FID during training.

Both callbacks are attached by :meth:`uae.training.latent_diffusion.LatentDiffusionModule.configure_callbacks`
and run on rank 0 only (the other ranks wait at their next collective). Samples come from the EMA model with
the 50-point Euler ODE of the releases (``sample_steps``) and the training's time shift, no guidance, and are
decoded by the tokenizer through the run's :class:`~uae.generation.latent_space.LatentSpace`.

* :class:`SampleGrids`: every N steps (and at the end of ``fit``) a grid of the same labels and the same
  initial noise (``uae.generation.seeds.image_seed(0, j)``), so successive grids show the model, not the
  noise, changing: ``<log_dir>/images/samples_step<step>.png``, and to TensorBoard / W&B when used. The
  labels spread over the classes, one row per class.
* :class:`GenerationFID`: every N steps (and at the end) the FID of ``num_samples`` EMA samples (labels of
  the validation latents, cycled) against the validation latents decoded by the tokenizer, i.e. against
  what a perfect generator of this latent space would give, so the tokenizer's own reconstruction error is
  not counted. torch-fidelity's Inception (:mod:`uae.generation.metrics`; the weights file from the torch
  hub cache or ``inception_weights``, never downloaded offline); logged as ``val/fid`` and appended to
  ``<log_dir>/fid.jsonl``. A few hundred samples give a biased, noisy FID: a trend to watch (RAE's issues
  show runs stuck near 400 that were bugs), not a number to report (``uae eval-gen`` on 50,000 is).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch

from uae.generation.latent_space import LatentSpace
from uae.generation.samplers import SamplerConfig, sample
from uae.generation.seeds import image_noise, image_seed
from uae.training.callbacks import eval_mode
from uae.utils import maybe_autocast

logger = logging.getLogger(__name__)


def grid_labels(num_images: int, num_classes: int) -> list[int]:
    """``num_images`` labels spread evenly over the classes, sorted (one grid row per class)."""
    return [(j * num_classes) // max(1, num_images) for j in range(num_images)]


@torch.no_grad()
def sample_images(
    model: torch.nn.Module,
    tokenizer: Any,
    space: LatentSpace | None,
    labels: Sequence[int],
    seeds: Sequence[int],
    *,
    steps: int = 50,
    shift: float = 1.0,
    prediction: str = "velocity",
) -> torch.Tensor:
    """Images ``(B, 3, H, W)`` in ``[0, 1]`` (float32, CPU) of ``model`` for labels and per-image noise seeds.

    The model runs in eval mode on its device (bf16 autocast on CUDA); the tokenizer is moved there too.
    """
    device = next(model.parameters()).device
    shape = tuple(model.config.latent_shape)  # type: ignore[union-attr]
    noise = image_noise([int(s) for s in seeds], shape).to(device)
    y = torch.tensor([int(v) for v in labels], dtype=torch.long, device=device)
    sampler = SamplerConfig(num_steps=steps, shift=max(1.0, float(shift)), prediction=prediction)  # type: ignore[arg-type]
    tokenizer.to(device)
    with eval_mode(model), maybe_autocast(device):
        z = sample(model, noise, y, sampler=sampler).float()
        if space is not None:
            images = space.decode(tokenizer, z)
        else:
            images = tokenizer.decode_latent(z, normalized=True, clamp=True).sample
    return images.float().clamp(0, 1).cpu()


def _log_dir(trainer: pl.Trainer) -> Path:
    return Path(trainer.log_dir or trainer.default_root_dir)


class SampleGrids(pl.Callback):
    """A grid of EMA samples for fixed labels and noise every ``every_n_steps`` steps (rank 0).

    Args:
        every_n_steps: Interval in optimizer steps (0: none); step 0 shows the untrained model.
        num_images: Samples in the grid.
        steps: Euler grid points.
        seed: Run seed of the noise (:func:`uae.generation.seeds.image_seed`).
    """

    def __init__(
        self, every_n_steps: int = 1000, num_images: int = 8, steps: int = 50, seed: int = 0
    ) -> None:
        self.every_n_steps, self.num_images, self.steps, self.seed = (
            int(every_n_steps),
            int(num_images),
            steps,
            seed,
        )
        self.image_dir: Path | None = None
        self.written: list[Path] = []
        self._last_step = -1

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        self.image_dir = (
            _log_dir(trainer) / "images"
        )  # trainer.log_dir is a collective: every rank resolves it

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: Any, batch: Any, batch_idx: int) -> None:
        n = self.every_n_steps
        if n and trainer.global_step % n == 0 and trainer.global_step != self._last_step:
            self.write(trainer, pl_module)

    def on_train_end(self, trainer: pl.Trainer, pl_module: Any) -> None:
        if self.every_n_steps and trainer.global_step != self._last_step:
            self.write(trainer, pl_module)

    def write(self, trainer: pl.Trainer, pl_module: Any) -> Path | None:
        """Sample, draw and write the grid (rank 0 only); returns the PNG's path."""
        self._last_step = trainer.global_step
        tokenizer = pl_module.tokenizer
        if not trainer.is_global_zero or tokenizer is None or self.num_images < 1:
            return None
        from torchvision.transforms.functional import pil_to_tensor

        from uae.generation.images import labelled_grid

        model = pl_module.export_model()
        num_classes = int(model.config.num_classes)
        labels = grid_labels(self.num_images, num_classes)
        seeds = [image_seed(self.seed, j) for j in range(self.num_images)]
        images = sample_images(
            model,
            tokenizer,
            pl_module.latent_space,
            labels,
            seeds,
            steps=self.steps,
            shift=pl_module.shift,
            prediction=pl_module.prediction,
        )
        grid = labelled_grid(images, labels, num_classes)
        step = trainer.global_step
        tensor = pil_to_tensor(grid)
        for lg in trainer.loggers:
            exp = getattr(lg, "experiment", None)
            if hasattr(lg, "log_image"):  # W&B
                lg.log_image(key="samples", images=[grid], step=step)
            elif exp is not None and hasattr(exp, "add_image"):  # TensorBoard
                exp.add_image("samples", tensor, step)
        root = self.image_dir or Path(trainer.default_root_dir) / "images"
        root.mkdir(parents=True, exist_ok=True)
        out = root / f"samples_step{step:07d}.png"
        grid.save(out)
        self.written.append(out)
        return out


def _uint8(images: torch.Tensor) -> torch.Tensor:
    return (images.clamp(0, 1) * 255.0).round().to(torch.uint8)


class GenerationFID(pl.Callback):
    """FID of EMA samples against the decoded validation latents every ``every_n_steps`` steps (rank 0).

    Args:
        every_n_steps: Interval in optimizer steps (0: none; never at step 0).
        num_samples: Generated samples, and at most that many validation latents as the reference.
        steps: Euler grid points of the samples.
        inception_weights: The Inception weights file (default: the torch hub cache; downloaded when online).
        batch_size: Samples per sampling / Inception batch.
        seed: Run seed of the samples' noise.
    """

    def __init__(
        self,
        every_n_steps: int,
        num_samples: int = 1000,
        steps: int = 50,
        inception_weights: str | None = None,
        batch_size: int = 50,
        seed: int = 0,
    ) -> None:
        self.every_n_steps, self.num_samples, self.steps = int(every_n_steps), int(num_samples), int(steps)
        self.inception_weights, self.batch_size, self.seed = inception_weights, int(batch_size), seed
        self.history: list[dict[str, float]] = []
        self.log_file: Path | None = None
        self._net: Any = None
        self._reference: Any = None
        self._labels: list[int] = []
        self._disabled = False
        self._last_step = -1

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        self.log_file = _log_dir(trainer) / "fid.jsonl"

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: Any, batch: Any, batch_idx: int) -> None:
        n, step = self.every_n_steps, trainer.global_step
        if n and step and step % n == 0 and step != self._last_step:
            self.evaluate(trainer, pl_module)

    def on_train_end(self, trainer: pl.Trainer, pl_module: Any) -> None:
        if self.every_n_steps and trainer.global_step != self._last_step:
            self.evaluate(trainer, pl_module)

    def _disable(self, why: str) -> None:
        logger.warning("No FID during training: %s", why)
        self._disabled = True

    def _prepare(self, trainer: pl.Trainer, pl_module: Any, device: torch.device) -> bool:
        """The Inception network and the reference features (once); ``False`` when the FID cannot run."""
        if self._reference is not None:
            return True
        from uae.evaluation.metrics import MetricUnavailable, resolve_inception_weights
        from uae.generation.metrics import GenerationInception, extract

        dm = getattr(trainer, "datamodule", None)
        val = getattr(dm, "val_set", None)
        if val is None or len(val) == 0:
            self._disable("no validation latents (set data.val_root or data.val_fraction)")
            return False
        try:
            self._net = (
                GenerationInception(resolve_inception_weights(self.inception_weights, True)).to(device).eval()
            )
        except MetricUnavailable as e:
            self._disable(str(e))
            return False
        n = min(len(val), self.num_samples)
        items = [val[i] for i in range(n)]
        self._labels = [int(it["label"]) for it in items]
        tokenizer, space = pl_module.tokenizer, pl_module.latent_space
        tokenizer.to(device)

        def reference() -> Iterator[torch.Tensor]:
            for start in range(0, n, self.batch_size):
                x = torch.stack([it["latent"] for it in items[start : start + self.batch_size]]).to(device)
                with torch.no_grad(), maybe_autocast(device):
                    z = space.normalize(x) if space is not None else x
                    images = (
                        space.decode(tokenizer, z) if space is not None else tokenizer.decode_latent(z).sample
                    )
                yield _uint8(images.float())

        self._reference = extract(
            self._net, reference(), device=device, progress=False, total=n, desc="reference"
        )
        return True

    def evaluate(self, trainer: pl.Trainer, pl_module: Any) -> float | None:
        """Compute, log and record the FID now (rank 0); returns it (``None`` elsewhere or when unavailable)."""
        self._last_step = trainer.global_step
        if not trainer.is_global_zero or self._disabled or pl_module.tokenizer is None:
            return None
        from uae.generation.metrics import compute_metrics, extract

        device = pl_module.device
        if not self._prepare(trainer, pl_module, device):
            return None
        model = pl_module.export_model()
        n = self.num_samples
        labels = [self._labels[j % len(self._labels)] for j in range(n)]

        def generated() -> Iterator[torch.Tensor]:
            for start in range(0, n, self.batch_size):
                idx = range(start, min(n, start + self.batch_size))
                images = sample_images(
                    model,
                    pl_module.tokenizer,
                    pl_module.latent_space,
                    [labels[j] for j in idx],
                    [image_seed(self.seed, j) for j in idx],
                    steps=self.steps,
                    shift=pl_module.shift,
                    prediction=pl_module.prediction,
                )
                yield _uint8(images)

        fake = extract(self._net, generated(), device=device, progress=False, total=n, desc="samples")
        values, unavailable = compute_metrics(fake, real=self._reference, real_stats=None, metrics=("fid",))
        if "fid" not in values:
            self._disable(unavailable.get("fid", "unavailable"))
            return None
        fid, step = float(values["fid"]), trainer.global_step
        for lg in trainer.loggers:
            lg.log_metrics({"val/fid": fid}, step=step)
        record = {"step": step, "fid": fid, "num_samples": n, "num_reference": self._reference.count}
        self.history.append(record)
        if self.log_file is not None:
            self.log_file.parent.mkdir(parents=True, exist_ok=True)
            with self.log_file.open("a") as f:
                f.write(json.dumps(record) + "\n")
        logger.info(
            "Step %d: FID %.2f (%d samples against %d decoded validation latents)",
            step,
            fid,
            n,
            self._reference.count,
        )
        return fid


__all__ = ["GenerationFID", "SampleGrids", "grid_labels", "sample_images"]
