"""Data: image folders (plain, ImageNet, MS-COCO), image arrays, transforms and the training DataModule."""

from uae.data.array_writer import pack_images
from uae.data.arrays import ImageArray, ImageArrayDataset
from uae.data.datasets import (
    IMAGE_EXTENSIONS,
    ImageFolderDataset,
    coco_split,
    find_images,
    imagenet_split,
    is_image_file,
)
from uae.data.image_io import ImageTooLargeError, read_image
from uae.data.transforms import (
    ImageTransform,
    create_transform,
    image_transform,
    resize_images,
    resolve_data_config,
)


def __getattr__(name: str):  # lazy: importing lightning is slow and the datasets do not need it
    if name in ("UAEDataModule", "RepeatDataset"):
        from uae.data import datamodule

        return getattr(datamodule, name)
    raise AttributeError(f"module 'uae.data' has no attribute {name!r}")


__all__ = [
    "RepeatDataset",
    "UAEDataModule",
    "IMAGE_EXTENSIONS",
    "ImageArray",
    "ImageArrayDataset",
    "ImageFolderDataset",
    "ImageTransform",
    "coco_split",
    "find_images",
    "image_transform",
    "imagenet_split",
    "is_image_file",
    "pack_images",
    "ImageTooLargeError",
    "read_image",
    "create_transform",
    "resize_images",
    "resolve_data_config",
]
