"""Model card of a trained / fine-tuned export: where it started, on what data, how long, which recipe.

The card names no local path (a folder is named by its last component); the model it started from is its
``base_model`` when that is a Hub repo id, ImageNet is its dataset when it trained on ImageNet, and the
last validation PSNR goes into ``model-index`` as uae's own measurement (:mod:`uae.models.card`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning.pytorch as pl

from uae.models.card import IMAGENET_1K, display_source, eval_results

#: The data module's ``dataset`` -> Hub dataset id (only where the Hub has the dataset itself).
HUB_DATASETS = {"imagenet": IMAGENET_1K}


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
    name = Path(dm.root).name or str(dm.root)
    where = f"folder `{name}`" if dm.dataset == "folder" else f"{dm.dataset} (folder `{name}`)"
    line = f"* **Data:** {where}: {n_train:,} training images"
    line += f", {n_val:,} validation images" if n_val else ", no validation split"
    if getattr(dm, "val_root", None):
        line += f" (from folder `{Path(dm.val_root).name}`)"
    if getattr(dm, "train_repeats", 1) > 1:
        line += f"; {dm.train_repeats} passes per epoch"
    return [line + "."]


def _registered_start(start: str) -> dict[str, Any]:
    """Card metadata of a fine-tune that started from a registered name (``uae_demo``,
    ``uae_base_p14_dinov2.authors_v2``): the weights' Hub repo as ``base_model`` and their license (a
    fine-tune of released weights is under the release's terms). Empty for anything else."""
    from uae.models.pretrained import get_pretrained_cfg
    from uae.models.registry import is_registered_name

    if not is_registered_name(start):
        return {}
    cfg = get_pretrained_cfg(start)
    if cfg is None:
        return {}
    out: dict[str, Any] = {"license": cfg.license} if cfg.license else {}
    if cfg.hf_hub_id:
        out["base_model"] = cfg.hf_hub_id
    return out


def training_card(module: pl.LightningModule, ema: bool = True) -> dict[str, Any]:
    """Model-card fields for :meth:`uae.UAE.generate_model_card` describing the training run.

    Args:
        module: The stage module (a :class:`uae.training.UAETrainingModule`) after (or during) ``fit``.
        ema: The export holds the EMA weights.

    Returns:
        Text: ``training``, ``evaluation`` (markdown), ``encoder_init``; metadata: ``base_model`` (the
        start, when fine-tuned), ``encoder_pretrained``, ``datasets``, ``results`` (the last validation
        PSNR, measured by uae).
    """
    hp = module.hparams
    cls = type(module)
    start = hp.get("pretrained")
    encoder_frozen = not cls.TRAIN_ENCODER
    meta: dict[str, Any] = {"encoder_pretrained": False}
    if start:
        shown = display_source(start)
        head = f"Fine-tuned with `uae fit` from **`{shown}`**"
        init = f"{shown}" + (" (frozen)" if encoder_frozen else " (fine-tuned)")
        meta["base_model"] = str(start)  # kept only when it is a Hub repo id
        meta.update(_registered_start(str(start)))
    else:
        enc = hp.get("encoder_weights")  # what build_model loaded (the config's default is not loaded)
        head = f"Trained with `uae fit` from the registered model `{hp.get('model_name')}`"
        init = display_source(enc) if enc else "random init"
        if enc:
            head += f" with encoder weights `{display_source(enc)}`"
            meta["encoder_pretrained"] = True
            meta["base_model"] = str(enc)  # a timm Hub id such as timm/vit_base_patch14_reg4_dinov2.lvd142m
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
    dm = getattr(trainer, "datamodule", None) if trainer is not None else None
    if dm is not None and getattr(dm, "dataset", None) in HUB_DATASETS:
        meta["datasets"] = [HUB_DATASETS[dm.dataset]]
    if "val/psnr" in metrics:
        n_val = len(getattr(dm, "val_set", None) or [])
        psnr = float(metrics["val/psnr"])
        evaluation = (
            f"Last validation during training (held-out split of {n_val} images, or the first "
            f"`limit_val_batches` of it; {'EMA' if ema and decay else 'raw'} weights): "
            f"PSNR {psnr:.2f} dB"
            + (f", L1 {float(metrics['val/l1']):.4f}" if "val/l1" in metrics else "")
            + ". Not a benchmark evaluation: see `uae eval`."
        )
        split = ("imagefolder", f"held-out split of the training data ({n_val} images)", "validation")
        meta["results"] = eval_results({"val.psnr": psnr}, dataset=split)
    return {"training": "\n".join(lines), "evaluation": evaluation, "encoder_init": init, **meta}


__all__ = ["training_card"]
