"""Data: image folders (plain, ImageNet, MS-COCO), transforms and the training DataModule."""

from uae.data.datasets import (
    IMAGE_EXTENSIONS,
    ImageFolderDataset,
    ImageTransform,
    coco_split,
    find_images,
    image_transform,
    imagenet_split,
    is_image_file,
)

__all__ = [
    "IMAGE_EXTENSIONS",
    "ImageFolderDataset",
    "ImageTransform",
    "coco_split",
    "find_images",
    "image_transform",
    "imagenet_split",
    "is_image_file",
]
