"""Shared steps of the evaluations: model and dataset resolution, loaders, devices, JSON output and
skipped-image summaries."""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

from uae.errors import InputError, MissingFileError
from uae.evaluation.options import NAMED_DATASETS, RunOptions
from uae.factory import load_model
from uae.hardware import WORKER_NICENESS, glibc, worker_init_beside_model

logger = logging.getLogger(__name__)


def resolve_device(device: str | torch.device | None) -> torch.device:
    """``"auto"``/``None`` -> CUDA when available, else CPU; otherwise ``torch.device(device)``.

    Raises:
        InputError: Not a device, or not available here (e.g. ``cuda`` without a GPU).
    """
    from uae.utils import check_device

    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return check_device(device)


def prepare_model(
    model: str, *, random_init: bool = False, device: str | torch.device | None = "auto"
) -> tuple[Any, torch.device]:
    """``(model, device)`` for an evaluation: :func:`uae.factory.load_model` on the resolved device.

    Args:
        model: A registered name, a ``save_pretrained`` directory or a Hub repo id.
        random_init: A registered name without its trained weights (smoke tests).
        device: ``"auto"`` (CUDA when available), ``"cpu"``, ``"cuda:1"``, ...
    """
    dev = resolve_device(device)
    return load_model(model, pretrained=not random_init, device=dev), dev


def trim_heap() -> None:
    """Give the heap memory freed so far back to the operating system (glibc's ``malloc_trim(0)``, every
    thread's arena; nothing on other C libraries).

    A thread that allocates and frees tensors batch after batch (the metrics' thread of an evaluation)
    otherwise leaves its glibc arena fragmented, and the process grows with the number of batches
    (measured: ~70 KiB per image on ``uae eval``). One call costs a few milliseconds with a ~1 GB
    heap; the evaluations call it through a :class:`HeapTrimmer`, and only when the model runs on the CPU.
    """
    libc = glibc()
    if libc is not None:
        libc.malloc_trim(0)


TRIM_SLACK_BYTES = 8 * 2**20
"""The growth of the resident size past its reference at which a :class:`HeapTrimmer` trims by default.
(A slack of 64 MiB, the free memory a steady heap keeps at its top, was no faster for ``uae encode`` and
let it grow by 69 MiB from 300 to 9000 images.)"""


def resident_bytes() -> int | None:
    """This process's resident set size in bytes (``/proc/self/statm``), or ``None`` where there is none."""
    try:
        with open("/proc/self/statm", "rb") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError, AttributeError):
        return None


class HeapTrimmer:
    """Calls :func:`trim_heap` in a loop over batches: only when the process has grown, or after every batch.

    With a ``slack`` in bytes (the default, :data:`TRIM_SLACK_BYTES`, used by ``uae encode``, ``uae eval``
    and the probe's features), :meth:`step` reads the resident size and trims only when it exceeds its
    reference by more than that; the batch after a trim sets the reference again when the process is
    still above it (live memory grew: nothing left to trim). Their resident size stays flat (300 vs 9000
    images: ``uae eval`` +10.7 MiB, the probe's features -1.6 MiB beyond the features themselves). After
    every batch (``slack=None``) it is flattest, at a cost: the next batch faults the memory handed back
    in again (``uae eval`` with ``uae_demo`` on 2 CPU cores: the model alone 0.82x of its speed). Where the
    resident size cannot be read, every step trims (:func:`trim_heap` is a no-op off glibc anyway).

    Args:
        device: Where the loop's model runs; only a CPU model trims (the host heap churns only then).
        slack: Bytes of growth over the reference allowed before a trim; ``None``: trim after every batch.
    """

    def __init__(self, device: torch.device, slack: int | None = TRIM_SLACK_BYTES) -> None:
        self.enabled = torch.device(device).type == "cpu"
        self.slack = None if slack is None else int(slack)
        self.reference: int | None = None
        self.just_trimmed = False

    def step(self) -> bool:
        """Call after each batch; trims when the process has grown past its reference. Returns whether it did."""
        if not self.enabled:
            return False
        rss = None if self.slack is None else resident_bytes()
        if rss is None:
            trim_heap()
            return True
        if self.reference is None or self.just_trimmed:
            self.just_trimmed = False
            if self.reference is None or rss > self.reference + self.slack:
                self.reference = rss  # the first batch, or live memory that a trim could not give back
            return False
        if rss <= self.reference + self.slack:
            return False
        trim_heap()
        self.just_trimmed = True
        return True


def process_group() -> tuple[int, int]:
    """``(rank, world_size)`` of the running ``torch.distributed`` process group, ``(0, 1)`` without one."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def barrier() -> None:
    """Wait for every process of the group (nothing without one)."""
    import torch.distributed as dist

    if process_group()[1] > 1:
        dist.barrier()


def gather_objects(obj: Any) -> list[Any]:
    """Every process's ``obj``, in rank order (``[obj]`` without a group)."""
    import torch.distributed as dist

    world = process_group()[1]
    if world == 1:
        return [obj]
    out: list[Any] = [None] * world
    dist.all_gather_object(out, obj)
    return out


def init_distributed(device: str | torch.device | None = "auto") -> str | torch.device | None:
    """Join the process group of a ``torchrun`` launch (``WORLD_SIZE`` > 1 in the environment).

    NCCL with one GPU per process (``cuda:LOCAL_RANK``) when the device is CUDA (or ``"auto"`` with
    CUDA available), gloo on CPU. Without ``torchrun`` (or with one process) nothing happens.

    Args:
        device: The requested device (``"auto"``, ``"cpu"``, ``"cuda"``, ...).

    Returns:
        The device this process should use (``device`` itself without a launch).
    """
    import datetime

    import torch.distributed as dist

    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or not dist.is_available():
        return device
    cuda = torch.cuda.is_available() and (device in (None, "auto") or str(device).startswith("cuda"))
    if cuda:
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        # A resumed export re-hashes its shards before the first barrier: allow hours, not NCCL's 10 min.
        dist.init_process_group("nccl" if cuda else "gloo", timeout=datetime.timedelta(hours=6))
    return device


def model_device(model: torch.nn.Module) -> torch.device:
    """The device of a model's first parameter (CPU for a model without parameters)."""
    p = next(model.parameters(), None)
    return p.device if p is not None else torch.device("cpu")


def weights_fingerprint(model: torch.nn.Module) -> str:
    """A cheap fingerprint of the weights (names, shapes and a few values of every tensor), for caches."""
    h = hashlib.sha1()
    for k, v in model.state_dict().items():
        flat = v.detach().flatten()
        h.update(f"{k}{tuple(v.shape)}".encode())
        if flat.numel():
            h.update(flat[:: max(1, flat.numel() // 8)].double().cpu().numpy().tobytes())
    return h.hexdigest()


def tokenizer_fingerprint(model: torch.nn.Module) -> str:
    """The identity of a tokenizer's latent space: its config (without ``name``) and weights (latent
    statistics included, :func:`weights_fingerprint`). Renaming or moving a tokenizer keeps it.

    ``uae encode`` records it in ``index.json`` (``model.fingerprint``); a generator's training data are
    checked against the tokenizer it is paired with (:mod:`uae.training.latent_data`).
    """
    cfg = {k: v for k, v in model.config.to_dict().items() if k != "name"}  # type: ignore[operator]
    blob = json.dumps({"config": cfg, "weights": weights_fingerprint(model)}, sort_keys=True, default=str)
    return hashlib.sha1(blob.encode()).hexdigest()


def resolve_data(data: str, data_root: str | None = None) -> Path:
    """Folder or file of ``data``: a folder path, an image array file (``.npy``/``.npz``, see
    :mod:`uae.data.arrays`), or a named dataset under ``data_root``.

    ``imagenet-val`` -> ``<root>/val`` (class sub-folders), ``coco-val`` -> ``<root>/val2017`` (flat).

    Raises:
        MissingFileError: The folder or file does not exist, or a named dataset without ``data_root``.
    """
    from uae.data.arrays import IMAGE_ARRAY_SUFFIXES, is_image_array
    from uae.data.datasets import coco_split, imagenet_split

    if data in NAMED_DATASETS:
        if not data_root:
            raise MissingFileError(
                f"{data} needs data_root (ImageNet: the folder holding train/ and val/ with class "
                "sub-folders; MS-COCO: the folder holding val2017/)",
                param="data_root",
            )
        family, split = data.split("-")
        return imagenet_split(data_root, split) if family == "imagenet" else coco_split(data_root, split)
    path = Path(data).expanduser()
    if is_image_array(path):
        return path
    if not path.is_dir():
        raise MissingFileError(
            f"data {data!r} is not a folder, an image array ({', '.join(IMAGE_ARRAY_SUFFIXES)}) nor one of "
            f"{', '.join(NAMED_DATASETS)}",
            param="data",
        )
    return path


def open_dataset(
    data: str,
    size: int,
    *,
    options: RunOptions,
    out_size: int | None = None,
    labels: bool | None = None,
    classes: Sequence[str] | None = None,
    data_config: Mapping[str, Any] | None = None,
    uint8: bool = False,
) -> tuple[Dataset, Path]:
    """``(dataset, folder)`` of ``data`` read as :class:`RunOptions` say (:func:`resolve_data`, :func:`build_dataset`).

    Args:
        data: A folder or a named dataset.
        size: Encoder input side.
        options: ``data_root``, ``limit`` and ``max_pixels`` are used.
        out_size: Reference side (see :func:`build_dataset`).
        labels: Passed to the dataset.
        classes: Class names in label order (see :func:`build_dataset`).
        data_config: The model's data config (see :func:`build_dataset`).
        uint8: ``uint8`` samples where the pipeline allows (see :func:`build_dataset`), for batches that
            go to a GPU through :func:`batch_images`, which scales them there. The runners ask for it
            on CUDA only: on the CPU the scaling would move from the loader's workers to the model's
            thread (measured on 2 cores at 224/256 px: 0.93x the loader's rate).
    """
    root = resolve_data(data, options.data_root)
    ds = build_dataset(
        root,
        size,
        out_size=out_size,
        labels=labels,
        limit=options.limit,
        max_pixels=options.max_pixels,
        classes=classes,
        data_config=data_config,
        draft=options.draft,
        uint8=uint8,
    )
    return ds, root


def build_dataset(
    root: str | os.PathLike,
    size: int,
    out_size: int | None = None,
    labels: bool | None = None,
    limit: int | None = None,
    train: bool = False,
    max_pixels: int | None | str = "default",
    on_error: str = "skip",
    classes: Sequence[str] | None = None,
    data_config: Mapping[str, Any] | None = None,
    draft: bool = True,
    uint8: bool = False,
) -> Dataset:
    """An :class:`~uae.data.ImageFolderDataset` (or, for an ``.npy``/``.npz`` file, an
    :class:`~uae.data.arrays.ImageArrayDataset`) with the eval transform (center crop).

    With ``data_config`` (``uae.data.resolve_data_config(model)``: a converted release's own
    evaluation crop and resize, see :mod:`uae.data.transforms`) images are read as the model's release
    reads them; without it, uae's centre crop and PIL resize.

    Unreadable images (and images over the pixel budget) are skipped, never replaced by another
    image: the dataset returns a marker that :func:`make_loader`'s collate function drops and lists
    under ``batch["unreadable"]`` (count them with :class:`uae.data.datasets.SkipLog`).

    Args:
        root: Image folder, or image array file (``max_pixels``, ``on_error`` and ``draft`` do not apply).
        size: Encoder input side.
        out_size: Reference side (the decoder's output); when it differs from ``size`` samples also
            hold ``"target"`` cut from the same crop.
        labels: Passed to the dataset (``None``: class sub-folders when present).
        limit: Keep only the first ``limit`` images (sorted order).
        train: Random crop + flip instead of a center crop.
        max_pixels: Pixel budget per image (``"default"``: ``UAE_MAX_IMAGE_PIXELS`` or 2**26; ``None``: none).
        on_error: ``"skip"`` (evaluation) or ``"next"`` (substitute the next readable image).
        classes: Class names in label order (e.g. the training split's, for a validation folder).
        data_config: The model's data config; ``size`` and ``out_size`` override its input and
            reference sides.
        draft: Decode large JPEGs at a reduced scale (see :class:`~uae.data.datasets.ImageFolderDataset`;
            never for a release's own pipeline, which decodes at full size).
        uint8: Samples hold ``uint8`` pixels where the pipeline allows it (uae's, not a release's
            resize or a normalisation): a quarter of the bytes from the loader's workers to the model;
            :func:`batch_images` scales them (exactly ``to_tensor``'s floats) on the model's device.
    """
    from uae.data.transforms import create_transform, image_transform

    if limit is not None and limit <= 0:
        raise InputError(f"limit must be positive, got {limit}", param="limit")
    if data_config is not None:
        transform = create_transform(
            data_config,
            train=train,
            target=out_size is not None,
            uint8=uint8,
            img_size=size,
            target_size=out_size,
        )
    else:
        transform = image_transform(size, train=train, out_size=out_size, uint8=uint8 and not train)
    return images_dataset(
        root,
        transform,
        labels=labels,
        limit=limit,
        max_pixels=max_pixels,
        on_error=on_error,
        classes=classes,
        draft=draft,
    )


def images_dataset(
    root: str | os.PathLike,
    transform: Callable[[Any], Any],
    *,
    labels: bool | None = None,
    limit: int | None = None,
    max_pixels: int | None | str = "default",
    on_error: str = "skip",
    classes: Sequence[str] | None = None,
    draft: bool = True,
) -> Dataset:
    """The images of a folder (:class:`~uae.data.ImageFolderDataset`) or of an image array file
    (:class:`~uae.data.arrays.ImageArrayDataset`, where ``max_pixels``, ``on_error`` and ``draft`` do not
    apply) through ``transform``; the first ``limit`` (sorted paths). See :func:`build_dataset`.
    """
    from uae.data.arrays import ImageArrayDataset, is_image_array
    from uae.data.datasets import ImageFolderDataset, find_images

    if limit is not None and limit <= 0:
        raise InputError(f"limit must be positive, got {limit}", param="limit")
    if is_image_array(root):
        return ImageArrayDataset(
            root, transform, labels=labels, limit=limit, classes=None if classes is None else list(classes)
        )
    files: Sequence[Path] | Path = Path(root) if limit is None else find_images(root)[:limit]
    return ImageFolderDataset(
        files,
        transform=transform,
        labels=labels,
        class_root=root,  # the class sub-folders of a list of files
        classes=classes,
        on_error=on_error,
        max_pixels=max_pixels,
        draft=draft,
    )


def make_loader(
    dataset: Dataset,
    batch_size: int,
    num_workers: int = 0,
    shuffle: bool = False,
    device: str | torch.device | None = None,
    worker_niceness: int = WORKER_NICENESS,
) -> DataLoader:
    """A ``DataLoader`` of dict batches (``pin_memory`` when the batches go to a CUDA ``device``; with
    ``device=None``, whenever CUDA is available). With ``device`` the CPU, the workers add
    ``worker_niceness`` to their own (:func:`uae.hardware.worker_init_beside_model`).

    Batches come from :func:`uae.data.datasets.collate_skipping`: samples the dataset could not read
    are left out and listed under ``batch["unreadable"]``; a batch without any readable image has
    no ``"image"`` key.
    """
    from uae.data.datasets import collate_skipping

    if batch_size <= 0:
        raise InputError(f"batch_size must be positive, got {batch_size}", param="batch_size")
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle,
        num_workers=num_workers,
        pin_memory=torch.cuda.is_available() if device is None else torch.device(device).type == "cuda",
        persistent_workers=False,
        collate_fn=collate_skipping,
        worker_init_fn=None
        if device is None
        else worker_init_beside_model(torch.device(device).type, worker_niceness),
    )


def batch_images(batch: dict[str, Any], device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """``(model input, reference)`` of a dict batch on ``device``, float32; the reference is ``"target"``
    when present. ``uint8`` pixels (:func:`build_dataset` with ``uint8=True``) are moved as they are and
    scaled there (:func:`uae.data.transforms.scale_uint8`: the same floats as scaling in the workers)."""
    from uae.data.transforms import scale_uint8

    x = scale_uint8(batch["image"].to(device, non_blocking=True))
    ref = scale_uint8(batch["target"].to(device, non_blocking=True)) if "target" in batch else x
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
        InputError: ``path`` is an existing folder or lies under a file (naming it).
    """
    from uae.files import write_json as _write
    from uae.paths import output_file

    return _write(output_file(path, param="path"), data, indent=2, sort_keys=False, default=_json_default)


def _json_default(o: Any) -> Any:
    if isinstance(o, Path):
        return str(o)
    if isinstance(o, torch.Tensor):
        return o.tolist()
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def images_summary(*logs: Any) -> dict[str, Any]:
    """One ``{"used", "skipped", "skipped_files"}`` entry from one or more :class:`uae.data.datasets.SkipLog`."""
    skipped: dict[str, str] = {}
    for log in logs:
        skipped.update(log.skipped)
    return {"used": sum(log.used for log in logs), "skipped": len(skipped), "skipped_files": skipped}
