"""Frozen features of a dataset for the linear probe, extracted once and cached as safetensors.

A cache file holds ``features (N, D)`` and ``labels (N,)`` of the readable images and, in its metadata, a
fingerprint of what determined them (the weights, the band, the files, the input size, the filter, the
pooling) and the files that were skipped; a cache whose fingerprint differs is recomputed.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from torch import nn
from torch.utils.data import Dataset

from uae.errors import InputError
from uae.evaluation.common import (
    HeapTrimmer,
    batch_images,
    iterate,
    make_loader,
    model_device,
    weights_fingerprint,
)
from uae.evaluation.options import RunOptions
from uae.files import save_safetensors
from uae.utils import maybe_autocast

logger = logging.getLogger(__name__)

Band = int | str


def parse_pool(value: str | int) -> str | int:
    """``"mean"`` or a positive grid side (the ``pool`` of :class:`uae.evaluation.options.ProbeOptions`).

    Raises:
        InputError: Neither.
    """
    if str(value).strip().lower() == "mean":
        return "mean"
    try:
        g = int(value)
    except ValueError:
        raise InputError(
            f"pool must be 'mean' or a grid side such as 2 or 4; got {value!r}", param="pool"
        ) from None
    if g < 1:
        raise InputError(f"pool grid side must be >= 1, got {g}", param="pool")
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
    loader = make_loader(dataset, batch_size, num_workers=num_workers, device=device)
    n = len(dataset)
    features: torch.Tensor | None = None  # preallocated (N, D) once D is known: no 2x peak from concatenation
    label_t = torch.empty(n, dtype=torch.long)
    pos = 0
    local = SkipLog()
    trimmer = HeapTrimmer(device)  # on growth only
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
        del x, f
        trimmer.step()  # no heap growth batch after batch (glibc fragmentation)
    if features is None:
        raise InputError(f"none of the {n} images could be read ({len(local.skipped)} skipped)")
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


def cached_features(
    model: nn.Module,
    datasets: Sequence[Dataset | None],
    band: Band,
    *,
    options: RunOptions,
    cache_dir: str | os.PathLike | None,
    tag: str,
    pool: str | int = "mean",
    input_filter: Callable[[torch.Tensor], torch.Tensor] | None = None,
    filter_tag: str = "",
    logs: Sequence[Any] | None = None,
) -> list[tuple[torch.Tensor, torch.Tensor] | None]:
    """Band features ``(x (N, D), y (N,))`` of each of ``datasets`` (train, val), cached per split.

    Args:
        model: A :class:`uae.UAE` (eval mode).
        datasets: ``(train, val)``; ``None`` entries give ``None``.
        band: Band index, ``"all"`` or ``"latent"``.
        options: Batch size, workers, autocast and progress bars.
        cache_dir: Folder of the cache files (``None``: no cache).
        tag: Prefix of the cache files' names (the evaluation they belong to).
        pool: ``"mean"`` or a grid side (see :func:`extract_features`).
        input_filter: Optional image transform applied before the model.
        filter_tag: Names the filter in the cache's fingerprint and file name.
        logs: Optional ``(train, val)`` :class:`uae.data.datasets.SkipLog` that receive the images used
            and skipped.
    """
    pool = parse_pool(pool)
    weights = weights_fingerprint(model)
    out: list[tuple[torch.Tensor, torch.Tensor] | None] = []
    for split, ds, log in zip(("train", "val"), datasets, logs or (None, None)):
        if ds is None:
            out.append(None)
            continue
        base = ds.dataset if hasattr(ds, "dataset") else ds
        ids = list(ds.indices) if hasattr(ds, "indices") else None
        fp = feature_fingerprint(
            weights=weights,
            band=band,
            files=[str(f) for f in base.files],
            subset=ids,
            size=model.config.img_size,
            filter=filter_tag,
            pool=pool,
            draft=options.draft,
        )
        path = None
        if cache_dir is not None:
            suffix = f"_{filter_tag}" if filter_tag else ""
            path = Path(cache_dir) / f"{tag}_{split}_band-{band}_pool-{pool}{suffix}_{fp}.safetensors"
        out.append(
            extract_features(
                model,
                ds,
                band=band,
                batch_size=options.batch_size,
                num_workers=options.num_workers,
                device=model_device(model),
                input_filter=input_filter,
                cache_path=path,
                fingerprint=fp,
                progress=options.progress,
                amp=options.amp,
                pool=pool,
                skip_log=log,
            )
        )
    return out
