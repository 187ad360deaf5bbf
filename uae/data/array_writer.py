"""Writing image arrays: uint8 image batches as one ``.npy`` or ADM-style ``.npz`` (read by :mod:`uae.data.arrays`).

The ``.npy`` header is written first for the most images that may come and rewritten in place with the
number written (images a loader could not read are left out); an ``.npz`` stores that file uncompressed as
``arr_0`` beside ``arr_1`` labels and ``classes`` names. The file appears under its name only once complete.
"""

from __future__ import annotations

import os
import pathlib
import struct
import zipfile
from collections.abc import Iterable
from typing import Any

import numpy as np
import torch

from uae.data.arrays import CLASSES_KEY, IMAGES_KEY, LABELS_KEY, is_image_array_file
from uae.errors import InputError

PathLike = str | os.PathLike

#: A temp file of an output not written to for this long belongs to a writer that was killed.
STALE_SECONDS = 600.0


def _npy_header(shape: tuple[int, ...], reserve: tuple[int, ...] | None = None) -> bytes:
    """An NPY 1.0 header for a C-ordered uint8 array of ``shape``, padded to the length the header of
    ``reserve`` needs (so the shape can later be rewritten in place) and to a multiple of 64 bytes."""

    def text(s: tuple[int, ...]) -> str:
        return "{'descr': '|u1', 'fortran_order': False, 'shape': " + repr(tuple(s)) + ", }"

    body = text(shape)
    longest = max(len(body), len(text(reserve))) if reserve is not None else len(body)
    total = -(-(10 + longest + 1) // 64) * 64  # magic 6 + version 2 + length 2, the dict, "\n"
    body = body.ljust(total - 10 - 1) + "\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(body)) + body.encode("latin1")


def remove_stale_temp_files(path: PathLike, stale_seconds: float = STALE_SECONDS) -> list[pathlib.Path]:
    """Delete the temp files a killed :func:`pack_images` of ``path`` left beside it (those of this output's
    name, not written to for ``stale_seconds``: a pack still running writes all the time;
    :func:`uae.files.remove_temp_files`).

    Returns:
        The removed paths.
    """
    from uae.files import remove_temp_files

    path = pathlib.Path(path)
    if not path.parent.is_dir():
        return []
    names = (path.name, path.with_suffix(".npy").name)
    return remove_temp_files(path.parent, names=names, min_age_s=stale_seconds)


def check_output(path: PathLike, labels: bool = False) -> pathlib.Path:
    """``path`` as the output of :func:`pack_images`: an ``.npy`` or ``.npz``, an ``.npz`` when ``labels``
    are to be stored.

    Raises:
        InputError: Another suffix, or labels for an ``.npy`` (naming ``output``).
    """
    path = pathlib.Path(path).expanduser()
    if not is_image_array_file(path):
        raise InputError(f"output {str(path)!r} must end in .npy or .npz", param="output")
    if labels and path.suffix.lower() != ".npz":
        raise InputError("labels are stored in an .npz (arr_1); name the output .npz", param="output")
    return path


def pack_images(
    images: Iterable[torch.Tensor],
    path: PathLike,
    *,
    count: int,
    labels: Iterable[int] | None = None,
    classes: Iterable[str] | None = None,
) -> dict[str, Any]:
    """Write ``uint8`` image batches as one ``(N, H, W, 3)`` array file, atomically.

    Args:
        images: ``(B, 3, H, W)`` uint8 batches (or ``(3, H, W)`` images), all of one size.
        path: The ``.npy`` (images) or ``.npz`` (``arr_0`` images and, with ``labels``, ``arr_1``; stored
            uncompressed, ADM's layout) to write; replaced only once complete.
        count: The most images ``images`` yields (the header is written for it first and rewritten
            with the number actually written).
        labels: One integer per image written (``.npz`` only); read once the images are written, so a
            list filled while ``images`` is consumed works.
        classes: The class names in label order (``.npz`` only, with ``labels``).

    Returns:
        ``{"path", "shape", "bytes"}``.

    Raises:
        InputError: Not uint8 ``(B, 3, H, W)``; sizes that change; more images than ``count``; labels
            for an ``.npy``; a suffix not in :data:`IMAGE_ARRAY_SUFFIXES`.

    A killed run leaves its temp file beside ``path``; the next run of the same output removes it
    (:func:`remove_stale_temp_files`).
    """
    from uae.files import new_temp_file, replace_with_temp_file

    path = check_output(path, labels is not None or classes is not None)
    if count <= 0:
        raise InputError(f"count must be positive, got {count}", param="count")
    remove_stale_temp_files(path)
    tmp = new_temp_file(path.with_suffix(".npy"))
    written, hw = 0, None
    try:
        with tmp.open("r+b") as f:
            for batch in images:
                x = batch if batch.dim() == 4 else batch.unsqueeze(0)
                if x.dtype != torch.uint8 or x.dim() != 4 or x.shape[1] != 3:
                    raise InputError(
                        f"pack_images needs (B, 3, H, W) uint8 images, got {tuple(x.shape)} {x.dtype}"
                    )
                if hw is None:
                    hw = (int(x.shape[2]), int(x.shape[3]))
                    f.write(_npy_header((count, *hw, 3)))
                elif tuple(x.shape[2:]) != hw:
                    raise InputError(f"images of one size are needed: {hw} then {tuple(x.shape[2:])}")
                if written + len(x) > count:
                    raise InputError(f"more than count={count} images")
                f.write(x.permute(0, 2, 3, 1).contiguous().cpu().numpy().tobytes())
                written += len(x)
            if hw is None:
                raise InputError("no images to pack", param="data")
            shape = (written, *hw, 3)
            f.seek(0)
            f.write(_npy_header(shape, reserve=(count, *hw, 3)))
            f.flush()
            os.fsync(f.fileno())
        if path.suffix.lower() == ".npz":
            tmp = _zip_stored(
                tmp,
                path,
                None if labels is None else np.asarray(list(labels), dtype=np.int64),
                None if classes is None else np.asarray(list(classes), dtype=str),
                written,
            )
        replace_with_temp_file(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return {"path": str(path), "shape": list(shape), "bytes": path.stat().st_size}


def _zip_stored(
    npy: pathlib.Path, path: pathlib.Path, labels: np.ndarray | None, classes: np.ndarray | None, n: int
) -> pathlib.Path:
    """An uncompressed ``.npz`` temp file beside ``path`` holding ``npy`` as ``arr_0`` (and ``labels``,
    ``classes``)."""
    from uae.files import new_temp_file

    bad = None
    if labels is not None and (labels.shape != (n,) or (n and labels.min() < 0)):
        bad = f"{len(labels)} labels for {n} images (non-negative integers needed)"
    elif classes is not None and (labels is None or (n and len(classes) <= labels.max())):
        bad = f"{len(classes)} class names for labels up to {labels.max() if labels is not None else 'none'}"
    if bad:
        npy.unlink(missing_ok=True)
        raise InputError(bad, param="labels")
    out = new_temp_file(path)
    try:
        with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED, allowZip64=True) as zf:
            zf.write(npy, f"{IMAGES_KEY}.npy")
            if labels is not None:
                with zf.open(f"{LABELS_KEY}.npy", "w") as m:
                    np.lib.format.write_array(m, labels, allow_pickle=False)
            if classes is not None:
                with zf.open(f"{CLASSES_KEY}.npy", "w") as m:
                    np.lib.format.write_array(m, classes, allow_pickle=False)
        with out.open("rb+") as f:
            os.fsync(f.fileno())
    except BaseException:
        out.unlink(missing_ok=True)
        raise
    finally:
        npy.unlink(missing_ok=True)
    return out
