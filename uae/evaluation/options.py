"""Settings shared by the evaluation entry points, and the names they accept.

Light on purpose (the standard library only): the command layer reads :data:`NAMED_DATASETS` and
:data:`EXPORTABLE` to build its parsers without importing torch.

The entry points (:func:`uae.evaluation.reconstruction.evaluate_dataset`,
:func:`uae.evaluation.probe.linear_probe`, :func:`uae.evaluation.spectrum.latent_spectra`,
:func:`uae.evaluation.filtered.filtered_evaluation`, :func:`uae.evaluation.latents.encode_dataset`)
take a model, a dataset and a :class:`RunOptions`; the probe takes a :class:`ProbeOptions` too::

    from uae.evaluation.common import prepare_model
    from uae.evaluation.options import RunOptions
    from uae.evaluation.reconstruction import evaluate_dataset

    model, _ = prepare_model("uae_demo")
    res = evaluate_dataset(model, "tests/assets", options=RunOptions(batch_size=4))
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from uae.errors import InputError
from uae.hardware import WORKER_NICENESS, available_cpus, workers_beside_gpu

#: Dataset names accepted as ``data`` besides a folder path (under :attr:`RunOptions.data_root`).
NAMED_DATASETS = ("imagenet-val", "imagenet-train", "coco-val", "coco-train")
#: Tensors :func:`uae.evaluation.latents.export_latents` can store.
EXPORTABLE = ("bands", "latent", "fused")


#: Most loader workers :func:`default_num_workers` gives one process beside a GPU (each is a process with its
#: own memory; measured up to 15 in ``benchmarks/loader_pipeline.py``, where the main process still had
#: room: it moves 19-30k decoded images/s).
MAX_DEFAULT_WORKERS = 16


def default_num_workers(
    device_type: str, cores: int | None = None, processes: int | None = None, *, decoded: bool = False
) -> int:
    """How many loader workers an evaluation or export starts when not told (``uae eval``, ``uae encode``...).

    With the model on a GPU the loader's workers decode every image while the model takes microseconds per
    image, so they get the cores: one per core but one (the main process's), at most
    :data:`MAX_DEFAULT_WORKERS`, shared among the ``processes`` of a ``torchrun`` launch on this machine.
    Measured on an H200 with 16 cores (``benchmarks/RESULTS.md``): the loader alone delivers 2.1k
    images/s with 4 workers and 7.3k with 15 (500x375 JPEGs for ``uae_demo``), and ``uae eval`` of the
    B architecture runs at 754 images/s with 12 workers against 528 with 4. On the CPU the workers take
    cores from the model itself: at most 4, and none for images already decoded (``decoded``: an image
    array, :mod:`uae.data.arrays`), which the main process reads in microseconds (``uae eval`` of
    ``uae_demo`` on 2 cores: 0.85 of the model's compute-only images/s read in the main process, 0.71
    with 2 workers).

    Args:
        device_type: ``"cuda"``, ``"cpu"``, ``"mps"``...
        cores: Usable cores (default: :func:`uae.hardware.available_cpus`).
        processes: Processes sharing them (default: ``LOCAL_WORLD_SIZE``, set by ``torchrun``, else 1).
        decoded: The images need no decoding (an image array).

    Returns:
        The worker count per process (at least 1, except 0 for ``decoded`` data on a CPU).
    """
    cores = available_cpus() if cores is None else cores
    if processes is None:
        try:
            processes = max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1")))
        except ValueError:
            processes = 1
    if device_type == "cuda":
        return max(1, workers_beside_gpu(processes, MAX_DEFAULT_WORKERS, cores))
    return 0 if decoded else min(4, max(1, cores // processes))


def _positive(name: str, value: int | float | None, minimum: int | float = 1) -> None:
    if value is not None and value < minimum:
        raise InputError(f"{name} must be >= {minimum}, got {value}", param=name)


@dataclass(frozen=True)
class RunOptions:
    """How an evaluation reads its images and runs the model.

    Attributes:
        data_root: Root of a named dataset (ImageNet: the folder holding ``train/`` and ``val/``;
            MS-COCO: the folder holding ``val2017/``).
        limit: Use only the first ``limit`` images (sorted paths).
        max_pixels: Skip images with more pixels than this, checked from the header (``"default"``:
            ``UAE_MAX_IMAGE_PIXELS`` or 2**26; ``None``: no limit).
        batch_size: Images per batch.
        num_workers: DataLoader worker processes (0: load in the calling process; the command line's
            default is :func:`default_num_workers`).
        amp: bf16 / fp16 autocast on CUDA.
        progress: tqdm progress bars.
        draft: Decode a JPEG much larger than the model's input at a reduced scale (1.3-9x faster; the
            pixels are not bit-identical to a full decode, see :mod:`uae.data.image_io`).
        worker_niceness: Niceness the loader's workers add to their own when the model runs on the CPU,
            so that the model's threads preempt them (:func:`uae.hardware.worker_init_beside_model`;
            0-19, 0: keep their priority).

    Raises:
        InputError: ``limit`` or ``batch_size`` below 1, ``num_workers`` below 0 (naming the field).
    """

    data_root: str | None = None
    limit: int | None = None
    max_pixels: int | None | str = "default"
    batch_size: int = 32
    num_workers: int = 0
    amp: bool = True
    progress: bool = True
    draft: bool = True
    worker_niceness: int = WORKER_NICENESS

    def __post_init__(self) -> None:
        _positive("limit", self.limit)
        _positive("batch_size", self.batch_size)
        _positive("num_workers", self.num_workers, 0)
        _positive("worker_niceness", self.worker_niceness, 0)
        if self.worker_niceness > 19:
            raise InputError(
                f"worker_niceness must be at most 19, got {self.worker_niceness}", param="worker_niceness"
            )


@dataclass(frozen=True)
class ProbeOptions:
    """The linear probe's protocol: head training, validation split, pooling and feature cache.

    Attributes:
        epochs: Training epochs of the head.
        head_batch_size: Batch size of the head's training.
        optimizer: ``"sgd"`` (momentum 0.9) or ``"lars"``.
        lr: Peak learning rate (``None``: 0.1 for SGD, ``0.1 * head_batch_size / 256`` for LARS).
        weight_decay: Weight decay.
        warmup_epochs: Linear warm-up epochs before the cosine decay.
        seed: Seed of the split, the head's initialisation and the shuffling.
        val_data: Validation folder (default: ImageNet's ``val/`` for ``imagenet``, else a split of ``data``).
        val_fraction: Share of ``data`` held out when there is no ``val_data``.
        pool: ``"mean"`` (``C`` features) or a grid side ``g`` (average-pool to ``g x g``, ``C*g*g`` features).
        cache_dir: Folder of the cached features (``None``: no cache).

    Raises:
        InputError: A value out of range (naming the field).
    """

    epochs: int = 90
    head_batch_size: int = 256
    optimizer: str = "sgd"
    lr: float | None = None
    weight_decay: float = 0.0
    warmup_epochs: int = 0
    seed: int = 0
    val_data: str | None = None
    val_fraction: float = 0.2
    pool: str | int = "mean"
    cache_dir: str | None = None

    def __post_init__(self) -> None:
        _positive("epochs", self.epochs)
        _positive("head_batch_size", self.head_batch_size)
        _positive("warmup_epochs", self.warmup_epochs, 0)
        if self.optimizer not in ("sgd", "lars"):
            raise InputError(f"optimizer must be 'sgd' or 'lars', got {self.optimizer!r}", param="optimizer")
        if not 0 < self.val_fraction < 1:
            raise InputError(f"val_fraction must be in (0, 1), got {self.val_fraction}", param="val_fraction")
