"""Folders of synthetic photographs for the data and evaluation benchmarks.

Each image is a crop of one of the scikit-image sample photographs (when scikit-image is installed; a
procedural picture otherwise), randomly placed, flipped and tinted, so that no two files are the same
and decoding costs what a photograph costs. Written as JPEG (quality 90) or PNG.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

#: scikit-image sample photographs used as sources (colour ones; grey ones are stacked to RGB).
SAMPLES = ("astronaut", "coffee", "chelsea", "rocket", "immunohistochemistry", "hubble_deep_field", "camera")


def source_photos() -> list[np.ndarray]:
    """``(H, W, 3)`` uint8 photographs: scikit-image's samples, or procedural pictures without it."""
    try:
        from skimage import data
    except ImportError:
        rng = np.random.default_rng(0)
        yy, xx = np.mgrid[0:768, 0:1024] / 256.0
        out = []
        for _ in range(4):
            f = rng.uniform(0.5, 4.0, (3, 2))
            p = rng.uniform(0, 6.3, 3)
            chans = [np.sin(f[c, 0] * xx * np.pi + p[c]) * np.cos(f[c, 1] * yy * np.pi) for c in range(3)]
            img = (np.stack(chans, -1) * 0.4 + 0.5 + rng.normal(0, 0.04, (768, 1024, 3))).clip(0, 1)
            out.append((img * 255).astype(np.uint8))
        return out
    photos = []
    for name in SAMPLES:
        a = getattr(data, name)()
        if a.ndim == 2:
            a = np.stack([a] * 3, -1)
        photos.append(np.ascontiguousarray(a[..., :3]))
    return photos


def write_images(
    folder: str | Path, n: int, size: tuple[int, int] = (500, 375), fmt: str = "jpg", seed: int = 0
) -> list[Path]:
    """Write ``n`` distinct images of ``size`` (width, height) into ``folder`` (created).

    Returns:
        The paths, in order.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    photos = [Image.fromarray(p) for p in source_photos()]
    w, h = size
    paths = []
    for i in range(n):
        src = photos[i % len(photos)]
        scale = max(w / src.width, h / src.height) * rng.uniform(1.0, 1.5)
        im = src.resize((max(w, round(src.width * scale)), max(h, round(src.height * scale))), Image.BILINEAR)
        left = int(rng.integers(0, im.width - w + 1))
        top = int(rng.integers(0, im.height - h + 1))
        im = im.crop((left, top, left + w, top + h))
        if rng.random() < 0.5:
            im = im.transpose(Image.FLIP_LEFT_RIGHT)
        tint = rng.uniform(0.85, 1.15, 3)
        arr = np.clip(np.asarray(im, dtype=np.float32) * tint, 0, 255).astype(np.uint8)
        path = folder / f"img_{i:06d}.{fmt}"
        Image.fromarray(arr).save(path, quality=90) if fmt == "jpg" else Image.fromarray(arr).save(path)
        paths.append(path)
    return paths


def add_folder_args(parser: Any) -> None:
    """``--size`` and ``--folder`` of a benchmark that reads a folder of synthetic JPEGs (:func:`jpeg_folder`)."""
    parser.add_argument("--size", default="500x375", help="size of the synthetic JPEGs, WIDTHxHEIGHT")
    parser.add_argument("--folder", default=None, help="folder of JPEGs (written when it has too few)")


def jpeg_folder(
    folder: str | Path | None, images: int, size: str = "500x375"
) -> tuple[Path, tempfile.TemporaryDirectory | None]:
    """``(folder, tmp)``: ``folder`` (or, for ``None``, a new temporary one, ``tmp``, to clean up) holding at
    least ``images`` JPEGs of ``size`` (``"WIDTHxHEIGHT"``), written by :func:`write_images` when it has fewer."""
    tmp = tempfile.TemporaryDirectory() if folder is None else None
    path = Path(tmp.name if tmp is not None else folder)
    w, h = (int(v) for v in size.split("x"))
    if len(list(path.glob("*.jpg"))) < images:
        write_images(path, images, size=(w, h))
    return path, tmp
