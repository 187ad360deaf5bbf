"""The LightningModule every UAE training stage builds on: a plain :class:`uae.UAE` (``self.model``) with its
reconstruction losses, AdamW + warm-up/cosine schedule, an EMA copy, validation and export.

The stages, one file each: :mod:`uae.training.stage1_decoder` (frozen encoder),
:mod:`uae.training.stage2_semantic` (+ the band semantic loss against a frozen teacher),
:mod:`uae.training.stage3_gan` (+ band noise and the GAN loss, manual optimisation). The losses live here
and in the stage modules, never in ``UAE.forward``. What runs around the steps is in Lightning callbacks
(:mod:`uae.training.callbacks`, attached by :meth:`UAETrainingModule.configure_callbacks`): the EMA step,
image grids and the random state of exact resumes.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
import torch.nn.functional as F
from lightning.pytorch.strategies import FSDPStrategy
from torch import nn

from uae.errors import ConfigError
from uae.factory import create_model
from uae.models.registry import get_entry, is_registered_name
from uae.models.uae import UAE
from uae.networks.lpips import LPIPSLoss
from uae.training.callbacks import (
    AtomicCheckpoints,
    EMAUpdate,
    EpochBoundaryResume,
    ImageGrids,
    RNGState,
    SaveOnSigterm,
    eval_mode,
    model_ema,
)
from uae.training.export import model_from_state_dict, name_from_dir, save_with_card
from uae.training.losses import pixel_loss
from uae.training.optim import StepHooks, adamw, warmup_cosine
from uae.training.quiet import quiet_lightning
from uae.training.resume import REQUIRED

logger = logging.getLogger(__name__)


def plain_values(value: Any) -> Any:
    """``value`` with paths as strings and mappings as plain dicts (recursively): what ``weights_only=True``
    reads without an allowlist."""
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, Mapping):
        return {k: plain_values(v) for k, v in value.items()}
    if isinstance(value, tuple):
        return tuple(plain_values(v) for v in value)
    if isinstance(value, list):
        return [plain_values(v) for v in value]
    return value


def build_model(
    model_name: str = "uae_base_p14_dinov2",
    model_overrides: dict[str, Any] | None = None,
    pretrained: str | None = None,
    encoder_weights: str | None = None,
) -> UAE:
    """The :class:`uae.UAE` to train.

    Args:
        model_name: Registered name for :func:`uae.factory.create_model` (ignored when ``pretrained`` is given).
        model_overrides: Config fields to override (e.g. ``{"num_bands": 8}``).
        pretrained: A ``save_pretrained`` directory or Hub repo id to start from (e.g. the previous
            stage's export), or a registered name with weights (``uae_demo``,
            ``uae_base_p14_dinov2.authors_v2``: ``uae models --pretrained`` lists them) when no such
            directory exists.
        encoder_weights: DINOv2 weights (file or timm Hub id) loaded into the encoder with strict checks.
    """
    overrides = dict(model_overrides or {})
    if pretrained and is_registered_name(pretrained):
        family = get_entry(pretrained.partition(".")[0]).family
        if family != "tokenizer":
            raise ConfigError(
                f"pretrained {pretrained!r} is a {family}, not a tokenizer to fine-tune (see `uae models`)",
                param="pretrained",
            )
        model = create_model(pretrained, pretrained=True, **overrides)
    elif pretrained:
        model = UAE.from_pretrained(pretrained, **overrides)
    else:
        model = create_model(model_name, **overrides)
    if encoder_weights:
        model.load_encoder_weights(encoder_weights)
    return model.train()


class UAETrainingModule(StepHooks, pl.LightningModule):
    """Shared base of the stage modules (use one of the named stage classes).

    Args:
        model_name: Registered model name (``uae models`` lists them).
        model_overrides: UAEConfig fields to override.
        pretrained: Start from a ``save_pretrained`` directory / Hub repo (e.g. the previous stage's export).
        encoder_weights: DINOv2 weights file (or timm Hub id) for the encoder (stage 1 from scratch).
        teacher_weights: DINOv2 weights of the semantic teacher (stages 2-3); default: a frozen copy of the
            encoder as it is when training starts (right for stage 2 after stage 1, whose encoder was frozen).
        l1_weight: Weight of the L1 pixel loss.
        l2_weight: Weight of the L2 (MSE) pixel loss.
        lpips_weight: Weight of LPIPS (0 trains without it and needs no backbone weights).
        lpips_net: LPIPS backbone: ``"vgg"``, ``"alex"`` or ``"squeeze"``.
        lpips_backbone_weights: Torchvision backbone checkpoint for LPIPS (default
            ``$TORCH_HOME/hub/checkpoints/vgg16-397923af.pth``; a clear error at start when missing).
        semantic_weight: Weight of the band semantic loss; ``None``: the stage default (0 / 0.1 / 0.1).
        noise_std: High-band noise std during training; ``None``: the stage default (stages 1-2: none,
            stage 3: ``config.noise_std``).
        lr: Peak learning rate (AdamW). Scale linearly with the global batch (see the recipes).
        betas: AdamW betas.
        weight_decay: AdamW weight decay (applied to matrices only, not to biases / norms / tokens).
        warmup_steps: Linear warm-up steps (``0``: from ``warmup_ratio``).
        warmup_ratio: Warm-up as a fraction of the run's steps, used when ``warmup_steps`` is 0 (the fine-tune
            recipe's 0.04: 200 of 5,000 steps, 6 of 150).
        min_lr: Final learning rate of the cosine decay (reached at the last training step).
        ema_decay: EMA decay of the model weights (``None`` disables EMA).
        ema_warmup: timm's EMA decay warm-up (useful for short runs).
        grad_clip: Max global gradient norm (``None`` disables clipping).
        log_images_every_n_steps: Write a reconstruction/band grid every N steps (0 disables).
        num_log_images: Images in the grid.
        export_dir: Write the trained (EMA) model with ``save_pretrained`` here at the end of ``fit``.
        export_name: Name of the exported model (``config.name`` and the model card's title);
            ``None``: the export folder's name (its parent's when the folder is called ``export``).

    Raises:
        ConfigError: An invalid option, naming the parameter.
    """

    #: Stage number (1, 2, 3) shown in logs and model cards.
    STAGE: int = 0
    #: Whether the encoder trains in this stage.
    TRAIN_ENCODER: bool = True
    #: Default semantic-loss weight of the stage.
    DEFAULT_SEMANTIC_WEIGHT: float = 0.0
    #: Whether the stage injects high-band noise.
    NOISE: bool = False
    #: Whether the stage can train with fp16 mixed precision (loss scaling).
    SUPPORTS_FP16: bool = True

    def __init__(
        self,
        model_name: str = "uae_base_p14_dinov2",
        model_overrides: dict[str, Any] | None = None,
        pretrained: str | None = None,
        encoder_weights: str | None = None,
        teacher_weights: str | None = None,
        l1_weight: float = 1.0,
        l2_weight: float = 0.0,
        lpips_weight: float = 0.0,
        lpips_net: str = "vgg",
        lpips_backbone_weights: str | None = None,
        semantic_weight: float | None = None,
        noise_std: float | None = None,
        lr: float = 2e-4,
        betas: tuple[float, float] = (0.9, 0.95),
        weight_decay: float = 0.0,
        warmup_steps: int = 0,
        warmup_ratio: float = 0.0,
        min_lr: float = 2e-5,
        ema_decay: float | None = 0.9999,
        ema_warmup: bool = False,
        grad_clip: float | None = 1.0,
        log_images_every_n_steps: int = 1000,
        num_log_images: int = 4,
        export_dir: str | None = None,
        export_name: str | None = None,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        if pretrained == REQUIRED:
            raise ConfigError(
                "this recipe fine-tunes an existing UAE: pass pretrained (a registered name such as uae_demo, "
                "a Hub repo id or a model folder)",
                param="pretrained",
            )
        semantic_weight = self.DEFAULT_SEMANTIC_WEIGHT if semantic_weight is None else semantic_weight
        if min(l1_weight, l2_weight, lpips_weight, semantic_weight) < 0:
            raise ConfigError("loss weights must be >= 0")
        if semantic_weight > 0 and not self.TRAIN_ENCODER:
            raise ConfigError(
                f"{type(self).__name__} freezes the encoder: the semantic loss (semantic_weight) needs stage 2 "
                "or 3",
                param="semantic_weight",
            )
        if noise_std and not self.NOISE:
            raise ConfigError(
                f"{type(self).__name__} trains without band noise; noise_std is for stage 3",
                param="noise_std",
            )
        if lr <= 0 or min_lr < 0 or min_lr > lr:
            raise ConfigError(f"need 0 <= min_lr <= lr and lr > 0, got lr={lr}, min_lr={min_lr}")
        if warmup_steps < 0 or not 0.0 <= warmup_ratio < 1.0:
            raise ConfigError(
                f"need warmup_steps >= 0 and 0 <= warmup_ratio < 1, got {warmup_steps}, {warmup_ratio}",
                param="warmup_ratio" if warmup_steps >= 0 else "warmup_steps",
            )
        if ema_decay is not None and not 0.0 < ema_decay < 1.0:
            raise ConfigError(f"ema_decay must be in (0, 1) or None, got {ema_decay}", param="ema_decay")

        self.model = build_model(model_name, model_overrides, pretrained, encoder_weights)
        cfg = self.model.config
        self.l1_weight, self.l2_weight, self.lpips_weight = l1_weight, l2_weight, lpips_weight
        self.semantic_weight = float(semantic_weight)
        self.num_semantic_bands = cfg.num_semantic_bands
        self.lr, self.betas, self.weight_decay = lr, tuple(betas), weight_decay
        self.warmup_steps, self.warmup_ratio, self.min_lr = int(warmup_steps), float(warmup_ratio), min_lr
        self.grad_clip = grad_clip
        self.log_images_every_n_steps = log_images_every_n_steps
        self.num_log_images = num_log_images
        self.export_dir = export_dir
        self.export_name = export_name
        #: Recipe file(s) the run was configured with (set by ``uae fit``; shown in the model card).
        self.recipe: list[str] = []

        # Noise: only where the stage asks for it; the config keeps its value for later stages.
        std = 0.0
        if self.NOISE:
            std = cfg.noise_std if noise_std is None else float(noise_std)
            if noise_std is not None:
                self.model.config = cfg.replace(noise_std=std)
        self.model.modulator.noise_std = std

        # Frozen parts: no gradients, eval mode (see train()), excluded from the optimizer.
        if not self.TRAIN_ENCODER:
            self.model.encoder.requires_grad_(False)
            self.model.encoder.eval()

        #: The frozen semantic teacher (stages 2-3 build it).
        self.teacher: nn.Module | None = None

        # LPIPS: checked now (clear error before training); kept out of checkpoints.
        self._lpips: list[LPIPSLoss] = []
        if lpips_weight > 0:
            self._lpips.append(LPIPSLoss(lpips_net, lpips_backbone_weights))  # type: ignore[arg-type]

        #: EMA of the whole UAE (parameters and buffers), frozen; stepped by the EMAUpdate callback.
        self.ema: nn.Module | None = None
        if ema_decay is not None:
            self.ema = model_ema(self.model, ema_decay, ema_warmup)

    # ------------------------------------------------------------------ modes and parameters
    def train(self, mode: bool = True) -> UAETrainingModule:
        """Set train/eval mode; frozen parts (encoder in stage 1, teacher, EMA, LPIPS) stay in eval mode."""
        super().train(mode)
        if not self.TRAIN_ENCODER:
            self.model.encoder.eval()
        if self.teacher is not None:
            self.teacher.eval()
        if self.ema is not None:
            self.ema.eval()
        return self

    def total_steps(self) -> int:
        """Optimizer steps of the run (the cosine schedule's length); 1 without a trainer."""
        return int(self.trainer.estimated_stepping_batches) if self._trainer is not None else 1

    def warmup(self) -> int:
        """Warm-up steps of the run: ``warmup_steps``, or ``warmup_ratio`` of :meth:`total_steps` when it is 0."""
        if self.warmup_steps > 0:
            return self.warmup_steps
        return int(round(self.warmup_ratio * self.total_steps()))

    def lr_schedule(self, optimizer: torch.optim.Optimizer) -> torch.optim.lr_scheduler.LambdaLR:
        """Warm-up + cosine per step, from each group's learning rate down to ``min_lr / lr`` of it."""
        total, warmup = self.total_steps(), self.warmup()
        if self._trainer is not None and warmup >= total > 1:
            logger.warning(
                "warmup_steps %d >= the run's %d steps: the learning rate never reaches lr (use warmup_ratio)",
                warmup,
                total,
            )
        return warmup_cosine(optimizer, total, warmup, self.min_lr / self.lr)

    def configure_optimizers(self) -> Any:
        opt = adamw(self.model, self.lr, self.betas, self.weight_decay)
        sched = self.lr_schedule(opt)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step", "frequency": 1}}

    # ------------------------------------------------------------------ losses
    @property
    def lpips(self) -> LPIPSLoss | None:
        """The LPIPS loss module (moved to the current device on use), or ``None``."""
        if not self._lpips:
            return None
        m = self._lpips[0]
        if next(m.parameters()).device != self.device:
            m.to(self.device)
        return m

    def batch_inputs(self, batch: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
        """``(x, target)``: encoder input and reconstruction target at the output resolution."""
        x = batch["image"]
        target = batch.get("target", x)
        out = self.model.config.output_size
        if target.shape[-1] != out or target.shape[-2] != out:
            if not getattr(self, "_warned_resize", False):
                logger.warning(
                    "Batch has no 'target' at the output size %d: resizing the input (use "
                    "UAEDataModule or image_transform(out_size=...) to avoid this)",
                    out,
                )
                self._warned_resize = True
            target = F.interpolate(
                target, size=(out, out), mode="bicubic", align_corners=False, antialias=True
            ).clamp(0, 1)
        return x, target

    def reconstruction_losses(self, x: torch.Tensor, target: torch.Tensor) -> dict[str, torch.Tensor]:
        """Forward pass and generator-side losses.

        Args:
            x: ``(B, 3, H, W)`` encoder input in [0, 1].
            target: ``(B, 3, H', W')`` target at the output resolution.

        Returns:
            Dict with ``recon`` (unclamped), ``bands`` (the encoder's ``(B, K, C, h, w)`` bands, for the
            stages' band losses), ``rec`` (pixel + LPIPS), ``l1``/``l2``/``lpips`` terms when used, and
            ``loss`` (here ``rec``; the stages add their terms).
        """
        ctx = torch.no_grad() if not self.TRAIN_ENCODER else contextlib.nullcontext()
        with ctx:
            enc = self.model.encode(x)
        fused = self.model.fuse(enc.bands)
        recon = self.model.render(fused, clamp=False)
        out: dict[str, torch.Tensor] = {"recon": recon, "bands": enc.bands}
        rec = pixel_loss(recon, target, self.l1_weight, self.l2_weight)
        if self.l1_weight:
            out["l1"] = (recon - target).abs().mean().detach()
        if self.l2_weight:
            out["l2"] = (recon - target).pow(2).mean().detach()
        lp = self.lpips
        if lp is not None:
            lpips_val = lp(recon, target)
            out["lpips"] = lpips_val.detach()
            rec = rec + self.lpips_weight * lpips_val
        out["rec"] = rec
        out["loss"] = rec
        return out

    def log_losses(self, prefix: str, values: dict[str, torch.Tensor], batch: dict[str, Any]) -> None:
        """Log the scalar entries of ``values`` as ``<prefix>/<name>`` (and the skipped-image count)."""
        n = batch["image"].shape[0]
        logs = {f"{prefix}/{k}": v.detach() for k, v in values.items() if v.ndim == 0}
        self.log_dict(logs, on_step=True, on_epoch=False, prog_bar=False, batch_size=n)
        self.log(
            f"{prefix}/loss_step",
            values["loss"].detach(),
            prog_bar=True,
            on_step=True,
            on_epoch=False,
            batch_size=n,
        )
        if "skipped" in batch:
            self.log(
                "data/skipped_images",
                batch["skipped"].float().sum(),
                on_step=False,
                on_epoch=True,
                reduce_fx="sum",
                sync_dist=True,
                batch_size=n,
            )

    # ------------------------------------------------------------------ steps
    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        x, target = self.batch_inputs(batch)
        out = self.reconstruction_losses(x, target)
        self.log_losses("train", out, batch)
        return out["loss"]

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        from torchmetrics.functional.image import peak_signal_noise_ratio

        x, target = self.batch_inputs(batch)
        model = self.export_model()
        with eval_mode(model):
            recon = model(x).sample
        n = x.shape[0]
        self.log("val/l1", (recon - target).abs().mean(), sync_dist=True, batch_size=n, prog_bar=True)
        self.log(
            "val/psnr",
            peak_signal_noise_ratio(recon, target, data_range=1.0, dim=(1, 2, 3)),
            sync_dist=True,
            batch_size=n,
            prog_bar=True,
        )

    def configure_callbacks(self) -> list[pl.Callback]:
        """Atomic ``weights_only`` checkpoints, the random state and epoch counter of exact resumes, the EMA
        step (when EMA is on), the image grids and the checkpoint on SIGTERM (after the EMA step)."""
        callbacks: list[pl.Callback] = [AtomicCheckpoints(), RNGState(), EpochBoundaryResume()]
        if self.ema is not None:
            callbacks.append(EMAUpdate())
        callbacks.append(ImageGrids(self.log_images_every_n_steps, self.num_log_images))
        callbacks.append(SaveOnSigterm())
        return callbacks

    def setup(self, stage: str) -> None:
        quiet_lightning()

    # ------------------------------------------------------------------ export and checkpoints
    def export_model(self) -> UAE:
        """The model to evaluate and export: the EMA copy when EMA is on, else the trained model."""
        return self.ema.module if self.ema is not None else self.model  # type: ignore[return-value]

    def export_pretrained(self, directory: str | Path, ema: bool = True) -> Path:
        """Write the (EMA) model with ``save_pretrained`` (``config.json`` + ``model.safetensors``) and a card.

        Args:
            directory: Output folder (created).
            ema: Export the EMA weights when available (else the raw trained weights).

        Returns:
            The folder.
        """
        use_ema = ema and self.ema is not None
        model = copy.deepcopy(self.export_model() if ema else self.model).cpu().eval()
        directory = Path(directory)
        save_with_card(model, directory, self.training_card(ema=use_ema), name=self._export_name(directory))
        logger.info("Exported %s weights to %s", "EMA" if use_ema else "model", directory)
        return directory

    def _export_name(self, directory: Path) -> str | None:
        return self.export_name or name_from_dir(directory)

    def training_card(self, ema: bool = True) -> dict[str, str]:
        """Model-card fields (``training``, ``evaluation``, ``encoder_weights``) describing this run."""
        from uae.training.card import training_card

        return training_card(self, ema=ema)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["uae_config"] = self.model.config.to_dict()
        checkpoint["uae_stage"] = self.STAGE
        # Plain values only (a Path given in a notebook becomes its string): loads with weights_only=True.
        for key in ("hyper_parameters", "datamodule_hyper_parameters"):
            if key in checkpoint:
                checkpoint[key] = plain_values(checkpoint[key])

    def on_train_end(self) -> None:
        if not self.export_dir:
            return
        strategy = self.trainer.strategy
        if isinstance(strategy, FSDPStrategy):  # sharded weights: gather the full state dict (collective)
            state = strategy.lightning_module_state_dict()
            if self.trainer.is_global_zero:
                model = model_from_state_dict(self.model.config.to_dict(), state, source="FSDP state dict")
                directory = Path(self.export_dir)
                save_with_card(
                    model, directory, self.training_card(ema=False), name=self._export_name(directory)
                )
                logger.info("Exported model weights to %s", self.export_dir)
        elif self.trainer.is_global_zero:
            self.export_pretrained(self.export_dir)


__all__ = ["UAETrainingModule", "build_model", "plain_values"]
