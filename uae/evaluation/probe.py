"""Linear probe on frozen UAE features (band 0, any band, all bands, or the raw encoder latent).

Protocol (MAE / DINO style): features of a frozen backbone are extracted once (center crop, no
augmentation) and cached to disk as safetensors; a linear head ``BatchNorm1d(affine=False) -> Linear``
is trained on them with SGD (momentum 0.9) or LARS, linear warm-up then cosine decay, and evaluated
with top-1 accuracy on the validation split (top-5 only with more than 5 classes), next to the chance
level (``1 / num_classes``) and the majority-class rate (always answering the most frequent training
class). Lightning trains the head quietly: no tips or device lines (its warnings still show).
"""

from __future__ import annotations

import contextlib
import logging
import math
import warnings
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import lightning as L
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, Subset, TensorDataset

from uae.data.transforms import resolve_data_config
from uae.errors import InputError, MissingFileError
from uae.evaluation.common import images_summary, open_dataset
from uae.evaluation.features import Band, cached_features
from uae.evaluation.options import ProbeOptions, RunOptions

logger = logging.getLogger(__name__)

#: Top-k accuracy reported besides top-1, only when there are more than ``TOP_K`` classes.
TOP_K = 5
#: Lightning's loggers of advisory lines ("GPU available", tips, "`Trainer.fit` stopped").
LIGHTNING_INFO_LOGGERS = ("lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.rank_zero")
#: Warnings of Lightning on recent torch that are about Lightning itself, not the probe.
LIGHTNING_NOISE = (r"`isinstance\(treespec, LeafSpec\)` is deprecated",)


def top_k(num_classes: int) -> int | None:
    """The ``k`` of the top-k accuracy worth reporting: :data:`TOP_K` when ``k < num_classes``, else ``None``
    (with ``k >= num_classes`` every prediction is right)."""
    return TOP_K if TOP_K < num_classes else None


@contextlib.contextmanager
def quiet_trainer() -> Iterator[None]:
    """Run a Lightning ``Trainer`` without its info lines (device availability, tips, why ``fit`` stopped)
    and without :data:`LIGHTNING_NOISE`; its warnings and errors still show."""
    loggers = [logging.getLogger(name) for name in LIGHTNING_INFO_LOGGERS]
    levels = [log.level for log in loggers]
    for log in loggers:
        log.setLevel(max(log.getEffectiveLevel(), logging.WARNING))
    try:
        with warnings.catch_warnings():
            for pattern in LIGHTNING_NOISE:
                warnings.filterwarnings("ignore", message=pattern)
            yield
    finally:
        for log, level in zip(loggers, levels):
            log.setLevel(level)


def parse_band(value: str | int) -> Band:
    """``"0"`` -> 0, ``"all"`` / ``"latent"`` unchanged.

    Raises:
        InputError: Neither an integer nor one of the two names.
    """
    if isinstance(value, int):
        return value
    v = value.strip().lower()
    if v in ("all", "latent"):
        return v
    try:
        return int(v)
    except ValueError:
        raise InputError(
            f"band must be an integer band index, 'all' or 'latent'; got {value!r}", param="band"
        ) from None


class LinearProbe(L.LightningModule):
    """``BatchNorm1d(affine=False) -> Linear`` head on frozen features.

    Args:
        feature_dim: ``D``.
        num_classes: Number of classes.
        optimizer: ``"sgd"`` (momentum 0.9) or ``"lars"`` (timm's LARS, trust ratio on the weight).
        lr: Peak learning rate.
        weight_decay: Weight decay (0 in the MAE/DINO protocols).
        warmup_epochs: Linear warm-up epochs before the cosine decay.
        max_epochs: Total epochs (for the schedule).
        steps_per_epoch: Optimiser steps per epoch (for the schedule).
    """

    def __init__(
        self,
        feature_dim: int,
        num_classes: int,
        optimizer: str = "sgd",
        lr: float = 0.1,
        weight_decay: float = 0.0,
        warmup_epochs: int = 0,
        max_epochs: int = 90,
        steps_per_epoch: int = 1,
    ) -> None:
        super().__init__()
        if optimizer not in ("sgd", "lars"):
            raise InputError(f"optimizer must be 'sgd' or 'lars', got {optimizer!r}", param="optimizer")
        if num_classes < 2:
            raise InputError(f"a linear probe needs at least 2 classes, got {num_classes}")
        self.save_hyperparameters()
        self.head = nn.Sequential(
            nn.BatchNorm1d(feature_dim, affine=False, eps=1e-6), nn.Linear(feature_dim, num_classes)
        )
        nn.init.trunc_normal_(self.head[1].weight, std=0.01)
        nn.init.zeros_(self.head[1].bias)
        from torchmetrics.classification import MulticlassAccuracy

        k = top_k(num_classes)
        self.val_top1 = MulticlassAccuracy(num_classes, top_k=1, average="micro")
        self.val_top5 = MulticlassAccuracy(num_classes, top_k=k, average="micro") if k else None
        self.train_top1 = MulticlassAccuracy(num_classes, top_k=1, average="micro")

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        """``(B, D)`` features -> ``(B, num_classes)`` logits."""
        return self.head(feats)

    def training_step(self, batch: Sequence[torch.Tensor], batch_idx: int) -> torch.Tensor:
        x, y = batch
        logits = self(x)
        loss = nn.functional.cross_entropy(logits, y)
        self.train_top1.update(logits.detach(), y)
        self.log("train/loss", loss, prog_bar=True)
        return loss

    def on_train_epoch_end(self) -> None:
        self.log("train/top1", self.train_top1.compute())
        self.train_top1.reset()

    def validation_step(self, batch: Sequence[torch.Tensor], batch_idx: int) -> None:
        x, y = batch
        logits = self(x)
        self.val_top1.update(logits, y)
        if self.val_top5 is not None:
            self.val_top5.update(logits, y)
        self.log("val/loss", nn.functional.cross_entropy(logits, y), prog_bar=True)

    def on_validation_epoch_end(self) -> None:
        self.log("val/top1", self.val_top1.compute(), prog_bar=True)
        self.val_top1.reset()
        if self.val_top5 is not None:
            self.log(f"val/top{TOP_K}", self.val_top5.compute())
            self.val_top5.reset()

    def configure_optimizers(self) -> dict[str, Any]:
        hp = self.hparams
        weight, bias = self.head[1].weight, self.head[1].bias
        if hp.optimizer == "lars":
            from timm.optim import Lars

            groups = [
                {"params": [weight], "weight_decay": hp.weight_decay, "always_adapt": True},
                {"params": [bias], "weight_decay": 0.0, "always_adapt": False},
            ]
            opt: torch.optim.Optimizer = Lars(groups, lr=hp.lr, momentum=0.9)
        else:
            groups = [
                {"params": [weight], "weight_decay": hp.weight_decay},
                {"params": [bias], "weight_decay": 0.0},
            ]
            opt = torch.optim.SGD(groups, lr=hp.lr, momentum=0.9)
        total = max(1, hp.max_epochs * hp.steps_per_epoch)
        warmup = min(total - 1, hp.warmup_epochs * hp.steps_per_epoch)

        def schedule(step: int) -> float:
            if step < warmup:
                return (step + 1) / warmup
            t = (step - warmup) / max(1, total - warmup)
            return 0.5 * (1.0 + math.cos(math.pi * min(1.0, t)))

        sched = torch.optim.lr_scheduler.LambdaLR(opt, schedule)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}


@torch.no_grad()
def evaluate_head(
    head: LinearProbe, features: torch.Tensor, labels: torch.Tensor, batch_size: int = 1024
) -> dict[str, float]:
    """Top-1 and top-5 accuracy (fractions) of a trained head on features ``(N, D)``; ``top5`` is ``None``
    with 5 classes or fewer (see :func:`top_k`)."""
    from torchmetrics.classification import MulticlassAccuracy

    head = head.eval().cpu()
    n_cls = head.hparams.num_classes
    k = top_k(n_cls)
    top1 = MulticlassAccuracy(n_cls, top_k=1, average="micro")
    top5 = MulticlassAccuracy(n_cls, top_k=k, average="micro") if k else None
    for i in range(0, len(features), batch_size):
        logits = head(features[i : i + batch_size].float())
        top1.update(logits, labels[i : i + batch_size])
        if top5 is not None:
            top5.update(logits, labels[i : i + batch_size])
    return {"top1": float(top1.compute()), "top5": None if top5 is None else float(top5.compute())}


def train_probe(
    train_features: torch.Tensor,
    train_labels: torch.Tensor,
    val_features: torch.Tensor,
    val_labels: torch.Tensor,
    num_classes: int | None = None,
    epochs: int = 90,
    batch_size: int = 256,
    optimizer: str = "sgd",
    lr: float | None = None,
    weight_decay: float = 0.0,
    warmup_epochs: int = 0,
    seed: int = 0,
    progress: bool = True,
    accelerator: str = "auto",
) -> tuple[LinearProbe, dict[str, Any]]:
    """Train a linear head on cached features and evaluate it.

    Args:
        train_features: ``(N, D)``; train_labels: ``(N,)`` (labels < 0 are dropped).
        val_features: ``(M, D)``; val_labels: ``(M,)``.
        num_classes: Defaults to ``max(label) + 1``.
        epochs: Training epochs.
        batch_size: Head batch size.
        optimizer: ``"sgd"`` or ``"lars"``.
        lr: Peak learning rate; default ``0.1 * batch_size / 256`` (LARS) or ``0.1`` (SGD, features are batch-normed).
        weight_decay: Weight decay.
        warmup_epochs: Linear warm-up epochs.
        seed: Seed of the head initialisation and shuffling.
        progress: Lightning progress bar.
        accelerator: Lightning accelerator.

    Returns:
        ``(head, results)`` with ``top1``, ``top5`` (val, fractions; ``top5`` is ``None`` with 5 classes or
        fewer), ``train_top1``, ``chance`` (``1 / num_classes``), ``majority_rate`` (val accuracy of always
        answering ``majority_class``, the most frequent training label) and sizes.
    """
    keep = train_labels >= 0
    train_features, train_labels = train_features[keep], train_labels[keep]
    vkeep = val_labels >= 0
    val_features, val_labels = val_features[vkeep], val_labels[vkeep]
    if len(train_features) == 0 or len(val_features) == 0:
        raise InputError("the linear probe needs labelled train and val images (class sub-folders)")
    if num_classes is None:
        num_classes = int(max(train_labels.max(), val_labels.max())) + 1
    if lr is None:
        lr = 0.1 * batch_size / 256 if optimizer == "lars" else 0.1
    L.seed_everything(seed, verbose=False)
    bs = min(batch_size, len(train_features))
    train_loader = DataLoader(
        TensorDataset(train_features, train_labels),
        batch_size=bs,
        shuffle=True,
        drop_last=len(train_features) > bs,
    )
    val_loader = DataLoader(TensorDataset(val_features, val_labels), batch_size=max(bs, 256))
    head = LinearProbe(
        train_features.shape[1],
        num_classes,
        optimizer=optimizer,
        lr=lr,
        weight_decay=weight_decay,
        warmup_epochs=warmup_epochs,
        max_epochs=epochs,
        steps_per_epoch=len(train_loader),
    )
    with quiet_trainer():
        trainer = L.Trainer(
            max_epochs=epochs,
            accelerator=accelerator,
            devices=1,
            logger=False,
            enable_checkpointing=False,
            enable_progress_bar=progress,
            enable_model_summary=False,
            num_sanity_val_steps=0,
            check_val_every_n_epoch=max(1, epochs),
        )
    with quiet_trainer():
        trainer.fit(head, train_loader, val_loader)
    res = evaluate_head(head, val_features, val_labels)
    train_res = evaluate_head(head, train_features, train_labels)
    majority = int(torch.bincount(train_labels.long(), minlength=num_classes).argmax())
    results = {
        "top1": res["top1"],
        "top5": res["top5"],
        "top5_k": top_k(num_classes),
        "train_top1": train_res["top1"],
        "majority_class": majority,
        "majority_rate": float((val_labels == majority).float().mean()),
        "num_train": len(train_features),
        "num_val": len(val_features),
        "num_classes": num_classes,
        "feature_dim": int(train_features.shape[1]),
        "chance": 1.0 / num_classes,
        "epochs": epochs,
        "optimizer": optimizer,
        "lr": lr,
        "batch_size": bs,
    }
    return head, results


def split_indices(labels: Sequence[int], val_fraction: float, seed: int = 0) -> tuple[list[int], list[int]]:
    """Stratified deterministic split of one labelled folder into train / val indices.

    Every class keeps at least one train image and (when it has 2+) one val image.
    """
    if not 0 < val_fraction < 1:
        raise InputError(f"val_fraction must be in (0, 1), got {val_fraction}", param="val_fraction")
    g = torch.Generator().manual_seed(seed)
    by_class: dict[int, list[int]] = {}
    for i, y in enumerate(labels):
        by_class.setdefault(int(y), []).append(i)
    train, val = [], []
    for _, idx in sorted(by_class.items()):
        perm = [idx[j] for j in torch.randperm(len(idx), generator=g).tolist()]
        n_val = min(len(perm) - 1, max(1, round(len(perm) * val_fraction))) if len(perm) > 1 else 0
        val += perm[:n_val]
        train += perm[n_val:]
    return sorted(train), sorted(val)


# ------------------------------------------------------------------------------ the probe of a dataset
def probe_datasets(
    data: str,
    img_size: int,
    *,
    probe: ProbeOptions,
    options: RunOptions,
    data_config: Mapping[str, Any] | None = None,
) -> tuple[Dataset, Dataset, list[str]]:
    """Train and val datasets of the probe and the class names.

    Images are read with ``data_config`` (the model's, :func:`uae.data.resolve_data_config`) when given,
    else with uae's centre crop.

    ``data="imagenet"`` reads ``train/`` and ``val/`` under ``options.data_root``; otherwise ``data`` is
    the labelled training folder (or a named split) and the validation images come from
    ``probe.val_data`` or, without it, a stratified split of ``data`` (``probe.val_fraction``).

    Raises:
        MissingFileError: ``imagenet`` without ``data_root``, or a folder that does not exist.
    """
    if data == "imagenet" and not options.data_root:
        raise MissingFileError(
            "imagenet needs data_root (the folder holding train/ and val/)", param="data_root"
        )
    train_data = "imagenet-train" if data == "imagenet" else data
    val_data = "imagenet-val" if data == "imagenet" else probe.val_data
    train, _ = open_dataset(train_data, img_size, options=options, labels=True, data_config=data_config)
    if val_data is not None:
        val, _ = open_dataset(
            val_data, img_size, options=options, classes=train.classes, data_config=data_config
        )
        return train, val, train.classes
    tr, va = split_indices(train.targets, probe.val_fraction, seed=probe.seed)
    return Subset(train, tr), Subset(train, va), train.classes


def fit_probe(
    model: nn.Module,
    datasets: tuple[Dataset, Dataset],
    band: Band,
    *,
    num_classes: int,
    probe: ProbeOptions,
    options: RunOptions,
    tag: str = "probe",
    logs: Sequence[Any] | None = None,
) -> tuple[LinearProbe, dict[str, Any]]:
    """Cached features of ``datasets`` (train, val) for ``band``, then the linear head trained on them.

    Args:
        model: A :class:`uae.UAE` (eval mode).
        datasets: ``(train, val)`` labelled datasets.
        band: Band index, ``"all"`` or ``"latent"``.
        num_classes: Number of classes.
        probe: The protocol (head training, pooling, ``cache_dir``).
        options: Batch size, workers, autocast, progress bars.
        tag: Prefix of the cache files.
        logs: Optional ``(train, val)`` SkipLogs that receive the images used and skipped.

    Returns:
        ``(head, results)`` of :func:`train_probe`.
    """
    (xtr, ytr), (xva, yva) = cached_features(
        model,
        datasets,
        band,
        options=options,
        cache_dir=probe.cache_dir,
        tag=tag,
        pool=probe.pool,
        logs=logs,
    )
    return train_probe(
        xtr,
        ytr,
        xva,
        yva,
        num_classes=num_classes,
        epochs=probe.epochs,
        batch_size=probe.head_batch_size,
        optimizer=probe.optimizer,
        lr=probe.lr,
        weight_decay=probe.weight_decay,
        warmup_epochs=probe.warmup_epochs,
        seed=probe.seed,
        progress=options.progress,
    )


def linear_probe(
    model: nn.Module,
    data: str,
    *,
    bands: Sequence[Band | str] = (0,),
    probe: ProbeOptions | None = None,
    options: RunOptions | None = None,
) -> dict[str, Any]:
    """Linear-probe accuracy of frozen band features on a labelled dataset, one head per band.

    Args:
        model: A :class:`uae.UAE` (e.g. from :func:`uae.evaluation.common.prepare_model`).
        data: A labelled folder (class sub-folders), ``"imagenet"`` (``train/`` + ``val/`` under
            ``options.data_root``) or a named split.
        bands: Band indices, ``"all"`` (bands concatenated) or ``"latent"`` (the raw encoder latent).
        probe: The protocol: head training, validation split, pooling, feature cache (default:
            :class:`~uae.evaluation.options.ProbeOptions`'s).
        options: How images are read and run (default: :class:`~uae.evaluation.options.RunOptions`'s).

    Returns:
        ``{"data", "classes", "bands": {band: results of train_probe}, "images": {"train", "val"}}``
        (images used and skipped, counted once per file).
    """
    from uae.data.datasets import SkipLog

    probe = probe or ProbeOptions()
    options = options or RunOptions()
    parsed = [parse_band(b) for b in bands]
    train_ds, val_ds, classes = probe_datasets(
        data, model.config.img_size, probe=probe, options=options, data_config=resolve_data_config(model)
    )
    results: dict[str, Any] = {"data": data, "classes": classes, "bands": {}}
    for band in parsed:
        logs = (SkipLog(), SkipLog())
        _, res = fit_probe(
            model, (train_ds, val_ds), band, num_classes=len(classes), probe=probe, options=options, logs=logs
        )
        results["bands"][str(band)] = res
        # The same files for every band: keep one count (of the last band's pass).
        results["images"] = {"train": images_summary(logs[0]), "val": images_summary(logs[1])}
    return results
