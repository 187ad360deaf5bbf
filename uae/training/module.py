"""LightningModules for the three UAE training stages.

* :class:`Stage1DecoderModule`: encoder frozen (no gradients, eval mode, not in the optimizer);
  decoder + band modulator learn to reconstruct (L1/L2 + optional LPIPS). No band noise.
* :class:`Stage2SemanticModule`: everything trains; + semantic loss of the lowest ``K_base`` bands
  against the frozen teacher (the initial encoder, split into bands the same way).
* :class:`Stage3GANModule`: everything trains with high-band noise injection (``noise_std``) and an
  adversarial loss (RAE-style discriminator, hinge/vanilla, adaptive weight, start step, DiffAugment);
  manual optimisation with two optimizers.

All wrap a plain :class:`uae.UAE` (``self.model``); the losses live here, never in ``UAE.forward``.
Common to all: AdamW with linear warm-up + cosine decay per step, an EMA of the model weights
(timm ``ModelEmaV3``, used for validation and export), gradient-norm clipping, loss logging, a grid
of inputs / reconstructions / progressive band decodes written as PNG (and to TensorBoard / W&B when
that logger is used), and export of the (EMA) model with ``save_pretrained`` in Hub layout
(``export_dir``, written at the end of ``fit``; or :func:`uae.training.export.export_checkpoint`).
"""

from __future__ import annotations

import contextlib
import copy
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
import torch.nn.functional as F
from torch import nn

from uae.models.uae import UAE
from uae.training.losses import (
    LPIPSLoss,
    adaptive_weight,
    build_discriminator,
    cosine_schedule,
    diff_augment,
    discriminator_loss,
    generator_loss,
    pixel_loss,
    semantic_loss,
)

logger = logging.getLogger(__name__)

#: Value of a recipe option the user must set (``pretrained: ???`` in ``recipes/finetune_folder.yaml``).
REQUIRED = "???"


def build_model(
    model_name: str = "uae_base_p14_dinov2",
    model_overrides: dict[str, Any] | None = None,
    pretrained: str | None = None,
    encoder_weights: str | None = None,
) -> UAE:
    """The :class:`uae.UAE` to train.

    Args:
        model_name: Registered name for :func:`uae.create_model` (ignored when ``pretrained`` is given).
        model_overrides: Config fields to override (e.g. ``{"num_bands": 8}``).
        pretrained: A ``save_pretrained`` directory or Hub repo id to start from (e.g. the previous
            stage's export).
        encoder_weights: DINOv2 weights (file or timm Hub id) loaded into the encoder with strict checks.
    """
    import uae

    overrides = dict(model_overrides or {})
    if pretrained:
        model = UAE.from_pretrained(pretrained, **overrides)
    else:
        model = uae.create_model(model_name, **overrides)
    if encoder_weights:
        model.load_encoder_weights(encoder_weights)
    return model.train()


class UAETrainingModule(pl.LightningModule):
    """Shared base of the stage modules (use one of the named stage classes).

    Args:
        model_name: Registered model name (``uae models`` lists them).
        model_overrides: UAEConfig fields to override.
        pretrained: Start from a ``save_pretrained`` directory / Hub repo (e.g. the previous stage's export).
        encoder_weights: DINOv2 weights file (or timm Hub id) for the encoder (stage 1 from scratch).
        teacher_weights: DINOv2 weights of the semantic teacher; default: a frozen copy of the encoder
            as it is when training starts (right for stage 2 after stage 1, whose encoder was frozen).
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
        warmup_steps: Linear warm-up steps.
        min_lr: Final learning rate of the cosine decay (reached at the last training step).
        ema_decay: EMA decay of the model weights (``None`` disables EMA).
        ema_warmup: timm's EMA decay warm-up (useful for short runs).
        grad_clip: Max global gradient norm (``None`` disables clipping).
        log_images_every_n_steps: Write a reconstruction/band grid every N steps (0 disables).
        num_log_images: Images in the grid.
        export_dir: Write the trained (EMA) model with ``save_pretrained`` here at the end of ``fit``.
        export_name: Name of the exported model (``config.name`` and the model card's title);
            ``None``: the export folder's name (its parent's when the folder is called ``export``).
    """

    #: Stage number (1, 2, 3) shown in logs.
    STAGE: int = 0
    #: Whether the encoder trains in this stage.
    TRAIN_ENCODER: bool = True
    #: Default semantic-loss weight of the stage.
    DEFAULT_SEMANTIC_WEIGHT: float = 0.0
    #: Whether the stage injects high-band noise by default.
    NOISE: bool = False

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
            raise ValueError(
                "this recipe fine-tunes a pretrained UAE: pass --model.pretrained <Hub repo id or "
                "save_pretrained folder> (e.g. checkpoints/uae_demo)"
            )
        if semantic_weight is None:
            semantic_weight = self.DEFAULT_SEMANTIC_WEIGHT
        if min(l1_weight, l2_weight, lpips_weight, semantic_weight) < 0:
            raise ValueError("loss weights must be >= 0")
        if semantic_weight > 0 and not self.TRAIN_ENCODER:
            raise ValueError(
                f"{type(self).__name__} freezes the encoder: the semantic loss needs stage 2 or 3"
            )
        if lr <= 0 or min_lr < 0 or min_lr > lr:
            raise ValueError(f"need 0 <= min_lr <= lr and lr > 0, got lr={lr}, min_lr={min_lr}")
        if ema_decay is not None and not 0.0 < ema_decay < 1.0:
            raise ValueError(f"ema_decay must be in (0, 1) or None, got {ema_decay}")

        self.model = build_model(model_name, model_overrides, pretrained, encoder_weights)
        cfg = self.model.config
        self.l1_weight, self.l2_weight, self.lpips_weight = l1_weight, l2_weight, lpips_weight
        self.semantic_weight = float(semantic_weight)
        self.num_semantic_bands = cfg.num_semantic_bands
        self.lr, self.betas, self.weight_decay = lr, tuple(betas), weight_decay
        self.warmup_steps, self.min_lr = warmup_steps, min_lr
        self.grad_clip = grad_clip
        self.log_images_every_n_steps = log_images_every_n_steps
        self.num_log_images = num_log_images
        self.export_dir = export_dir
        self.export_name = export_name
        #: Recipe file(s) the run was configured with (set by ``uae fit``; shown in the model card).
        self.recipe: list[str] = []
        self._rng_to_restore: dict[str, Any] | None = None

        # Noise: only where the stage asks for it; the config keeps its value for later stages.
        if self.NOISE:
            std = cfg.noise_std if noise_std is None else float(noise_std)
            if noise_std is not None:
                self.model.config = cfg.replace(noise_std=std)
            self.model.modulator.noise_std = std
        else:
            if noise_std:
                raise ValueError(f"{type(self).__name__} trains without band noise; noise_std is for stage 3")
            self.model.modulator.noise_std = 0.0

        # Frozen parts: no gradients, eval mode (see train()), excluded from the optimizer.
        if not self.TRAIN_ENCODER:
            self.model.encoder.requires_grad_(False)
            self.model.encoder.eval()

        # Semantic teacher (frozen), built before any training step.
        self.teacher: nn.Module | None = None
        if self.semantic_weight > 0 and self.num_semantic_bands > 0:
            if teacher_weights:
                teacher = copy.deepcopy(self.model.encoder)
                from uae.layers.encoder import read_state_dict
                from uae.models.dinov2 import resolve_dinov2_weights

                teacher.load_dinov2_state_dict(read_state_dict(resolve_dinov2_weights(teacher_weights)))
                self.teacher = teacher.requires_grad_(False).eval()
            else:
                if not (pretrained or encoder_weights):
                    logger.warning(
                        "Semantic teacher is a copy of a randomly initialised encoder "
                        "(no pretrained, encoder_weights or teacher_weights given)"
                    )
                self.teacher = self.model.encoder.frozen_copy()

        # LPIPS: checked now (clear FileNotFoundError before training); kept out of checkpoints.
        self._lpips: list[LPIPSLoss] = []
        if lpips_weight > 0:
            self._lpips.append(LPIPSLoss(lpips_net, lpips_backbone_weights))  # type: ignore[arg-type]

        # EMA of the whole UAE (parameters and buffers), frozen.
        self.ema: nn.Module | None = None
        if ema_decay is not None:
            from timm.utils import ModelEmaV3

            self.ema = ModelEmaV3(self.model, decay=ema_decay, use_warmup=ema_warmup)
            self.ema.requires_grad_(False)

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

    def trainable_parameters(self) -> list[nn.Parameter]:
        """Parameters of the UAE that this stage optimises."""
        return [p for p in self.model.parameters() if p.requires_grad]

    def _param_groups(self, params: list[tuple[str, nn.Parameter]], lr: float) -> list[dict[str, Any]]:
        decay = [p for n, p in params if p.ndim >= 2 and "pos_embed" not in n and "token" not in n]
        no_decay = [p for n, p in params if not (p.ndim >= 2 and "pos_embed" not in n and "token" not in n)]
        groups = [{"params": decay, "weight_decay": self.weight_decay, "lr": lr}]
        if no_decay:
            groups.append({"params": no_decay, "weight_decay": 0.0, "lr": lr})
        return groups

    def _scheduler(
        self, optimizer: torch.optim.Optimizer, peak_lr: float
    ) -> torch.optim.lr_scheduler.LambdaLR:
        total = int(self.trainer.estimated_stepping_batches) if self._trainer is not None else 1
        ratio = self.min_lr / self.lr
        warm = self.warmup_steps
        return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: cosine_schedule(s, total, warm, ratio))

    def configure_optimizers(self) -> Any:
        params = [(n, p) for n, p in self.model.named_parameters() if p.requires_grad]
        opt = torch.optim.AdamW(self._param_groups(params, self.lr), lr=self.lr, betas=self.betas)
        sched = self._scheduler(opt, self.lr)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step", "frequency": 1}}

    def configure_gradient_clipping(
        self,
        optimizer: torch.optim.Optimizer,
        gradient_clip_val: float | None = None,
        gradient_clip_algorithm: str | None = None,
    ) -> None:
        """Clip the global gradient norm to ``grad_clip`` (unless the Trainer sets its own clipping)."""
        if gradient_clip_val is not None:
            self.clip_gradients(optimizer, gradient_clip_val, gradient_clip_algorithm)
            return
        if self.grad_clip:
            norm = self._clip(self.trainable_parameters(), self.grad_clip)
            self.log("train/grad_norm", norm, on_step=True, prog_bar=False)

    def _clip(self, params: list[nn.Parameter], max_norm: float) -> torch.Tensor:
        strategy = self._trainer.strategy if self._trainer is not None else None
        wrapped = getattr(strategy, "model", None)
        if (
            wrapped is not None
            and hasattr(wrapped, "clip_grad_norm_")
            and type(wrapped).__name__ == "FullyShardedDataParallel"
        ):
            return wrapped.clip_grad_norm_(max_norm)
        return torch.nn.utils.clip_grad_norm_(params, max_norm)

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

    def _inputs(self, batch: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
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
            Dict with ``recon`` (unclamped), ``rec`` (pixel + LPIPS), ``l1``/``l2``/``lpips``/``semantic``
            terms when used, and ``loss`` (rec + weighted semantic).
        """
        ctx = torch.no_grad() if not self.TRAIN_ENCODER else contextlib.nullcontext()
        with ctx:
            enc = self.model.encode(x)
        fused = self.model.fuse(enc.bands)
        recon = self.model.render(fused, clamp=False)
        out: dict[str, torch.Tensor] = {"recon": recon}
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
        loss = rec
        if self.teacher is not None:
            with torch.no_grad():
                zs = self.teacher(self.model.normalize(x)).float()
                teacher_bands = self.model.band_projector(zs)
            sem = semantic_loss(enc.bands, teacher_bands, self.num_semantic_bands)
            out["semantic"] = sem.detach()
            loss = loss + self.semantic_weight * sem
        out["loss"] = loss
        return out

    def _log_losses(self, prefix: str, values: dict[str, torch.Tensor], batch: dict[str, Any]) -> None:
        logs = {f"{prefix}/{k}": v.detach() for k, v in values.items() if k != "recon" and v.ndim == 0}
        self.log_dict(logs, on_step=True, on_epoch=False, prog_bar=False, batch_size=batch["image"].shape[0])
        self.log(
            f"{prefix}/loss_step",
            values["loss"].detach(),
            prog_bar=True,
            on_step=True,
            on_epoch=False,
            batch_size=batch["image"].shape[0],
        )
        if "skipped" in batch:
            self.log(
                "data/skipped_images",
                batch["skipped"].float().sum(),
                on_step=False,
                on_epoch=True,
                reduce_fx="sum",
                sync_dist=True,
                batch_size=batch["image"].shape[0],
            )

    # ------------------------------------------------------------------ steps
    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        x, target = self._inputs(batch)
        out = self.reconstruction_losses(x, target)
        self._log_losses("train", out, batch)
        self._maybe_log_images(x, target, "train")
        return out["loss"]

    def update_ema(self) -> None:
        """One EMA step towards the current weights (after the batch's optimizer step)."""
        if self.ema is not None:
            self.ema.update(self.model, step=self.global_step)

    def configure_callbacks(self) -> list[pl.Callback]:
        # The EMA step runs in a callback: Lightning runs checkpoint callbacks after all others, so a
        # checkpoint written at the end of a batch holds that batch's EMA (a module hook would run after
        # the checkpoint was written).
        return [EMAUpdate()] if self.ema is not None else []

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        if self._rng_to_restore is not None:  # first batch after a resume: the interrupted run's RNG
            restore_rng_state(self._rng_to_restore)
            self._rng_to_restore = None

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        from torchmetrics.functional.image import peak_signal_noise_ratio

        x, target = self._inputs(batch)
        model = self.export_model()
        with self._eval_mode(model):
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
        if batch_idx == 0:
            self._write_images(x, target, "val")

    # ------------------------------------------------------------------ images
    @contextlib.contextmanager
    def _eval_mode(self, model: nn.Module) -> Iterator[None]:
        was = model.training
        model.eval()
        try:
            with torch.no_grad():
                yield
        finally:
            model.train(was)
            if model is self.model and not self.TRAIN_ENCODER:
                self.model.encoder.eval()

    def setup(self, stage: str) -> None:
        from uae.training.quiet import quiet_lightning

        quiet_lightning()
        if "FSDP" in type(self.trainer.strategy).__name__:
            if self.ema is not None:
                raise ValueError(
                    "EMA needs unsharded weights: set model.ema_decay: null with the FSDP strategy"
                )
            if not self.automatic_optimization:
                raise ValueError(f"{type(self).__name__} does not support FSDP; use strategy: ddp")
        # trainer.log_dir is a collective under DDP: resolve it here, on every rank, never in rank-0-only code.
        self._image_dir = Path(self.trainer.log_dir or self.trainer.default_root_dir) / "images"

    def _maybe_log_images(self, x: torch.Tensor, target: torch.Tensor, tag: str) -> None:
        n = self.log_images_every_n_steps
        if n and self.global_step % n == 0 and self._trainer is not None and self.trainer.is_global_zero:
            self._write_images(x, target, tag)

    @torch.no_grad()
    def image_grid(self, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Grid ``(3, H, W)``: rows are targets, reconstructions, then decodes from bands ``0..k``."""
        from torchvision.utils import make_grid

        from uae.visualize import progressive_decodes

        model = self.export_model()
        x, target = x[: self.num_log_images], target[: self.num_log_images]
        with self._eval_mode(model):
            decodes, _ = progressive_decodes(model, x)  # decodes[:, -1] is the reconstruction
            rows = [target, decodes[:, -1], *decodes[:, :-1].unbind(1)]
        return make_grid(torch.cat(rows).float().cpu().clamp(0, 1), nrow=x.shape[0], padding=1)

    def _write_images(self, x: torch.Tensor, target: torch.Tensor, tag: str) -> None:
        if self._trainer is None or not self.trainer.is_global_zero:
            return
        grid = self.image_grid(x, target)
        name = f"{tag}/reconstructions"
        for lg in self.loggers:
            exp = getattr(lg, "experiment", None)
            if hasattr(lg, "log_image"):  # W&B
                lg.log_image(key=name, images=[grid], step=self.global_step)
            elif exp is not None and hasattr(exp, "add_image"):  # TensorBoard
                exp.add_image(name, grid, self.global_step)
        from torchvision.utils import save_image

        root = getattr(self, "_image_dir", None) or Path(self.trainer.default_root_dir) / "images"
        out = root / f"{tag}_step{self.global_step:07d}.png"
        out.parent.mkdir(parents=True, exist_ok=True)
        save_image(grid, out)

    # ------------------------------------------------------------------ export and checkpoints
    def export_model(self) -> UAE:
        """The model to evaluate and export: the EMA copy when EMA is on, else the trained model."""
        return self.ema.module if self.ema is not None else self.model  # type: ignore[return-value]

    def export_pretrained(self, directory: str | Path, ema: bool = True) -> Path:
        """Write the (EMA) model with ``save_pretrained`` (``config.json`` + ``model.safetensors``).

        Args:
            directory: Output folder (created).
            ema: Export the EMA weights when available (else the raw trained weights).

        Returns:
            The folder.
        """
        model = self.export_model() if ema else self.model
        model = copy.deepcopy(model).cpu().eval()
        directory = Path(directory)
        name = self.export_name or _name_from_dir(directory)
        if name:
            model.config = model.config.replace(name=name)
        save_with_card(model, directory, self.training_card(ema=ema and self.ema is not None))
        logger.info(
            "Exported %s weights to %s", "EMA" if (ema and self.ema is not None) else "model", directory
        )
        return directory

    def training_card(self, ema: bool = True) -> dict[str, str]:
        """Model-card fields (``training``, ``evaluation``, ``encoder_weights``) describing this run."""
        from uae.training.card import training_card

        return training_card(self, ema=ema)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["uae_config"] = self.model.config.to_dict()
        checkpoint["uae_stage"] = self.STAGE
        if self._trainer is not None and self.trainer.training:
            checkpoint["uae_rng"] = rng_state()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # Restored just before the next training batch (noise, DiffAugment, dropout draw from it), so
        # whatever runs in between (sanity checks, dataloader set-up) does not shift it.
        self._rng_to_restore = checkpoint.get("uae_rng")

    def on_train_end(self) -> None:
        if not self.export_dir:
            return
        strategy = self.trainer.strategy
        if "FSDP" in type(strategy).__name__:  # sharded weights: gather the full state dict (collective)
            from uae.training.export import model_from_state_dict

            state = strategy.lightning_module_state_dict()
            if self.trainer.is_global_zero:
                model = model_from_state_dict(self.model.config.to_dict(), state, source="FSDP state dict")
                name = self.export_name or _name_from_dir(Path(self.export_dir))
                if name:
                    model.config = model.config.replace(name=name)
                save_with_card(model, Path(self.export_dir), self.training_card(ema=False))
                logger.info("Exported model weights to %s", self.export_dir)
        elif self.trainer.is_global_zero:
            self.export_pretrained(self.export_dir)


class EMAUpdate(pl.Callback):
    """Updates the module's EMA at the end of every training batch, before checkpoints are written."""

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        pl_module.update_ema()  # type: ignore[operator]


def rng_state() -> dict[str, Any]:
    """The process's random states (torch CPU / CUDA, numpy, ``random``), as tensors and plain values
    (loadable with ``torch.load(weights_only=True)``)."""
    import random

    import numpy as np

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
    import random

    import numpy as np

    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state(
        (n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"])
    )
    random.setstate(state["python"])
    cuda = state.get("cuda")
    if cuda is not None and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda)


def _name_from_dir(directory: Path) -> str | None:
    """Model name from an export folder: ``runs/cats/export`` -> ``cats``, ``my_uae`` -> ``my_uae``."""
    d = directory.expanduser().absolute()
    name = d.parent.name if d.name == "export" else d.name
    return name or None


def save_with_card(model: UAE, directory: Path, card: dict[str, str]) -> None:
    """``save_pretrained`` plus a model card (``README.md``, replaced) filled with ``card``."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "README.md").unlink(missing_ok=True)  # save_pretrained keeps an existing card
    model.save_pretrained(directory, model_card_kwargs=card)


class Stage1DecoderModule(UAETrainingModule):
    """Stage 1: decoder + band modulator only; the encoder is frozen. Reconstruction loss, no noise."""

    STAGE = 1
    TRAIN_ENCODER = False
    DEFAULT_SEMANTIC_WEIGHT = 0.0
    NOISE = False


class Stage2SemanticModule(UAETrainingModule):
    """Stage 2: the full model trains; semantic loss on the lowest ``K_base`` bands + reconstruction."""

    STAGE = 2
    TRAIN_ENCODER = True
    DEFAULT_SEMANTIC_WEIGHT = 0.1
    NOISE = False


class Stage3GANModule(UAETrainingModule):
    """Stage 3: end-to-end with high-band noise injection and a GAN loss (manual optimisation).

    One forward and one backward per step: the generator's adversarial term runs the discriminator
    with *detached* discriminator parameters (``torch.func.functional_call``), the discriminator's
    term runs on detached reconstructions, so each optimizer gets only its own gradients and DDP sees
    a single backward. The generator optimizer is stepped through Lightning (it counts
    ``global_step``); the discriminator optimizer is stepped directly, so ``global_step`` counts
    iterations. Precision: 32 or bf16-mixed (fp16 loss scaling is not supported here).

    Args:
        disc_weight: Base weight of the generator's adversarial loss (RAE: 0.75).
        disc_start: Global step at which the GAN losses (generator and discriminator) start.
        disc_lr: Discriminator learning rate (same warm-up/cosine shape as the generator).
        disc_betas: Discriminator AdamW betas.
        disc_loss: ``"hinge"`` or ``"vanilla"`` discriminator loss.
        gen_loss: ``"vanilla"`` (non-saturating) or ``"hinge"`` generator loss.
        adaptive_weight: Scale the adversarial loss by ``||grad rec|| / ||grad gan||`` at the decoder's last layer.
        diff_aug: DiffAugment policy for real and fake images (``""`` disables).
        disc_weights: DINO weights file for the RAE-style discriminator; ``None``: a PatchGAN.
        disc_arch: timm architecture of the DINO discriminator (DINO-S/8: ``vit_small_patch8_224``).
        disc_img_size: Input size of the DINO discriminator.
        disc_arch_kwargs: Extra timm arguments for the DINO discriminator.
        **kwargs: The common arguments of :class:`UAETrainingModule`.
    """

    STAGE = 3
    TRAIN_ENCODER = True
    DEFAULT_SEMANTIC_WEIGHT = 0.1
    NOISE = True

    def __init__(
        self,
        disc_weight: float = 0.75,
        disc_start: int = 0,
        disc_lr: float = 1e-4,
        disc_betas: tuple[float, float] = (0.5, 0.9),
        disc_loss: str = "hinge",
        gen_loss: str = "vanilla",
        adaptive_weight: bool = True,
        diff_aug: str = "color,translation,cutout",
        disc_weights: str | None = None,
        disc_arch: str = "vit_small_patch8_224",
        disc_img_size: int = 224,
        disc_arch_kwargs: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.save_hyperparameters()
        if disc_loss not in ("hinge", "vanilla") or gen_loss not in ("hinge", "vanilla"):
            raise ValueError(
                f"disc_loss/gen_loss must be 'hinge' or 'vanilla', got {disc_loss!r}, {gen_loss!r}"
            )
        self.automatic_optimization = False
        self.disc_weight, self.disc_start, self.disc_lr = disc_weight, disc_start, disc_lr
        self.disc_betas = tuple(disc_betas)
        self.disc_loss, self.gen_loss = disc_loss, gen_loss
        self.use_adaptive_weight = adaptive_weight
        self.diff_aug = diff_aug
        self.discriminator = build_discriminator(
            disc_weights, arch=disc_arch, img_size=disc_img_size, arch_kwargs=disc_arch_kwargs
        )

    def on_fit_start(self) -> None:
        prec = str(self.trainer.precision)
        if "16" in prec and "bf16" not in prec:
            raise ValueError(f"Stage3GANModule supports precision 32 or bf16-mixed, not {prec!r}")

    def configure_optimizers(self) -> Any:
        g_params = [(n, p) for n, p in self.model.named_parameters() if p.requires_grad]
        d_params = [(n, p) for n, p in self.discriminator.named_parameters() if p.requires_grad]
        opt_g = torch.optim.AdamW(self._param_groups(g_params, self.lr), lr=self.lr, betas=self.betas)
        opt_d = torch.optim.AdamW(
            self._param_groups(d_params, self.disc_lr), lr=self.disc_lr, betas=self.disc_betas
        )
        return [opt_g, opt_d], [self._scheduler(opt_g, self.lr), self._scheduler(opt_d, self.disc_lr)]

    def _disc_params(self) -> list[nn.Parameter]:
        return [p for p in self.discriminator.parameters() if p.requires_grad]

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        opt_g, opt_d = self.optimizers()  # type: ignore[misc]
        sched_g, sched_d = self.lr_schedulers()  # type: ignore[misc]
        x, target = self._inputs(batch)
        out = self.reconstruction_losses(x, target)
        recon = out["recon"]
        gan_on = self.global_step >= self.disc_start
        g_total = out["loss"]
        if gan_on:
            frozen = {n: p.detach() for n, p in self.discriminator.named_parameters()}
            fake_g = torch.func.functional_call(
                self.discriminator, frozen, (diff_augment(recon, self.diff_aug),)
            )
            g_adv = generator_loss(fake_g, self.gen_loss)
            if self.use_adaptive_weight:
                w = adaptive_weight(out["rec"], g_adv, self.model.decoder.pred.weight) * self.disc_weight
            else:
                w = torch.tensor(self.disc_weight, device=recon.device)
            g_total = g_total + w * g_adv
            real = self.discriminator(diff_augment(target, self.diff_aug))
            fake = self.discriminator(diff_augment(recon.detach(), self.diff_aug))
            d_loss = discriminator_loss(real, fake, self.disc_loss)
            out.update(
                gan_g=g_adv.detach(),
                gan_weight=w.detach(),
                disc=d_loss.detach(),
                logits_real=real.detach().mean(),
                logits_fake=fake.detach().mean(),
            )
        else:
            # Zero-weighted use of every trainable discriminator parameter keeps DDP's reducer happy.
            d_loss = sum((p.sum() * 0.0 for p in self._disc_params()), recon.new_zeros(()))
        opt_g.zero_grad(set_to_none=True)
        opt_d.zero_grad(set_to_none=True)
        self.manual_backward(g_total + d_loss)
        if self.grad_clip:
            norm = self._clip(self.trainable_parameters(), self.grad_clip)
            self.log("train/grad_norm", norm, on_step=True)
            if gan_on:
                self._clip(self._disc_params(), self.grad_clip)
        opt_g.step()
        sched_g.step()
        if gan_on:
            opt_d.optimizer.step()  # raw step: global_step counts generator steps only
            sched_d.step()
        out["loss"] = g_total.detach()
        self._log_losses("train", out, batch)
        self._maybe_log_images(x, target, "train")
        return g_total.detach()


__all__ = [
    "Stage1DecoderModule",
    "Stage2SemanticModule",
    "Stage3GANModule",
    "UAETrainingModule",
    "build_model",
]
