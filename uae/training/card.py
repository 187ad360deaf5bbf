"""Model card of a trained / fine-tuned export: where it started, on what data, how long, which recipe."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning.pytorch as pl


def _fmt(v: Any) -> str:
    return f"{v:g}" if isinstance(v, float) else str(v)


def class_path(cls: type) -> str:
    """The class path a recipe names: ``uae.training.<Name>`` for the stages (the package exports them, in
    whichever file they live), ``module.Name`` for any other class."""
    if cls.__module__.startswith("uae.training."):
        return f"uae.training.{cls.__name__}"
    return f"{cls.__module__}.{cls.__qualname__}"


def _data_lines(module: pl.LightningModule) -> list[str]:
    trainer = module._trainer
    dm = getattr(trainer, "datamodule", None) if trainer is not None else None
    if dm is None or getattr(dm, "train_set", None) is None:
        return ["* **Data:** not recorded (trained without a `UAEDataModule`)."]
    n_train = len(dm.train_set)
    n_val = len(dm.val_set) if getattr(dm, "val_set", None) is not None else 0
    where = f"folder `{dm.root}`" if dm.dataset == "folder" else f"{dm.dataset} at `{dm.root}`"
    line = f"* **Data:** {where}: {n_train:,} training images"
    line += f", {n_val:,} validation images" if n_val else ", no validation split"
    if getattr(dm, "val_root", None):
        line += f" (from `{dm.val_root}`)"
    if getattr(dm, "train_repeats", 1) > 1:
        line += f"; {dm.train_repeats} passes per epoch"
    return [line + "."]


def training_card(module: pl.LightningModule, ema: bool = True) -> dict[str, str]:
    """Model-card fields for :meth:`uae.UAE.generate_model_card` describing the training run.

    Args:
        module: The stage module (a :class:`uae.training.UAETrainingModule`) after (or during) ``fit``.
        ema: The export holds the EMA weights.

    Returns:
        ``{"training": markdown, "evaluation": markdown, "encoder_weights": text}``.
    """
    hp = module.hparams
    cls = type(module)
    start = hp.get("pretrained")
    encoder_frozen = not cls.TRAIN_ENCODER
    if start:
        head = f"Fine-tuned with `uae fit` from **`{start}`**"
        init = f"{start}" + (" (frozen)" if encoder_frozen else " (fine-tuned)")
    else:
        enc = hp.get("encoder_weights") or module.model.config.encoder_weights
        head = f"Trained with `uae fit` from the registered model `{hp.get('model_name')}`"
        init = f"{enc}" if enc else "random init"
        if enc:
            head += f" with encoder weights `{enc}`"
    stage = f"stage {cls.STAGE} (`{class_path(cls)}`)"
    head += f", {stage}"
    if module.recipe:
        head += ", recipe " + ", ".join(f"`{Path(r).name}`" for r in module.recipe)
    lines = [head + ".", ""]
    lines += _data_lines(module)
    trainer = module._trainer
    if trainer is not None:
        batch = getattr(getattr(trainer, "datamodule", None), "batch_size", None)
        world = int(trainer.world_size) * int(getattr(trainer, "accumulate_grad_batches", 1) or 1)
        steps = f"* **Steps:** {trainer.global_step:,} optimizer steps"
        steps += f" ({trainer.current_epoch + (1 if trainer.global_step else 0)} epoch(s) started)"
        if batch:
            steps += f", global batch {batch * world}"
        steps += f", precision {trainer.precision}."
        lines.append(steps)
    losses = [f"L1 x {_fmt(hp.get('l1_weight'))}"]
    for key, name in (("l2_weight", "L2"), ("lpips_weight", "LPIPS")):
        if hp.get(key):
            losses.append(f"{name} x {_fmt(hp[key])}")
    if module.semantic_weight:
        losses.append(f"band semantic x {_fmt(module.semantic_weight)}")
    if cls.STAGE == 3:
        losses.append(f"GAN x {_fmt(hp.get('disc_weight'))} from step {hp.get('disc_start')}")
    lines.append(
        f"* **Optimisation:** AdamW lr {_fmt(hp.get('lr'))} -> {_fmt(hp.get('min_lr'))} (cosine, "
        f"{module.warmup()} warm-up steps); loss {' + '.join(losses)}; "
        + ("encoder frozen." if encoder_frozen else "encoder trained.")
    )
    decay = hp.get("ema_decay")
    lines.append(f"* **Weights:** {'EMA (decay ' + _fmt(decay) + ')' if ema and decay else 'raw (no EMA)'}.")

    evaluation = "Not evaluated yet."
    metrics = dict(trainer.callback_metrics) if trainer is not None else {}
    if "val/psnr" in metrics:
        n_val = len(getattr(getattr(trainer, "datamodule", None), "val_set", None) or [])
        evaluation = (
            f"Last validation during training (held-out split of {n_val} images, or the first "
            f"`limit_val_batches` of it; {'EMA' if ema and decay else 'raw'} weights): "
            f"PSNR {float(metrics['val/psnr']):.2f} dB, L1 {float(metrics['val/l1']):.4f}. "
            "Not a benchmark evaluation: see `uae eval`."
        )
    return {"training": "\n".join(lines), "evaluation": evaluation, "encoder_weights": init}


__all__ = ["training_card"]
