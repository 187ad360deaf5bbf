"""Writing generated images: one PNG per image and a grid with one labelled row per class (``uae generate``)."""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from PIL import Image, ImageDraw, ImageFont

from uae.errors import OutputError
from uae.generation.pipeline import GenerationOutput, GenerationPipeline
from uae.visualize import save_image, to_pil

logger = logging.getLogger(__name__)

GRID_NAME = "grid.png"
#: Smallest cell of the grid (small images are enlarged, nearest neighbour, to stay visible).
MIN_CELL = 128


@functools.cache
def imagenet_class_names() -> tuple[str, ...] | None:
    """The 1000 ImageNet-1K class names (torchvision's list, offline), or ``None`` without torchvision."""
    try:
        from torchvision.models import ResNet50_Weights
    except ImportError:  # pragma: no cover - torchvision is a dependency
        return None
    return tuple(ResNet50_Weights.IMAGENET1K_V2.meta["categories"])


def class_name(label: int, num_classes: int) -> str:
    """``"207 golden retriever"`` for ImageNet's 1000 classes, else ``"class 3"``."""
    names = imagenet_class_names() if num_classes == 1000 else None
    return f"{label} {names[label]}" if names else f"class {label}"


def labelled_grid(images: torch.Tensor, labels: Sequence[int], num_classes: int) -> Image.Image:
    """A grid with one row per run of equal consecutive labels, each row headed by the class name.

    Args:
        images: ``(B, 3, H, W)`` in ``[0, 1]``.
        labels: ``B`` class labels (consecutive images of one class form a row).
        num_classes: The generator's classes (1000: ImageNet names are shown).

    Returns:
        An RGB image.
    """
    rows: list[tuple[int, list[int]]] = []
    for i, lab in enumerate(int(v) for v in labels):
        if rows and rows[-1][0] == lab:
            rows[-1][1].append(i)
        else:
            rows.append((lab, [i]))
    h, w = images.shape[-2:]
    scale = max(1, -(-MIN_CELL // max(h, w)))
    ch, cw = h * scale, w * scale
    font_size = max(12, ch // 10)
    try:
        font = ImageFont.load_default(size=font_size)
    except TypeError:  # Pillow < 10.1
        font = ImageFont.load_default()
    label_h = font_size + 8
    cols = max(len(r[1]) for r in rows)
    gap = 4
    grid = Image.new("RGB", (cols * (cw + gap) - gap, len(rows) * (ch + label_h)), "white")
    draw = ImageDraw.Draw(grid)
    for r, (lab, members) in enumerate(rows):
        top = r * (ch + label_h)
        draw.text((4, top + 4), class_name(lab, num_classes), fill="black", font=font)
        for c, i in enumerate(members):
            tile = to_pil(images[i]).resize((cw, ch), Image.NEAREST)
            grid.paste(tile, (c * (cw + gap), top + label_h))
    return grid


@dataclass(frozen=True)
class GeneratedFiles:
    """What :func:`write_generated` wrote.

    Attributes:
        images: One PNG per image (``<index>_class<label>.png``), in order.
        grid: The labelled grid (``grid.png``), or ``None``.
        output: The generation (images, latents, labels, seeds).
    """

    images: list[Path]
    grid: Path | None
    output: GenerationOutput


def write_generated(
    pipeline: GenerationPipeline,
    class_labels: Sequence[int],
    out_dir: str | os.PathLike,
    *,
    num: int = 1,
    grid: bool = True,
    **call: object,
) -> GeneratedFiles:
    """Generate ``num`` images per class and write them as PNGs plus a labelled grid.

    Args:
        pipeline: The pipeline.
        class_labels: Class indices.
        out_dir: Output folder (created).
        num: Images per class.
        grid: Also write ``grid.png``.
        **call: Keywords of :meth:`GenerationPipeline.__call__` (``steps``, ``guidance``, ``seed``, ...).

    Raises:
        InputError: Bad labels or settings (naming the parameter).
        OutputError: The folder cannot be written.
    """
    out = pipeline(class_labels, num=num, **call)  # type: ignore[arg-type]
    folder = Path(out_dir).expanduser()
    width = max(3, len(str(len(out.labels) - 1)))
    paths = []
    try:
        for i, (img, lab) in enumerate(zip(out.images, out.labels.tolist())):
            paths.append(save_image(img, folder / f"{i:0{width}d}_class{lab}.png"))
        grid_path = None
        if grid:
            grid_path = folder / GRID_NAME
            save_image(labelled_grid(out.images, out.labels.tolist(), pipeline.num_classes), grid_path)
    except OSError as e:
        raise OutputError(f"cannot write to {folder}: {e}", param="out_dir") from e
    return GeneratedFiles(paths, grid_path, out)


__all__ = [
    "GRID_NAME",
    "GeneratedFiles",
    "class_name",
    "imagenet_class_names",
    "labelled_grid",
    "write_generated",
]
