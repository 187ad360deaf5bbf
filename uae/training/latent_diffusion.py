"""The latent-diffusion stage: a class-conditional DiT-DH trained with flow matching on a tokenizer's latents.

One training step is the one of the originals' ``src/train.py`` (bytetriper/RAE, WeichenFan/UAE), checked
against a recorded step of it (``tests/fixtures/generation/rae/train_step.safetensors``, 1e-5):

1. ``x1``: the batch's latents, normalised (:class:`~uae.generation.latent_space.LatentSpace`);
2. draws, in the originals' order: ``noise ~ N(0, I)``, the times (``time_dist``, default their
   ``logit-normal_0_1``, truncated to ``[0, 0.999]``, then the time shift ``sqrt(shift_dim / 4096)``),
   then the label dropout of classifier-free guidance (``rand(B) < 0.1`` -> the null class);
3. the loss ``mean((model(x_t, t, y) - (noise - x1))^2)`` on the linear path ``x_t = (1 - t) x1 + t noise``
   (:func:`uae.generation.flow.flow_matching_loss`; ``prediction="x"`` regresses ``x1`` instead);
4. backward, global gradient-norm clipping (1.0), AdamW (betas 0.9 / 0.95, eps 1e-8, fused), the
   originals' schedule (constant "warm-up", then linear or cosine decay to ``final_lr``), and the EMA
   ``ema = decay * ema + (1 - decay) * param`` of every parameter (decay 0.9995 from the first step).

As in ``train.py`` every parameter trains (``train_all_parameters``), the sin-cos position table and the
Fourier frequencies of the time embedding included.

Random draws come from generators seeded by ``(seed, global step, micro-batch, rank)``, not from a state
carried between steps, so a killed run resumes bit-identically at any step and every DDP rank draws its
own noise. The noise is drawn on the batch's device (a CPU generator on the CPU, the originals' stream;
a CUDA generator on GPUs), the times and label dropout on the CPU.

Precision, DDP/FSDP, checkpoints and exact resumes are Lightning's, as for the tokenizer stages
(:mod:`uae.training.base`): bf16 autocast on CUDA where supported (``uae fit`` chooses it from the hardware),
the EMA stepped by :class:`~uae.training.callbacks.EMAUpdate`, the random state by
:class:`~uae.training.callbacks.RNGState`, the data order by :class:`~uae.data.resumable.ResumableDataLoader`.
Monitoring (sample grids, a small FID) is in :mod:`uae.training.latent_monitor`.
"""

from __future__ import annotations

import copy
import logging
import math
import os
from pathlib import Path
from typing import Any, Literal

import lightning.pytorch as pl
import torch
from lightning.pytorch.strategies import FSDPStrategy
from torch import nn

from uae.errors import ConfigError
from uae.generation.flow import (
    SHIFT_BASE,
    drop_labels,
    flow_matching_loss,
    sample_training_times,
    time_shift,
)
from uae.generation.latent_space import LatentSpace
from uae.generation.settings import default_shift
from uae.models.dit import DiTDH
from uae.training.callbacks import EMAUpdate, RNGState
from uae.training.flow_optim import SCHEDULES, ParameterEMA, flow_lr_lambda, step_seed
from uae.training.generator_io import CONFIG_KEY, SPACE_KEY, build_generator, save_generator
from uae.training.optim import StepHooks, param_groups
from uae.training.quiet import quiet_lightning

logger = logging.getLogger(__name__)


class LatentDiffusionModule(StepHooks, pl.LightningModule):
    """Flow-matching training of a DiT-DH generator on tokenizer latents (see the module docs).

    Data: :class:`uae.training.latent_data.LatentDataModule` (it gives the latent space, the statistics and
    the tokenizer); batches are ``{"latent": (B, C, h, w), "label": (B,)}``.

    Args:
        model_name: A registered generator architecture (``dit_dh_xl``, ``dit_dh_s``, ``dit_dh_test``...).
        model_overrides: :class:`~uae.models.dit_config.DiTDHConfig` fields to change (``in_channels``,
            ``input_size``, ``num_classes``, widths...).
        pretrained: Start from a generator instead: a ``save_pretrained`` folder, ``arch.tag`` or Hub repo.
        train_all_parameters: Train every parameter, the position table and Fourier frequencies included
            (the originals' ``requires_grad_(True)``); ``False`` keeps those two fixed.
        prediction: ``"velocity"`` (every release) or ``"x"`` (the clean latent).
        time_dist: ``"logit-normal_<mean>_<std>"`` (the releases: ``logit-normal_0_1``) or ``"uniform"``.
        time_shift_dim: ``shift_dim`` of the time shift ``sqrt(shift_dim / time_shift_base)``; ``None``: the
            latent's ``C * H * W`` (no shift below 4096; the release configs give 196608 for 16x16x768).
        time_shift_base: ``shift_base`` (4096).
        lr: Base learning rate (AdamW).
        final_lr: Learning rate at the end of the decay.
        betas: AdamW betas.
        weight_decay: AdamW weight decay (matrices only; 0 in every release config).
        eps: AdamW eps.
        schedule: ``"linear"`` (the releases), ``"cosine"`` or ``"constant"``.
        warmup_epochs: Epochs before the decay starts (the releases: 40, at constant ``lr``).
        decay_end_epoch: Epoch where the decay reaches ``final_lr`` (the releases: 800); ``None``: the
            end of training.
        warmup_steps: The same in optimizer steps (overrides ``warmup_epochs``).
        decay_end_steps: The same in optimizer steps (overrides ``decay_end_epoch``).
        warmup_from_zero: A linear warm-up from 0 instead of the originals' constant one.
        ema_decay: EMA decay (``None``: no EMA, e.g. under FSDP).
        grad_clip: Max global gradient norm (``None``: no clipping).
        tf32: On CUDA, TF32 matmuls and convolutions in float32 training (the originals' ``allow_tf32``;
            they train in fp32 this way).
        noise_seed: Seed of the noise, times and label dropout (``seed_everything``'s when set).
        log_images_every_n_steps: A grid of EMA samples for fixed labels and noise every N steps (0: none).
        num_log_images: Samples in the grid.
        sample_steps: Euler grid points of the monitoring samples.
        fid_every_n_steps: A small FID of EMA samples against the decoded validation latents every N
            steps (0: none; needs Inception weights, see :mod:`uae.training.latent_monitor`).
        fid_num_samples: Samples (and at most that many validation latents) of that FID.
        inception_weights: An Inception weights file for the FID (default: torch hub cache).
        export_dir: Write the EMA generator (``save_pretrained`` + its latent space) here at the end of ``fit``.
        export_name: Its name (default: the folder's, or its parent's for ``.../export``).

    Raises:
        ConfigError: An invalid option (naming the parameter).
    """

    STAGE = "ldm"
    SUPPORTS_FP16 = True

    def __init__(
        self,
        model_name: str = "dit_dh_xl",
        model_overrides: dict[str, Any] | None = None,
        pretrained: str | None = None,
        train_all_parameters: bool = True,
        prediction: Literal["velocity", "x"] = "velocity",
        time_dist: str = "logit-normal_0_1",
        time_shift_dim: int | None = None,
        time_shift_base: int = SHIFT_BASE,
        lr: float = 2e-4,
        final_lr: float = 2e-5,
        betas: tuple[float, float] = (0.9, 0.95),
        weight_decay: float = 0.0,
        eps: float = 1e-8,
        schedule: Literal["linear", "cosine", "constant"] = "linear",
        warmup_epochs: float = 0.0,
        decay_end_epoch: float | None = None,
        warmup_steps: int | None = None,
        decay_end_steps: int | None = None,
        warmup_from_zero: bool = False,
        ema_decay: float | None = 0.9995,
        grad_clip: float | None = 1.0,
        tf32: bool = True,
        noise_seed: int = 0,
        log_images_every_n_steps: int = 1000,
        num_log_images: int = 8,
        sample_steps: int = 50,
        fid_every_n_steps: int = 0,
        fid_num_samples: int = 1000,
        inception_weights: str | None = None,
        export_dir: str | None = None,
        export_name: str | None = None,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        if schedule not in SCHEDULES:
            raise ConfigError(f"schedule must be one of {SCHEDULES}, got {schedule!r}", param="schedule")
        if lr <= 0 or final_lr < 0:
            raise ConfigError(f"need lr > 0 and final_lr >= 0, got lr={lr}, final_lr={final_lr}", param="lr")
        if ema_decay is not None and not 0.0 < ema_decay < 1.0:
            raise ConfigError(f"ema_decay must be in (0, 1) or None, got {ema_decay}", param="ema_decay")
        if sample_steps < 2:
            raise ConfigError(f"sample_steps must be >= 2, got {sample_steps}", param="sample_steps")
        self.model = build_generator(model_name, model_overrides, pretrained)
        cfg = self.model.config
        self.model.train().requires_grad_(True)
        if not train_all_parameters:  # the fixed tables stay fixed (a learned position table still trains)
            fixed = {"t_embed.freqs", *(["pos_embed"] if cfg.pos_embed == "sincos" else [])}
            for name, p in self.model.named_parameters():
                p.requires_grad_(name not in fixed)
        #: The time shift of training and of the monitoring samples (none below ``time_shift_base`` dims).
        self.shift = (
            time_shift(int(time_shift_dim), int(time_shift_base))
            if time_shift_dim is not None
            else default_shift(cfg.latent_shape)
        )
        sample_training_times(1, time_dist=time_dist, generator=torch.Generator())  # a bad one fails now
        self.prediction, self.time_dist = prediction, time_dist
        self.lr, self.final_lr, self.betas = lr, final_lr, tuple(betas)
        self.weight_decay, self.eps, self.schedule = weight_decay, eps, schedule
        self.grad_clip, self.noise_seed = grad_clip, noise_seed
        self.ema: ParameterEMA | None = ParameterEMA(self.model, ema_decay) if ema_decay is not None else None
        #: The modelled latent space (from the data module at ``setup``; ``None``: latents used as they are).
        self.latent_space: LatentSpace | None = None
        #: Recipe file(s) of the run (set by ``uae fit``).
        self.recipe: list[str] = []

    # ------------------------------------------------------------------ set-up
    def train(self, mode: bool = True) -> LatentDiffusionModule:
        """Train/eval mode; the EMA copy stays in eval mode."""
        super().train(mode)
        if self.ema is not None:
            self.ema.eval()
        return self

    def setup(self, stage: str) -> None:
        quiet_lightning()
        if self.hparams.tf32 and torch.cuda.is_available():  # as src/train.py sets them
            torch.backends.cuda.matmul.allow_tf32 = True
            torch.backends.cudnn.allow_tf32 = True
        dm = getattr(self.trainer, "datamodule", None) if self._trainer is not None else None
        space = getattr(dm, "latent_space", None)
        if space is not None:
            want = tuple(self.model.config.latent_shape)
            if tuple(space.latent_shape) != want:
                c, h, w = space.latent_shape
                raise ConfigError(
                    f"the generator models latents {want} but the data are {tuple(space.latent_shape)}: set "
                    f"model_overrides {{in_channels: {c}, input_size: [{h}, {w}]}}",
                    param="model_overrides",
                )
            self.latent_space = space
            num_classes = dm.num_classes() if hasattr(dm, "num_classes") else None
            if num_classes is not None and num_classes > self.model.config.num_classes:
                raise ConfigError(
                    f"the data have {num_classes} classes, the generator {self.model.config.num_classes}: set "
                    f"model_overrides {{num_classes: {num_classes}}}",
                    param="model_overrides",
                )

    @property
    def tokenizer(self) -> Any:
        """The tokenizer of the data (from the data module), or ``None``."""
        dm = getattr(self.trainer, "datamodule", None) if self._trainer is not None else None
        return getattr(dm, "tokenizer_model", None)

    def configure_callbacks(self) -> list[pl.Callback]:
        """The random state of exact resumes, the EMA step, sample grids and the FID (when enabled)."""
        from uae.training.latent_monitor import GenerationFID, SampleGrids

        hp = self.hparams
        callbacks: list[pl.Callback] = [RNGState()]
        if self.ema is not None:
            callbacks.append(EMAUpdate())
        callbacks.append(SampleGrids(hp.log_images_every_n_steps, hp.num_log_images, hp.sample_steps))
        if hp.fid_every_n_steps:
            callbacks.append(
                GenerationFID(hp.fid_every_n_steps, hp.fid_num_samples, hp.sample_steps, hp.inception_weights)
            )
        return callbacks

    # ------------------------------------------------------------------ optimisation
    def steps_per_epoch(self) -> int:
        """Optimizer steps per epoch (after DDP sharding and gradient accumulation); 1 without a trainer."""
        if self._trainer is None:
            return 1
        total = self.trainer.estimated_stepping_batches  # also sets the training data up
        batches = self.trainer.num_training_batches
        if not math.isfinite(batches):
            return max(1, int(total))
        return max(1, int(batches) // max(1, self.trainer.accumulate_grad_batches))

    def schedule_steps(self) -> tuple[int, int]:
        """``(warmup_steps, decay_end_steps)`` of the schedule."""
        hp = self.hparams
        per_epoch = self.steps_per_epoch() if hp.warmup_steps is None or hp.decay_end_steps is None else 1
        warmup = hp.warmup_steps if hp.warmup_steps is not None else int(hp.warmup_epochs * per_epoch)
        if hp.decay_end_steps is not None:
            end = hp.decay_end_steps
        elif hp.decay_end_epoch is not None:
            end = int(hp.decay_end_epoch * per_epoch)
        else:
            end = int(self.trainer.estimated_stepping_batches) if self._trainer is not None else warmup
        return max(0, int(warmup)), max(int(warmup), int(end))

    def configure_optimizers(self) -> Any:
        named = [(n, p) for n, p in self.model.named_parameters() if p.requires_grad]
        fused = all(p.device.type in ("cpu", "cuda") and p.dtype == torch.float32 for _, p in named)
        opt = torch.optim.AdamW(
            param_groups(named, self.lr, self.weight_decay),
            lr=self.lr,
            betas=self.betas,
            eps=self.eps,
            fused=fused or None,
        )
        warmup, end = self.schedule_steps()
        kw = {
            "warmup_steps": warmup,
            "decay_end_steps": end,
            "final_ratio": self.final_lr / self.lr,
            "schedule": self.schedule,
            "warmup_from_zero": bool(self.hparams.warmup_from_zero),
        }
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: flow_lr_lambda(s, **kw))
        logger.info(
            "Schedule: %s, warm-up %d steps, decay to %g until step %d",
            self.schedule,
            warmup,
            self.final_lr,
            end,
        )
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step", "frequency": 1}}

    # ------------------------------------------------------------------ the loss
    def normalize(self, latents: torch.Tensor) -> torch.Tensor:
        """Batch latents ``(B, C, h, w)`` -> the generator's normalised float32 latents."""
        x = latents.float()
        return self.latent_space.normalize(x) if self.latent_space is not None else x

    def data_seed(self) -> int:
        """``seed_everything``'s seed when one was set (``PL_GLOBAL_SEED``), else ``noise_seed``."""
        return int(os.environ.get("PL_GLOBAL_SEED", self.noise_seed))

    def step_seed(self, batch_idx: int) -> int:
        """Seed of this micro-batch's draws: :func:`step_seed` of (seed, global step, micro-batch, rank)."""
        accumulate = self.trainer.accumulate_grad_batches if self._trainer is not None else 1
        rank = self.global_rank if self._trainer is not None else 0
        return step_seed(self.data_seed(), self.global_step, batch_idx % max(1, accumulate), rank)

    def draw(
        self, x1: torch.Tensor, labels: torch.Tensor, seed: int, *, dropout: bool = True
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(noise, t, labels)`` for a batch, drawn in the originals' order from generators seeded with ``seed``.

        On the CPU one generator gives the noise, then the times, then the label dropout (``train.py``'s
        stream); on an accelerator the noise comes from a generator of that device with the same seed.
        """
        cpu = torch.Generator().manual_seed(seed)
        if x1.device.type == "cpu":
            noise = torch.randn(x1.shape, generator=cpu)
        else:
            noise = torch.randn(
                x1.shape, generator=torch.Generator(x1.device).manual_seed(seed), device=x1.device
            )
        b = x1.shape[0]
        kw = {"time_dist": self.time_dist, "shift": self.shift, "prediction": self.prediction}
        t = sample_training_times(b, generator=cpu, device=x1.device, **kw)  # type: ignore[arg-type]
        null = self.model.config.null_class
        if dropout and null is not None:
            p = self.model.config.class_dropout_prob
            labels = drop_labels(labels.cpu(), prob=p, null_class=null, generator=cpu).to(x1.device)
        return noise, t, labels

    def flow_loss(
        self, model: nn.Module, x1: torch.Tensor, labels: torch.Tensor, seed: int, *, dropout: bool = True
    ) -> torch.Tensor:
        """Mean flow-matching loss of ``model`` on normalised latents ``x1 (B, C, h, w)``."""
        noise, t, y = self.draw(x1, labels.long(), seed, dropout=dropout)
        per_sample = flow_matching_loss(model, x1, y, t=t, noise=noise, prediction=self.prediction)  # type: ignore[arg-type]
        return per_sample.mean()

    # ------------------------------------------------------------------ steps
    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        x1 = self.normalize(batch["latent"])
        loss = self.flow_loss(self.model, x1, batch["label"], self.step_seed(batch_idx))
        n = x1.shape[0]
        self.log("train/loss", loss.detach(), on_step=True, prog_bar=True, batch_size=n)
        self.log(
            "train/loss_epoch", loss.detach(), on_step=False, on_epoch=True, sync_dist=True, batch_size=n
        )
        return loss

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        """The EMA model's loss on validation latents, with the same draws at every validation (comparable)."""
        x1 = self.normalize(batch["latent"])
        seed = step_seed(self.data_seed(), batch_idx, 0, self.global_rank, stream=1)
        with torch.no_grad():
            loss = self.flow_loss(self.export_model(), x1, batch["label"], seed, dropout=False)
        self.log("val/loss", loss, sync_dist=True, batch_size=x1.shape[0], prog_bar=True)

    # ------------------------------------------------------------------ export and checkpoints
    def export_model(self) -> DiTDH:
        """The generator to sample from and export: the EMA copy when there is one."""
        return self.ema.module if self.ema is not None else self.model  # type: ignore[return-value]

    def export_pretrained(self, directory: str | os.PathLike, ema: bool = True) -> Path:
        """Write the (EMA) generator with ``save_pretrained`` and its latent space into ``directory``."""
        model = copy.deepcopy(self.export_model() if ema else self.model).cpu().eval()
        return save_generator(model, Path(directory), self.latent_space, self.hparams.export_name)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint[CONFIG_KEY] = self.model.config.to_dict()
        checkpoint["uae_stage"] = self.STAGE
        if self.latent_space is not None:
            s = self.latent_space
            checkpoint[SPACE_KEY] = {**s.to_dict(), "mean": s.mean, "std": s.std}

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        saved, space = checkpoint.get(SPACE_KEY), self.latent_space  # setup() has run: the data's space
        if (
            saved is not None
            and space is not None
            and saved.get("tokenizer_fingerprint") != space.tokenizer_fingerprint
        ):
            raise ConfigError(
                "this checkpoint was trained on the latents of another tokenizer than the data's (root)",
                param="root",
            )

    def on_train_end(self) -> None:
        directory = self.hparams.export_dir
        if not directory:
            return
        strategy = self.trainer.strategy
        if isinstance(strategy, FSDPStrategy):  # sharded weights: gather the full state dict (collective)
            state = strategy.lightning_module_state_dict()
            if self.trainer.is_global_zero:
                model = DiTDH(self.model.config)
                model.load_state_dict(
                    {k[len("model.") :]: v for k, v in state.items() if k.startswith("model.")}
                )
                save_generator(model.eval(), Path(directory), self.latent_space, self.hparams.export_name)
        elif self.trainer.is_global_zero:
            self.export_pretrained(directory)
            logger.info(
                "Exported the %s generator to %s", "EMA" if self.ema is not None else "trained", directory
            )


__all__ = ["LatentDiffusionModule"]
