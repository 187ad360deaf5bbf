"""Decode an image set once: its evaluation crops as one uint8 array file (``uae pack``).

``uae eval``, ``uae encode``, ``uae probe`` and the other evaluation commands read the result
(:class:`uae.data.arrays.ImageArrayDataset`) instead of decoding the JPEGs again, so a set evaluated for
every checkpoint is decoded once::

    from uae.evaluation.packing import pack_dataset

    pack_dataset("imagenet-val", "val256.npz", 256, data_root="/data/imagenet")
    # uae eval --model uae_demo --data val256.npz

Two crops: ``"uae"`` (uae's evaluation crop: the centre square of the shorter side, one PIL bicubic
resize; what ``uae eval`` does to a folder) and ``"adm"`` (ADM's ``center_crop_arr``, the crop of
ADM's ImageNet reference batches and of the releases' evaluation). A model evaluated on a pack made at
its output size with its own crop sees the pixels it would see from the folder (decoded at full size:
``draft=False``, the default here) when its input has that size too, or when it uses the releases'
pipeline (which resizes the crop to the input itself). A uae-pipeline model with a smaller input (224 px
in, 256 out) gets its input resized from the packed crop rather than from the original image: close,
not bit-identical (two resamplings instead of one; on 64 photographs of 500x375 the 224 px inputs differ by
0.002 on [0, 1] on average, at most 0.10 at sharp edges).
"""

from __future__ import annotations

import logging
import os
from typing import Any

import torch
from PIL import Image

from uae.errors import InputError
from uae.evaluation.common import images_dataset, iterate, make_loader, resolve_data
from uae.evaluation.options import RunOptions

logger = logging.getLogger(__name__)

#: Crops :func:`pack_dataset` makes.
CROPS = ("uae", "adm")


class AdmCrop:
    """``PIL.Image -> (3, size, size)`` uint8: ADM's centre crop (:func:`uae.data.transforms.adm_center_crop`)."""

    #: The crop box-downsamples the full image itself: decode at full size.
    draft_size = None

    def __init__(self, size: int) -> None:
        if size <= 0:
            raise InputError(f"size must be positive, got {size}", param="size")
        self.size = int(size)

    def __call__(self, im: Image.Image) -> torch.Tensor:
        from uae.data.image_io import to_rgb
        from uae.data.transforms import adm_center_crop, to_tensor

        return to_tensor(adm_center_crop(to_rgb(im), self.size), uint8=True)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(size={self.size})"


def crop_transform(size: int, crop: str = "uae") -> Any:
    """The ``uint8`` transform of ``crop`` (one of :data:`CROPS`) at ``size``."""
    from uae.data.transforms import image_transform

    if crop not in CROPS:
        raise InputError(f"crop must be one of {CROPS}, got {crop!r}", param="crop")
    return AdmCrop(size) if crop == "adm" else image_transform(size, uint8=True)


def pack_dataset(
    data: str,
    output: str | os.PathLike,
    size: int,
    *,
    crop: str = "uae",
    labels: bool | None = None,
    options: RunOptions | None = None,
) -> dict[str, Any]:
    """Write the ``size x size`` crops of a dataset's images as one ``(N, size, size, 3)`` uint8 file.

    Args:
        data: An image folder, a named dataset (``options.data_root``) or an image array.
        output: ``.npy`` (images) or ``.npz`` (``arr_0`` images and ``arr_1`` labels, ADM's layout);
            replaced atomically once complete.
        size: Side of the crops.
        crop: ``"uae"`` or ``"adm"`` (see the module).
        labels: ``None``: store class labels when the images are in class sub-folders and the output is
            an ``.npz``; ``True``: require them; ``False``: none.
        options: ``data_root``, ``limit``, ``max_pixels``, ``batch_size``, ``num_workers``, ``progress``
            and ``draft`` are used (``draft=True`` decodes large JPEGs at a reduced scale: faster, not
            the same pixels as a full decode; ``RunOptions``' default is ``True``, pass ``draft=False``
            for the exact crops).

    Returns:
        ``{"path", "shape", "bytes", "crop", "size", "data", "data_path", "labels", "classes",
        "images"}`` (``images``: used / skipped counts and the skipped files with their reasons).

    Raises:
        InputError: Bad ``crop``/``size``/suffix, ``labels=True`` without class sub-folders or with an
            ``.npy``, or no readable image.
    """
    from uae.data.array_writer import check_output, pack_images
    from uae.data.datasets import SkipLog

    options = options or RunOptions()
    output = check_output(output, bool(labels))  # before the folder is scanned
    transform = crop_transform(size, crop)
    root = resolve_data(data, options.data_root)
    want_labels = labels if output.suffix.lower() == ".npz" else False
    ds: Any = images_dataset(
        root,
        transform,
        labels=want_labels,
        limit=options.limit,
        max_pixels=options.max_pixels,
        draft=options.draft,
    )
    keep = bool(ds.classes) and want_labels is not False
    loader = make_loader(ds, options.batch_size, options.num_workers, device="cpu", worker_niceness=0)
    skips = SkipLog()
    targets: list[int] = []

    def batches() -> Any:
        for batch in iterate(loader, "pack", progress=options.progress):
            if skips.update(batch):
                if keep:
                    targets.extend(int(t) for t in batch["label"])
                yield batch["image"]

    res = pack_images(
        batches(),
        output,
        count=len(ds),
        labels=targets if keep else None,
        classes=list(ds.classes) if keep else None,
    )
    logger.info("Packed %d images of %s into %s", res["shape"][0], root, output)
    return {
        **res,
        "crop": crop,
        "size": size,
        "data": data,
        "data_path": str(root),
        "labels": keep,
        "classes": list(ds.classes) if keep else [],
        "images": skips.summary(),
    }
