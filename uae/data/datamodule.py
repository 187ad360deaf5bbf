"""One LightningDataModule for every training stage: ImageNet, MS-COCO 2017, or any image folder."""

from __future__ import annotations

import logging
import os
import pathlib
import random
import warnings
from typing import Any, Literal

import lightning.pytorch as pl
import torch
from torch.utils.data import DataLoader, Dataset

from uae.data.arrays import ImageArrayDataset, is_image_array
from uae.data.datasets import ImageFolderDataset, coco_split, find_images, image_transform, imagenet_split
from uae.data.resumable import ResumableDataLoader, ResumableSampler, SeededDataset
from uae.errors import ConfigError, InputError, MissingFileError
from uae.hardware import available_cpus, workers_beside_gpu

logger = logging.getLogger(__name__)

DATASETS = ("folder", "imagenet", "coco")

#: Most DataLoader workers chosen automatically per device (GPU training / CPU training).
MAX_AUTO_WORKERS = {"gpu": 8, "cpu": 2}
#: Lightning's advice to use more DataLoader workers (a ``warnings`` message regex), ignored once the number
#: of workers was chosen from the hardware.
FEW_WORKERS_ADVICE = r"The '\w+' does not have many workers"


def auto_num_workers(devices_per_node: int = 1, accelerator: str = "gpu") -> int:
    """DataLoader workers per device chosen from the CPU cores: one core is left to each device's main
    process; at most :data:`MAX_AUTO_WORKERS` (GPU: 8; CPU training: 2 and only from 8 cores on, since
    there the workers compete with the model's own threads).

    Args:
        devices_per_node: Training processes on this machine.
        accelerator: ``"gpu"`` (any accelerator) or ``"cpu"``.
    """
    cores = available_cpus()
    if accelerator == "cpu":
        return max(0, min(MAX_AUTO_WORKERS["cpu"], cores // max(1, int(devices_per_node)) // 4))
    return workers_beside_gpu(devices_per_node, MAX_AUTO_WORKERS["gpu"], cores)


def _check_readable(ds: ImageFolderDataset | ImageArrayDataset, split: str) -> None:
    """Raise a one-line :class:`~uae.errors.InputError` now (not after training starts) when no file of ``split`` can be
    read; costs one decoded image when the first file is fine."""
    try:
        SeededDataset(ds)[0, 0]  # under its own seed: leaves the process's random state alone
    except (RuntimeError, OSError, ValueError) as e:
        hint = " (or choose other files with val_root / val_fraction)" if split == "validation" else ""
        raise InputError(
            f"none of the {len(ds)} {split} images under {str(ds.root)!r} can be read: replace or remove "
            f"the unreadable files{hint}",
            param="val_root" if split == "validation" else "root",
        ) from e


class RepeatDataset(Dataset):
    """``times`` passes over ``dataset`` as one epoch (small folders with random crops)."""

    def __init__(self, dataset: Dataset, times: int) -> None:
        self.dataset = dataset
        self.times = int(times)

    def __len__(self) -> int:
        return len(self.dataset) * self.times  # type: ignore[arg-type]

    def __getitem__(self, i: int) -> Any:
        return self.dataset[i % len(self.dataset)]  # type: ignore[arg-type]


class UAEDataModule(pl.LightningDataModule):
    """Images for UAE training and validation.

    Layouts (``dataset``):

    * ``"folder"``: any folder of images, searched recursively (:data:`uae.data.IMAGE_EXTENSIONS`);
      class sub-folders give labels (unused by the reconstruction stages). A deterministic
      ``val_fraction`` of the files (seeded shuffle) is held out for validation, or ``val_root`` is used.
    * ``"imagenet"``: ``root/train/<wnid>/*.JPEG`` and ``root/val/<wnid>/*.JPEG``.
    * ``"coco"``: MS-COCO 2017, ``root/train2017`` and ``root/val2017`` (or ``root/images/...``);
      annotations are ignored.

    Train samples: resize shorter side, random crop (or random-resized crop with ``train_scale``), random
    horizontal flip. Val samples: resize shorter side + center crop (deterministic). Batches are dicts:
    ``batch["image"]`` at the encoder input size and, when the decoder output size differs,
    ``batch["target"]`` at the output size cut from the same crop (see :mod:`uae.data.datasets`).

    Args:
        root: Dataset root folder.
        dataset: ``"folder"``, ``"imagenet"`` or ``"coco"``.
        image_size: Encoder input side; ``None``: taken from the model being trained
            (``model.config.img_size``) when the trainer sets the module up.
        out_size: Decoder output side; ``None``: from the model (``model.config.output_size``), or
            ``image_size`` when there is no model.
        batch_size: Batch size per device (global batch = batch_size x devices x num_nodes x
            accumulate_grad_batches).
        val_batch_size: Validation batch per device (default ``batch_size``).
        num_workers: DataLoader worker processes per device; ``None``: chosen from the CPU cores
            available to the process and the devices of the trainer (:func:`auto_num_workers`).
        pin_memory: Pinned host memory for faster host-to-GPU copies; ``None``: when training on CUDA.
        val_fraction: ``"folder"`` only: fraction of the files held out for validation (0 = no validation).
        val_root: A separate validation folder, or an image array (``.npy`` / ``.npz``, ``uae pack``; read
            without decoding, see :mod:`uae.data.arrays`) (overrides ``val_fraction`` and the layout's val
            split).
        max_val_images: Use at most this many validation images (the first ones, deterministic).
        train_scale: Area range of a random-resized crop for training (``None``: full shorter side).
        hflip: Random horizontal flips for training.
        train_repeats: Passes over the training files per epoch (for small folders with random crops).
        seed: Seed of the held-out split, of the training order (a permutation per epoch) and of the
            random crops / flips (one seed per sample), so a resumed run sees exactly the data of an
            uninterrupted one (see :mod:`uae.data.resumable`).
        labels: Class labels from sub-folders: ``None`` automatic, ``False`` never.
    """

    def __init__(
        self,
        root: str,
        dataset: Literal["folder", "imagenet", "coco"] = "folder",
        image_size: int | None = None,
        out_size: int | None = None,
        batch_size: int = 32,
        val_batch_size: int | None = None,
        num_workers: int | None = None,
        pin_memory: bool | None = None,
        val_fraction: float = 0.05,
        val_root: str | None = None,
        max_val_images: int | None = None,
        train_scale: tuple[float, float] | None = None,
        hflip: bool = True,
        train_repeats: int = 1,
        seed: int = 0,
        labels: bool | None = None,
    ) -> None:
        super().__init__()
        if dataset not in DATASETS:
            raise ConfigError(f"dataset must be one of {DATASETS}, got {dataset!r}", param="dataset")
        if not 0.0 <= val_fraction < 1.0:
            raise ConfigError(f"val_fraction must be in [0, 1), got {val_fraction}", param="val_fraction")
        if batch_size < 1 or train_repeats < 1:
            raise ConfigError(f"batch_size and train_repeats must be >= 1, got {batch_size}, {train_repeats}")
        self.save_hyperparameters()
        self.root = pathlib.Path(root).expanduser()
        if not self.root.exists():
            raise MissingFileError(f"data root {str(self.root)!r} does not exist", param="root")
        if val_root is not None and not pathlib.Path(val_root).expanduser().exists():
            raise MissingFileError(
                f"validation folder val_root {val_root!r} does not exist", param="val_root"
            )
        self.dataset = dataset
        self.image_size = image_size
        self.out_size = out_size
        self.batch_size = batch_size
        self.val_batch_size = val_batch_size or batch_size
        self.num_workers = num_workers
        self.pin_memory = pin_memory
        self.val_fraction = val_fraction
        self.val_root = val_root
        self.max_val_images = max_val_images
        self.train_scale = train_scale
        self.hflip = hflip
        self.train_repeats = train_repeats
        self.seed = seed
        self.labels = labels
        self.train_set: ImageFolderDataset | None = None
        self.val_set: ImageFolderDataset | ImageArrayDataset | None = None

    # ------------------------------------------------------------------ sizes
    def _resolve_sizes(self) -> tuple[int, int]:
        size, out = self.image_size, self.out_size
        model = None
        trainer = getattr(self, "trainer", None)
        if trainer is not None and getattr(trainer, "lightning_module", None) is not None:
            model = getattr(trainer.lightning_module, "model", None)
        cfg = getattr(model, "config", None)
        if size is None:
            if cfg is None:
                raise ConfigError(
                    "UAEDataModule: image_size is not set and there is no model to take it from",
                    param="image_size",
                )
            size = int(cfg.img_size)
        if out is None:
            out = int(cfg.output_size) if cfg is not None and cfg.img_size == size else size
        return size, out

    # ------------------------------------------------------------------ files
    def _split_files(
        self,
    ) -> tuple[list[pathlib.Path], list[pathlib.Path], pathlib.Path, pathlib.Path | None]:
        """Train files, val files, and the folders their class names are relative to."""
        if self.dataset == "imagenet":
            tr, va = imagenet_split(self.root, "train"), imagenet_split(self.root, "val")
        elif self.dataset == "coco":
            tr, va = coco_split(self.root, "train"), coco_split(self.root, "val")
        else:
            tr, va = self.root, None
        if self.val_root is not None:
            va = pathlib.Path(self.val_root).expanduser()
        train_files = find_images(tr)
        if va is not None:
            val_files = [] if is_image_array(va) else find_images(va)
        else:
            files = list(train_files)
            random.Random(self.seed).shuffle(files)
            n_val = int(round(len(files) * self.val_fraction))
            if self.val_fraction > 0 and len(files) >= 2:
                n_val = max(1, min(n_val, len(files) - 1))
            val_files, train_files = sorted(files[:n_val]), sorted(files[n_val:])
        if self.max_val_images is not None:
            val_files = val_files[: self.max_val_images]
        return train_files, val_files, tr, va if va is not None else tr

    def setup(self, stage: str | None = None) -> None:
        """Scan the folders and build the datasets (raises before training on a missing/empty folder)."""
        if self.train_set is not None:
            return
        size, out = self._resolve_sizes()
        train_files, val_files, train_root, val_root = self._split_files()
        labels = False if self.dataset == "coco" else self.labels
        self.train_set = ImageFolderDataset(
            train_files,
            transform=image_transform(
                size, train=True, out_size=out, hflip=self.hflip, scale=self.train_scale
            ),
            labels=labels,
            class_root=train_root,
        )
        classes = self.train_set.classes or None
        val_transform = image_transform(size, train=False, out_size=out)
        self.val_set = None
        if val_root is not None and is_image_array(val_root):
            self.val_set = ImageArrayDataset(
                val_root,
                val_transform,
                labels=labels,
                limit=self.max_val_images,
                classes=classes if labels is not False else None,
            )
        elif val_files:
            self.val_set = ImageFolderDataset(
                val_files,
                transform=val_transform,
                labels=labels,
                class_root=val_root,
                classes=classes if labels is not False else None,
            )
        for name, ds in (("training", self.train_set), ("validation", self.val_set)):
            if ds is not None:
                _check_readable(ds, name)
        logger.info(
            "UAEDataModule(%s, %s): %d train / %d val images, %d px in, %d px out",
            self.dataset,
            self.root,
            len(self.train_set),
            len(self.val_set or []),
            size,
            out,
        )

    # ------------------------------------------------------------------ loaders
    def _accelerator(self) -> tuple[str, int]:
        """``("gpu" | "cpu", processes on this node)`` of the trainer (``("cpu", 1)`` without one)."""
        trainer = getattr(self, "trainer", None)
        if trainer is None:
            return "cpu", 1
        from lightning.pytorch.accelerators import CPUAccelerator

        kind = "cpu" if isinstance(trainer.accelerator, CPUAccelerator) else "gpu"
        return kind, max(1, int(getattr(trainer, "num_devices", 1) or 1))

    def resolved_num_workers(self) -> int:
        """``num_workers``, or the automatic choice when it is ``None``."""
        if self.num_workers is not None:
            return int(self.num_workers)
        kind, devices = self._accelerator()
        n = auto_num_workers(devices, kind)
        if not getattr(self, "_logged_workers", False):
            logger.info(
                "DataLoader workers per device: %d (from %d CPU cores; set data.num_workers)",
                n,
                available_cpus(),
            )
            self._logged_workers = True
        # Lightning's "does not have many workers" advice does not apply to a number chosen from the hardware.
        warnings.filterwarnings("ignore", message=FEW_WORKERS_ADVICE)
        return n

    def _pin_memory(self) -> bool:
        if self.pin_memory is not None:
            return bool(self.pin_memory)
        trainer = getattr(self, "trainer", None)
        if trainer is None:
            return False
        from lightning.pytorch.accelerators import CUDAAccelerator

        return isinstance(trainer.accelerator, CUDAAccelerator)

    def _loader(self, ds: Dataset, batch_size: int, train: bool) -> DataLoader:
        n = len(ds)  # type: ignore[arg-type]
        workers = self.resolved_num_workers()
        kw: dict[str, Any] = {
            "batch_size": batch_size,
            "num_workers": workers,
            "pin_memory": self._pin_memory(),
            "persistent_workers": workers > 0,
        }
        if not train:
            return DataLoader(ds, shuffle=False, drop_last=False, **kw)
        trainer = getattr(self, "trainer", None)
        replicas = int(trainer.world_size) if trainer is not None else 1
        rank = int(trainer.global_rank) if trainer is not None else 0
        sampler = ResumableSampler(ds, num_replicas=replicas, rank=rank, shuffle=True, seed=self.data_seed())
        return ResumableDataLoader(
            SeededDataset(ds),
            sampler=sampler,
            drop_last=n // replicas >= batch_size,
            generator=torch.Generator().manual_seed(
                self.data_seed()
            ),  # worker base seeds: not the global RNG
            **kw,
        )

    def data_seed(self) -> int:
        """Seed of the training order and augmentations: ``seed_everything``'s seed when one was set
        (``PL_GLOBAL_SEED``), else ``seed``."""
        return int(os.environ.get("PL_GLOBAL_SEED", self.seed))

    def train_dataloader(self) -> DataLoader:
        if self.train_set is None:
            self.setup("fit")
        assert self.train_set is not None
        ds: Dataset = (
            self.train_set if self.train_repeats == 1 else RepeatDataset(self.train_set, self.train_repeats)
        )
        return self._loader(ds, self.batch_size, train=True)

    def val_dataloader(self) -> DataLoader | list:
        if self.train_set is None:
            self.setup("validate")
        if self.val_set is None:
            return []
        return self._loader(self.val_set, self.val_batch_size, train=False)
