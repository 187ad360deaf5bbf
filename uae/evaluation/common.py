"""Shared helpers of the evaluation tools: model and dataset resolution, loaders, devices, JSON output."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

logger = logging.getLogger(__name__)

#: Dataset names accepted by ``--data`` besides a folder path.
NAMED_DATASETS = ("imagenet-val", "imagenet-train", "coco-val", "coco-train")


def load_model(spec: str, pretrained: bool = True, device: str | torch.device = "cpu"):  # -> UAE
    """Load a UAE from a registered name, a local ``save_pretrained`` directory or a Hub repo id.

    Args:
        spec: ``uae_base_p14_dinov2`` (registered name), ``./my_model`` (directory with ``config.json``
            and ``model.safetensors``) or ``org/repo`` (Hub, read from the cache when offline).
        pretrained: For registered names: load the trained weights (``False``: random init, for smoke tests).
        device: Where to put the model.

    Returns:
        The model in eval mode with ``requires_grad=False``.

    Raises:
        FileNotFoundError: No such directory / repo / trained weights.
        ValueError: Unknown name.
    """
    from uae.models.registry import create_model, list_models
    from uae.models.uae import UAE

    if spec in list_models():
        model = create_model(spec, pretrained=pretrained)
    elif Path(spec).expanduser().is_dir():
        model = UAE.from_pretrained(str(Path(spec).expanduser()))
    elif spec.count("/") == 1 and not spec.startswith((".", "/", "~")) and not Path(spec).exists():
        model = UAE.from_pretrained(spec)
    else:
        raise FileNotFoundError(
            f"--model {spec!r} is neither a registered name (see `uae models`), a directory with "
            "config.json + model.safetensors, nor a Hub repo id 'org/name'"
        )
    model.requires_grad_(False)
    return model.eval().to(device)


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
