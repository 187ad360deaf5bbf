"""Image datasets shared by training and evaluation: plain folders, ImageNet and MS-COCO layouts.

Every sample is a dict (so the default collate gives dict batches)::

    {"image": (3, H, W) float in [0, 1], "label": int (-1 if unlabelled), "index": int, "path": str,
     "skipped": int}            # + "target": (3, H', W') when the transform makes one (see below)

When the model's encoder input and decoder output resolutions differ (paper: 224 in, 256 out), build
the transform with ``image_transform(size=224, out_size=256)``: it returns a dict
``{"image": (3, 224, 224), "target": (3, 256, 256)}`` cut from the *same* crop (and flip), and the
dataset merges it into the sample, so a training step compares ``model(batch["image"])`` with
``batch["target"]``. With ``out_size`` equal to ``size`` (or ``None``) the transform returns one
tensor and there is no ``"target"`` key (the image is its own target).

Corrupt or unreadable files (and images over the pixel budget, see :mod:`uae.data.image_io`) never
crash an epoch. With ``on_error="next"`` (the default, for training) the dataset logs one warning per
file, counts it in :attr:`ImageFolderDataset.num_skipped`, and returns the next readable image instead
(the sample's ``"skipped"`` entry says how many files were passed over to produce it, so a training
loop can sum it across workers and ranks). With ``on_error="skip"`` (evaluation: never substitute an
image) it returns an :class:`UnreadableSample` marker instead, which :func:`collate_skipping` drops
from the batch and lists under ``batch["unreadable"]`` so the consumer counts each file once.
"""

from __future__ import annotations

import logging
import os
import pathlib
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import torch
from PIL import Image
from torch.utils.data import Dataset, default_collate

from uae.data.folders import IMAGE_EXTENSIONS, find_images, is_image_file  # noqa: F401 - re-exported
from uae.data.image_io import ImageTooLargeError, read_image

# The transforms live in uae.data.transforms; re-exported here for code that imported them from this module.
from uae.data.transforms import (  # noqa: F401
    ImageTransform,
    image_transform,
    to_tensor,
    transform_draft_size,
)
from uae.errors import InputError, MissingFileError

logger = logging.getLogger(__name__)

PathLike = str | os.PathLike


def infer_classes(files: Sequence[pathlib.Path], root: pathlib.Path) -> list[str] | None:
    """Sorted class names when every file lies in a sub-folder of ``root``, else ``None``.

    The class of a file is the first path component below ``root`` (so ``root/cat/x.jpg`` and
    ``root/cat/more/y.jpg`` are both ``"cat"``).
    """
    names = set()
    for f in files:
        try:
            rel = f.relative_to(root)
        except ValueError:
            return None
        if len(rel.parts) < 2:
            return None
        names.add(rel.parts[0])
    return sorted(names) if names else None


class ImageFolderDataset(Dataset):
    """Images of a folder (recursive) or of an explicit file list, with optional class labels.

    Args:
        root_or_files: A folder, or a sequence of image paths.
        transform: ``PIL.Image -> tensor`` (or ``-> {"image", "target"}``); default: plain
            ``to_tensor`` of the RGB image (sizes may then differ between images).
        labels: ``None``: automatic, class sub-folders give labels (sorted names in :attr:`classes`)
            when *every* image lies in a sub-folder; ``True``: require class sub-folders
            (``ValueError`` otherwise); ``False``: no labels (``label == -1``).
        recursive: Descend into sub-folders when ``root_or_files`` is a folder.
        class_root: For a file list: the folder whose sub-folders are the classes (default: the
            common parent folder of the files' parent folders).
        classes: Explicit class names (e.g. shared by a train and a val split); files in other
            sub-folders get label -1.
        on_error: What an unreadable file (or one over the pixel budget) gives: ``"next"`` the next
            readable image (training), ``"skip"`` an :class:`UnreadableSample` marker (evaluation;
            load with :func:`collate_skipping`).
        max_pixels: Pixel budget per image (checked from the header); ``"default"``:
            :func:`uae.data.image_io.default_max_pixels`; ``None``: no budget.
        draft: Let a JPEG much larger than the transform's output be decoded at a reduced scale
            (:func:`transform_draft_size`, :func:`uae.data.image_io.read_image`'s ``draft_size``); 1.3-9x
            faster decoding, output not bit-identical to a full decode (see :mod:`uae.data.image_io`).

    Attributes:
        files: The image paths.
        classes: Sorted class names, or ``[]`` when unlabelled.
        num_skipped: Unreadable files met so far in this process (each counted once).

    Raises:
        MissingFileError: Missing folder or a listed file that does not exist.
        InputError: No images; ``labels=True`` without class sub-folders.
    """

    def __init__(
        self,
        root_or_files: PathLike | Sequence[PathLike],
        transform: Callable[[Image.Image], Any] | None = None,
        labels: bool | None = None,
        recursive: bool = True,
        class_root: PathLike | None = None,
        classes: Sequence[str] | None = None,
        on_error: str = "next",
        max_pixels: int | None | str = "default",
        draft: bool = True,
    ) -> None:
        if on_error not in ("next", "skip"):
            raise InputError(f"on_error must be 'next' or 'skip', got {on_error!r}")
        self.on_error = on_error
        self.max_pixels = max_pixels
        self.draft = draft
        if isinstance(root_or_files, (str, os.PathLike)):
            root = pathlib.Path(root_or_files).expanduser()
            files = find_images(root, recursive=recursive)
        else:
            files = [pathlib.Path(f).expanduser() for f in root_or_files]
            if not files:
                raise InputError("ImageFolderDataset got an empty file list")
            missing = [str(f) for f in files if not f.exists()]
            if missing:
                raise MissingFileError(
                    f"{len(missing)} listed image file(s) do not exist, e.g. {missing[0]!r}"
                )
            if class_root is not None:
                root = pathlib.Path(class_root).expanduser()
            else:
                root = pathlib.Path(os.path.commonpath([str(f.parent) for f in files]))
                # A single shared parent folder is the class folder itself: go one level up.
                if all(f.parent == root for f in files) and classes is not None:
                    root = root.parent
        self.root = root
        self.files: list[pathlib.Path] = files
        self.transform = transform
        if classes is not None:
            self.classes = list(classes)
        elif labels is False:
            self.classes = []
        else:
            found = infer_classes(files, root)
            if found is None and labels:
                raise InputError(
                    f"labels=True but the images of {str(root)!r} are not all in class sub-folders "
                    "(expected root/<class>/<image>)"
                )
            self.classes = found or []
        if labels is False:
            self.classes = []
        index = {c: i for i, c in enumerate(self.classes)}
        self.targets: list[int] = []
        for f in files:
            label = -1
            if index:
                try:
                    label = index.get(f.relative_to(root).parts[0], -1)
                except ValueError:
                    label = -1
            self.targets.append(label)
        self.num_skipped = 0
        self._bad: set[int] = set()
        self._reasons: dict[int, str] = {}

    @property
    def labelled(self) -> bool:
        """True when the samples carry class labels."""
        return bool(self.classes)

    def __len__(self) -> int:
        return len(self.files)

    def _load(self, i: int) -> Image.Image | None:
        """Open and fully decode file ``i`` as RGB; ``None`` (warning logged once) when unreadable."""
        if i in self._bad:
            return None
        path = self.files[i]
        try:
            draft_size = transform_draft_size(self.transform) if self.draft else None
            return read_image(path, max_pixels=self.max_pixels, draft_size=draft_size)
        except (OSError, ValueError, MemoryError) as e:  # read_image wraps Pillow's errors in ValueError
            self._bad.add(i)
            self.num_skipped += 1
            self._reasons[i] = str(e)
            if self.on_error == "next":
                what = "too large" if isinstance(e, ImageTooLargeError) else "unreadable"
                logger.warning("Skipping %s image %s (%s)", what, path, e)
            return None

    def __getitem__(self, i: int) -> dict[str, Any] | UnreadableSample:
        """Sample ``i`` as ``{"image", "label", "index", "path", "skipped"}``.

        When file ``i`` is unreadable: the next readable sample (``on_error="next"``) or an
        :class:`UnreadableSample` (``on_error="skip"``).
        """
        n = len(self.files)
        if not -n <= i < n:
            raise IndexError(f"index {i} out of range for {n} images")
        i %= n
        if self.on_error == "skip":
            im = self._load(i)
            if im is None:
                return UnreadableSample(i, str(self.files[i]), self._reasons.get(i, "unreadable"))
            return self._sample(i, im, 0)
        for k in range(n):
            j = (i + k) % n
            im = self._load(j)
            if im is None:
                continue
            return self._sample(j, im, k)
        raise RuntimeError(f"none of the {n} images under {str(self.root)!r} could be read")

    def _sample(self, j: int, im: Image.Image, skipped: int) -> dict[str, Any]:
        out = self.transform(im) if self.transform is not None else to_tensor(im)
        return make_sample(out, label=self.targets[j], index=j, path=str(self.files[j]), skipped=skipped)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(root={str(self.root)!r}, n={len(self)}, classes={len(self.classes)}, "
            f"transform={self.transform!r})"
        )


def make_sample(
    out: torch.Tensor | dict[str, torch.Tensor], *, label: int, index: int, path: str, skipped: int = 0
) -> dict[str, Any]:
    """A dataset sample: ``{"image", "label", "index", "path", "skipped"}`` with a transform's output
    ``out`` as ``"image"``, or its ``"image"`` and ``"target"`` when it returned a dict."""
    sample: dict[str, Any] = {"label": label, "index": index, "path": path, "skipped": skipped}
    if isinstance(out, dict):
        sample.update(out)
    else:
        sample["image"] = out
    return sample


class UnreadableSample(NamedTuple):
    """What an ``on_error="skip"`` dataset returns for a file it cannot use."""

    index: int
    path: str
    reason: str


def collate_skipping(samples: Sequence[Any]) -> dict[str, Any]:
    """``default_collate`` of the readable samples; unreadable ones go to ``"unreadable"``.

    Returns:
        The collated batch of the readable samples (no ``"image"`` key when there is none) plus
        ``"unreadable"``: a list of :class:`UnreadableSample` (empty when all were read).
    """
    bad = [s for s in samples if isinstance(s, UnreadableSample)]
    good = [s for s in samples if not isinstance(s, UnreadableSample)]
    batch: dict[str, Any] = default_collate(good) if good else {}
    batch["unreadable"] = bad
    return batch


class SkipLog:
    """Counts the files an evaluation skipped, once each however often and by whichever worker met.

    Feed it every batch of a :func:`collate_skipping` loader (:meth:`update`); it logs one warning per
    new file and reports ``{"used", "skipped", "skipped_files"}`` (:meth:`summary`).
    """

    def __init__(self) -> None:
        self.skipped: dict[str, str] = {}
        self.used = 0

    def update(self, batch: dict[str, Any]) -> bool:
        """Record a batch; returns whether it holds any readable image."""
        for s in batch.get("unreadable", ()):
            if s.path not in self.skipped:
                self.skipped[s.path] = s.reason
                logger.warning("Skipped: %s", s.reason)
        n = len(batch["image"]) if "image" in batch else 0
        self.used += n
        return n > 0

    def summary(self) -> dict[str, Any]:
        """``{"used": images used, "skipped": files skipped, "skipped_files": {path: reason}}``."""
        return {"used": self.used, "skipped": len(self.skipped), "skipped_files": dict(self.skipped)}


def imagenet_split(root: PathLike, split: str) -> pathlib.Path:
    """Folder of an ImageNet split: ``root/<split>`` (``train`` / ``val``) with class sub-folders.

    Raises:
        MissingFileError: The split folder is missing (the message shows the expected layout).
    """
    path = pathlib.Path(root).expanduser() / split
    if not path.is_dir():
        raise MissingFileError(
            f"ImageNet split folder {str(path)!r} not found; expected {root}/train/<wnid>/*.JPEG and "
            f"{root}/val/<wnid>/*.JPEG"
        )
    return path


def coco_split(root: PathLike, split: str) -> pathlib.Path:
    """Images folder of an MS-COCO 2017 split: ``root/<split>2017`` or ``root/images/<split>2017``.

    Annotations (``root/annotations``) are not needed and ignored.

    Raises:
        MissingFileError: Neither folder exists.
    """
    root = pathlib.Path(root).expanduser()
    name = split if split.endswith("2017") else f"{split}2017"
    for cand in (root / name, root / "images" / name):
        if cand.is_dir():
            return cand
    raise MissingFileError(
        f"MS-COCO folder {str(root / name)!r} not found; expected {root}/{name}/*.jpg "
        f"(or {root}/images/{name}/*.jpg)"
    )
