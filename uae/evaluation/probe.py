"""Linear probe on frozen UAE features (band 0, any band, all bands, or the raw encoder latent).

Protocol (MAE / DINO style): features of a frozen backbone are extracted once (center crop, no
augmentation) and cached to disk as safetensors; a linear head ``BatchNorm1d(affine=False) -> Linear``
is trained on them with SGD (momentum 0.9) or LARS, linear warm-up then cosine decay, and evaluated
with top-1 / top-5 accuracy on the validation split.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import lightning as L
import torch
from safetensors import SafetensorError, safe_open
from torch import nn
from torch.utils.data import DataLoader, Dataset, TensorDataset

from uae.evaluation.common import batch_images, iterate, make_loader
from uae.files import save_safetensors
from uae.utils import maybe_autocast

logger = logging.getLogger(__name__)

Band = int | str


def parse_band(value: str | int) -> Band:
    """``"0"`` -> 0, ``"all"`` / ``"latent"`` unchanged (``--band``)."""
    if isinstance(value, int):
        return value
    v = value.strip().lower()
    if v in ("all", "latent"):
        return v
    try:
        return int(v)
    except ValueError:
        raise ValueError(f"--band must be an integer band index, 'all' or 'latent'; got {value!r}") from None


def parse_pool(value: str | int) -> str | int:
    """``"mean"`` or a positive grid side (``--pool``)."""
    if str(value).strip().lower() == "mean":
        return "mean"
    try:
        g = int(value)
    except ValueError:
        raise ValueError(f"--pool must be 'mean' or a grid side such as 2 or 4; got {value!r}") from None
    if g < 1:
        raise ValueError(f"--pool grid side must be >= 1, got {g}")
    return g


def feature_fingerprint(**items: Any) -> str:
    """A short stable hash of what determines a feature cache (model, band, files, sizes, filter)."""
    blob = json.dumps(items, sort_keys=True, default=str).encode()
    return hashlib.sha1(blob).hexdigest()[:16]


@torch.no_grad()
def extract_features(
    model: nn.Module,
    dataset: Dataset,
    band: Band = 0,
    batch_size: int = 64,
    num_workers: int = 0,
    device: str | torch.device = "cpu",
    input_filter: Callable[[torch.Tensor], torch.Tensor] | None = None,
    cache_path: str | os.PathLike | None = None,
    fingerprint: str = "",
    progress: bool = True,
    amp: bool = True,
    pool: str | int = "mean",
    skip_log: Any = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Pooled features and labels of a dataset, from the cache when it matches.

    Note that with mean pooling band 0 and the raw latent give *identical* features: every higher band
    has zero spatial mean (the DC term lies in band 0). Use ``pool=g`` (average-pool the grid to
    ``g x g`` cells and flatten, ``D = C * g * g``) to probe the spatial content of the bands.

    Args:
        model: A :class:`uae.UAE`; ``model.features(x, band=band, pool=...)`` is used.
        dataset: Dict samples with ``"image"`` and ``"label"``.
        band: Band index, ``"all"`` (``K*C`` concatenated) or ``"latent"`` (raw encoder latent).
        batch_size: Extraction batch size.
        num_workers: Loader workers.
        device: Device.
        input_filter: Optional image transform (e.g. low-pass) applied before the model.
        cache_path: A ``.safetensors`` file: read when its fingerprint matches, else written.
        fingerprint: Identifies the extraction (see :func:`feature_fingerprint`).
        progress: tqdm bar.
        amp: Autocast on CUDA.
        pool: ``"mean"`` (``D = C``) or an int ``g`` (adaptive average pool to ``g x g``, ``D = C g^2``).
        skip_log: A :class:`uae.data.datasets.SkipLog` that receives the images used and the files
            skipped (also from the cache, whose metadata records them).

    Returns:
        ``features (N, D)`` float32 and ``labels (N,)`` int64 of the readable images, in dataset
        order (unreadable files are skipped, never replaced).
    """
    from uae.data.datasets import SkipLog

    skip_log = skip_log if skip_log is not None else SkipLog()
    if cache_path is not None and Path(cache_path).is_file():
        try:
            with safe_open(str(cache_path), framework="pt") as f:
                meta = f.metadata() or {}
                if meta.get("fingerprint") == fingerprint:
                    logger.info("Using cached features %s", cache_path)
                    feats, labels = f.get_tensor("features"), f.get_tensor("labels")
                    skip_log.used += len(feats)
                    for path, why in json.loads(meta.get("skipped_files", "{}")).items():
                        skip_log.skipped.setdefault(path, why)
                    return feats, labels
            logger.info("Feature cache %s is stale (different fingerprint); recomputing", cache_path)
        except SafetensorError as e:
            logger.warning("Feature cache %s is unreadable (%s); recomputing", cache_path, e)
    device = torch.device(device)
    loader = make_loader(dataset, batch_size, num_workers=num_workers)
    n = len(dataset)
    features: torch.Tensor | None = None  # preallocated (N, D) once D is known: no 2x peak from concatenation
    label_t = torch.empty(n, dtype=torch.long)
    pos = 0
    local = SkipLog()
    for batch in iterate(loader, f"features band={band}", progress):
        if not local.update(batch):
            continue
        x, _ = batch_images(batch, device)
        if input_filter is not None:
            x = input_filter(x).clamp(0.0, 1.0)
        with maybe_autocast(device, enabled=amp):
            if pool == "mean":
                f = model.features(x, band=band, pool="mean")
            else:
                grid = model.features(x, band=band, pool=None).float()
                f = nn.functional.adaptive_avg_pool2d(grid, int(pool)).flatten(1)
        if features is None:
            features = torch.empty(n, f.shape[1], dtype=torch.float32)
        b = f.shape[0]
        features[pos : pos + b] = f.float().cpu()
        label_t[pos : pos + b] = torch.as_tensor(batch["label"]).long()
        pos += b
    if features is None:
        raise ValueError(f"none of the {n} images could be read ({len(local.skipped)} skipped)")
    if pos + len(local.skipped) != n:
        raise RuntimeError(f"feature extraction produced {pos} of {n} samples ({len(local.skipped)} skipped)")
    features, label_t = features[:pos].contiguous(), label_t[:pos].contiguous()
    skip_log.used += local.used
    for path, why in local.skipped.items():
        skip_log.skipped.setdefault(path, why)
    if cache_path is not None:
        save_safetensors(
            {"features": features, "labels": label_t},
            cache_path,
            metadata={
                "fingerprint": fingerprint,
                "band": str(band),
                "skipped_files": json.dumps(local.skipped),
            },
        )
    return features, label_t


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
            raise ValueError(f"--optimizer must be 'sgd' or 'lars', got {optimizer!r}")
        if num_classes < 2:
            raise ValueError(f"a linear probe needs at least 2 classes, got {num_classes}")
        self.save_hyperparameters()
        self.head = nn.Sequential(
            nn.BatchNorm1d(feature_dim, affine=False, eps=1e-6), nn.Linear(feature_dim, num_classes)
        )
        nn.init.trunc_normal_(self.head[1].weight, std=0.01)
        nn.init.zeros_(self.head[1].bias)
        from torchmetrics.classification import MulticlassAccuracy

        k5 = min(5, num_classes)
        self.val_top1 = MulticlassAccuracy(num_classes, top_k=1, average="micro")
        self.val_top5 = MulticlassAccuracy(num_classes, top_k=k5, average="micro")
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
        self.val_top5.update(logits, y)
        self.log("val/loss", nn.functional.cross_entropy(logits, y), prog_bar=True)

    def on_validation_epoch_end(self) -> None:
        self.log("val/top1", self.val_top1.compute(), prog_bar=True)
        self.log("val/top5", self.val_top5.compute())
        self.val_top1.reset()
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
    """Top-1 / top-5 accuracy (fractions) of a trained head on features ``(N, D)``."""
    from torchmetrics.classification import MulticlassAccuracy

    head = head.eval().cpu()
    n_cls = head.hparams.num_classes
    top1 = MulticlassAccuracy(n_cls, top_k=1, average="micro")
    top5 = MulticlassAccuracy(n_cls, top_k=min(5, n_cls), average="micro")
    for i in range(0, len(features), batch_size):
        logits = head(features[i : i + batch_size].float())
        top1.update(logits, labels[i : i + batch_size])
        top5.update(logits, labels[i : i + batch_size])
    return {"top1": float(top1.compute()), "top5": float(top5.compute())}


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
        ``(head, results)`` with ``top1``, ``top5`` (val, fractions), ``train_top1`` and sizes.
    """
    keep = train_labels >= 0
    train_features, train_labels = train_features[keep], train_labels[keep]
    vkeep = val_labels >= 0
    val_features, val_labels = val_features[vkeep], val_labels[vkeep]
    if len(train_features) == 0 or len(val_features) == 0:
        raise ValueError("the linear probe needs labelled train and val images (class sub-folders)")
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
    trainer.fit(head, train_loader, val_loader)
    res = evaluate_head(head, val_features, val_labels)
    train_res = evaluate_head(head, train_features, train_labels)
    results = {
        "top1": res["top1"],
        "top5": res["top5"],
        "top5_k": min(5, num_classes),
        "train_top1": train_res["top1"],
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
        raise ValueError(f"--val-fraction must be in (0, 1), got {val_fraction}")
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
