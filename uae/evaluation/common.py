"""Shared helpers of the evaluation tools: model and dataset resolution, loaders, devices, JSON output,
and the steps the evaluation commands (:mod:`uae.commands`) share: model set-up from the parsed
options, metrics, the probe's datasets and cached features, skipped-image summaries."""

from __future__ import annotations

import argparse
import logging
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

from uae.evaluation.options import NAMED_DATASETS  # noqa: F401  (re-exported: the ``--data`` names)
from uae.factory import load_model  # noqa: F401  (the one --model resolver)

logger = logging.getLogger(__name__)


def resolve_device(device: str | None) -> torch.device:
    """``"auto"``/``None`` -> CUDA when available, else CPU; otherwise ``torch.device(device)``.

    Raises:
        ValueError: Not a device, or not available here (e.g. ``cuda`` without a GPU).
    """
    from uae.utils import check_device

    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return check_device(device)


def resolve_data(data: str, data_root: str | None = None) -> Path:
    """Folder of ``--data``: a folder path, or a named dataset under ``--data-root``.

    ``imagenet-val`` -> ``<root>/val`` (class sub-folders), ``coco-val`` -> ``<root>/val2017`` (flat).

    Raises:
        FileNotFoundError: The folder does not exist, or a named dataset without ``--data-root``.
    """
    from uae.data.datasets import coco_split, imagenet_split

    if data in NAMED_DATASETS:
        if not data_root:
            raise FileNotFoundError(
                f"--data {data} needs --data-root (ImageNet: the folder holding train/ and val/ with class "
                "sub-folders; MS-COCO: the folder holding val2017/)"
            )
        family, split = data.split("-")
        return imagenet_split(data_root, split) if family == "imagenet" else coco_split(data_root, split)
    path = Path(data).expanduser()
    if not path.is_dir():
        raise FileNotFoundError(f"--data {data!r} is not a folder nor one of {', '.join(NAMED_DATASETS)}")
    return path


def build_dataset(
    root: str | os.PathLike,
    size: int,
    out_size: int | None = None,
    labels: bool | None = None,
    limit: int | None = None,
    train: bool = False,
    max_pixels: int | None | str = "default",
    on_error: str = "skip",
) -> Dataset:
    """An :class:`~uae.data.ImageFolderDataset` with the eval transform (center crop).

    Unreadable images (and images over the pixel budget) are skipped, never replaced by another
    image: the dataset returns a marker that :func:`make_loader`'s collate function drops and lists
    under ``batch["unreadable"]`` (count them with :class:`uae.data.datasets.SkipLog`).

    Args:
        root: Image folder.
        size: Encoder input side.
        out_size: Reference side (the decoder's output); when it differs from ``size`` samples also
            hold ``"target"`` cut from the same crop.
        labels: Passed to the dataset (``None``: class sub-folders when present).
        limit: Keep only the first ``limit`` images (sorted order).
        train: Random crop + flip instead of a center crop.
        max_pixels: Pixel budget per image (``"default"``: ``UAE_MAX_IMAGE_PIXELS`` or 2**26; ``None``: none).
        on_error: ``"skip"`` (evaluation) or ``"next"`` (substitute the next readable image).
    """
    from uae.data.datasets import ImageFolderDataset, find_images, image_transform

    files: Sequence[Path] | Path = Path(root)
    if limit is not None:
        if limit <= 0:
            raise ValueError(f"--limit must be positive, got {limit}")
        files = find_images(root)[:limit]
        return ImageFolderDataset(
            files,
            transform=image_transform(size, train=train, out_size=out_size),
            labels=labels,
            class_root=root,
            on_error=on_error,
            max_pixels=max_pixels,
        )
    return ImageFolderDataset(
        files,
        transform=image_transform(size, train=train, out_size=out_size),
        labels=labels,
        on_error=on_error,
        max_pixels=max_pixels,
    )


def make_loader(dataset: Dataset, batch_size: int, num_workers: int = 0, shuffle: bool = False) -> DataLoader:
    """A ``DataLoader`` of dict batches (``pin_memory`` on CUDA).

    Batches come from :func:`uae.data.datasets.collate_skipping`: samples the dataset could not read
    are left out and listed under ``batch["unreadable"]``; a batch without any readable image has
    no ``"image"`` key.
    """
    from uae.data.datasets import collate_skipping

    if batch_size <= 0:
        raise ValueError(f"--batch-size must be positive, got {batch_size}")
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle,
        num_workers=num_workers,
        pin_memory=torch.cuda.is_available(),
        persistent_workers=False,
        collate_fn=collate_skipping,
    )


def batch_images(batch: dict[str, Any], device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """``(model input, reference)`` of a dict batch; the reference is ``"target"`` when present."""
    x = batch["image"].to(device, non_blocking=True)
    ref = batch["target"].to(device, non_blocking=True) if "target" in batch else x
    return x, ref


def match_size(x: torch.Tensor, size: int) -> torch.Tensor:
    """Resize ``(B, 3, H, W)`` images to ``size x size`` (bicubic, antialiased, clamped) if needed."""
    if x.shape[-2:] == (size, size):
        return x
    return F.interpolate(x, size=(size, size), mode="bicubic", antialias=True, align_corners=False).clamp(
        0.0, 1.0
    )


def iterate(loader: DataLoader, desc: str, progress: bool = True) -> Iterator[dict[str, Any]]:
    """Iterate a loader with a tqdm progress bar (disabled with ``progress=False``)."""
    from tqdm.auto import tqdm

    yield from tqdm(loader, desc=desc, unit="batch", disable=not progress, dynamic_ncols=True)


def write_json(path: str | os.PathLike, data: dict[str, Any]) -> Path:
    """Write ``data`` as indented JSON atomically (temp file + ``os.replace``, usual permissions).

    Raises:
        ValueError: ``path`` is an existing folder (naming it).
    """
    from uae.files import write_json as _write

    path = Path(path)
    if path.is_dir():
        raise ValueError(f"output {str(path)!r} is an existing folder; give a .json file path")
    return _write(path, data, indent=2, sort_keys=False, default=_json_default)


def _json_default(o: Any) -> Any:
    if isinstance(o, Path):
        return str(o)
    if isinstance(o, torch.Tensor):
        return o.tolist()
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def format_table(rows: Sequence[Sequence[Any]], header: Sequence[str]) -> str:
    """A plain-text table with aligned columns (floats with 4 decimals)."""

    def fmt(v: Any) -> str:
        if isinstance(v, float):
            return f"{v:.4f}"
        return "-" if v is None else str(v)

    cells = [[fmt(v) for v in r] for r in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) if cells else len(h) for i, h in enumerate(header)]
    line = "  ".join(h.ljust(w) for h, w in zip(header, widths))
    sep = "  ".join("-" * w for w in widths)
    body = ["  ".join(c.ljust(w) for c, w in zip(r, widths)) for r in cells]
    return "\n".join([line, sep, *body])


# ------------------------------------------------------------------------- steps shared by the commands
def max_pixels_option(args: argparse.Namespace) -> int | None | str:
    """``--max-pixels`` for the datasets: ``"default"`` when not given, ``None`` for 0 (no limit)."""
    return "default" if args.max_pixels is None else (args.max_pixels or None)


def images_summary(*logs: Any) -> dict[str, Any]:
    """One ``{"used", "skipped", "skipped_files"}`` entry from one or more SkipLogs."""
    skipped: dict[str, str] = {}
    for log in logs:
        skipped.update(log.skipped)
    return {"used": sum(log.used for log in logs), "skipped": len(skipped), "skipped_files": skipped}


def print_skipped(images: dict[str, Any]) -> None:
    """Print a line when images were skipped (the result file lists them)."""
    if images["skipped"]:
        print(f"  skipped {images['skipped']} unreadable or too large image(s); see the result file")


def print_unavailable(res: dict[str, Any]) -> None:
    """Print the metrics that could not be computed, with the reason."""
    for k, why in res.get("unavailable", {}).items():
        print(f"  {k}: unavailable - {why}")


def setup_model(args: argparse.Namespace) -> tuple[Any, torch.device]:
    """``(model, device)`` from ``--model``, ``--random-init`` and ``--device``."""
    device = resolve_device(args.device)
    model = load_model(args.model, pretrained=not args.random_init, device=device)
    return model, device


def build_metrics(args: argparse.Namespace, device: torch.device):  # -> ReconstructionMetrics
    """The reconstruction metrics selected by the metric options (:func:`uae.evaluation.options.add_metric_opts`)."""
    from uae.evaluation.metrics import ReconstructionMetrics

    return ReconstructionMetrics(
        lpips=not args.no_lpips,
        fid=not args.no_fid,
        lpips_net=args.lpips_net,
        inception_weights=args.inception_weights,
        allow_download=not args.no_download,
        quantize=not args.no_quantize,
        device=device,
    )


def probe_datasets(args: argparse.Namespace, img_size: int):
    """Train and val datasets of the probe (ImageNet layout, explicit val folder, or a split)."""
    from torch.utils.data import Subset

    if args.data == "imagenet":
        if not args.data_root:
            raise FileNotFoundError("--data imagenet needs --data-root (the folder holding train/ and val/)")
        train_root, val_root = (
            resolve_data("imagenet-train", args.data_root),
            resolve_data("imagenet-val", args.data_root),
        )
    else:
        train_root = resolve_data(args.data, args.data_root)
        val_root = resolve_data(args.val_data, args.data_root) if args.val_data else None
    train = build_dataset(
        train_root, img_size, labels=True, limit=args.limit, max_pixels=max_pixels_option(args)
    )
    if val_root is not None:
        from uae.data.datasets import ImageFolderDataset, find_images, image_transform

        files = find_images(val_root)[: args.limit] if args.limit else val_root
        val = ImageFolderDataset(
            files,
            transform=image_transform(img_size),
            classes=train.classes,
            class_root=val_root,
            on_error="skip",
            max_pixels=max_pixels_option(args),
        )
        return train, val, train.classes
    from uae.evaluation.probe import split_indices

    tr, va = split_indices(train.targets, args.val_fraction, seed=args.seed)
    return Subset(train, tr), Subset(train, va), train.classes


def fit_probe(model, datasets, band, args, device, cache_dir: Path, tag: str, num_classes: int, logs=None):
    """Cached features of ``datasets`` (train, val) for ``band``, then the linear head with the CLI's options.

    ``logs``: optional (train, val) SkipLogs that receive the images used and skipped.
    """
    from uae.evaluation.probe import train_probe

    (xtr, ytr), (xva, yva) = probe_features(model, datasets, band, args, device, cache_dir, tag, logs=logs)
    return train_probe(
        xtr,
        ytr,
        xva,
        yva,
        num_classes=num_classes,
        epochs=args.epochs,
        batch_size=args.head_batch_size,
        optimizer=args.optimizer,
        lr=args.lr,
        weight_decay=args.weight_decay,
        warmup_epochs=args.warmup_epochs,
        seed=args.seed,
        progress=not args.no_progress,
    )


def probe_features(
    model,
    datasets,
    band,
    args,
    device,
    cache_dir: Path,
    tag: str,
    input_filter=None,
    filter_tag: str = "",
    logs=None,
):
    """Band features ``(x, y)`` of each of ``datasets`` (train, val; ``None`` entries stay ``None``), cached."""
    from uae.evaluation.probe import extract_features, feature_fingerprint, parse_pool

    out = []
    for split, ds, log in zip(("train", "val"), datasets, logs or (None, None)):
        if ds is None:
            out.append(None)
            continue
        base = ds.dataset if hasattr(ds, "dataset") else ds
        ids = list(ds.indices) if hasattr(ds, "indices") else None
        pool = parse_pool(args.pool)
        fp = feature_fingerprint(
            model=args.model,
            random_init=args.random_init,
            band=band,
            files=[str(f) for f in base.files],
            subset=ids,
            size=model.config.img_size,
            filter=filter_tag,
            pool=pool,
        )
        path = (
            cache_dir
            / f"{tag}_{split}_band-{band}_pool-{pool}{'_' + filter_tag if filter_tag else ''}_{fp}.safetensors"
        )
        out.append(
            extract_features(
                model,
                ds,
                band=band,
                batch_size=args.batch_size,
                num_workers=args.num_workers,
                device=device,
                input_filter=input_filter,
                cache_path=path,
                fingerprint=fp,
                progress=not args.no_progress,
                amp=not args.no_amp,
                pool=pool,
                skip_log=log,
            )
        )
    return out
