"""Reconstruction evaluation of a UAE on an image folder, streamed in batches.

The loader decodes in its worker processes and the model runs on the main thread. The metrics run on the
model's device: for a GPU model in a background thread (:class:`BackgroundUpdates`) that takes the
reconstructions batch by batch, with at most one batch waiting, so the GPU does not wait for them; for a
CPU model between the model's batches, since a thread would only take the cores the model's own threads
use (measured on 2 cores: no faster than inline). Memory does not grow with the number of images: the
metrics keep running sums (see :mod:`uae.evaluation.metrics`) and the heap is trimmed when the process
has grown (:class:`uae.evaluation.common.HeapTrimmer`).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch.utils.data import DataLoader

from uae.data.transforms import resolve_data_config
from uae.errors import InputError
from uae.evaluation.common import (
    HeapTrimmer,
    batch_images,
    iterate,
    make_loader,
    match_size,
    model_device,
    open_dataset,
)
from uae.evaluation.metrics import ReconstructionMetrics, as_metrics
from uae.evaluation.options import RunOptions
from uae.utils import maybe_autocast

logger = logging.getLogger(__name__)


class BackgroundUpdates:
    """Call ``update(*args)`` of an accumulator in a background thread, a bounded number of calls behind.

    PyTorch releases the GIL in its operations, so on CPU the metrics run beside the model's forward,
    and on a GPU their kernels are queued from another thread. An error in the thread is raised by the
    next :meth:`put` or by :meth:`close`.

    Args:
        update: The accumulating function (e.g. :meth:`ReconstructionMetrics.update`).
        depth: Calls that may wait (each holds its tensors).
    """

    def __init__(self, update: Callable[..., None], depth: int = 1) -> None:
        self._update = update
        self._queue: queue.Queue[tuple[Any, ...] | None] = queue.Queue(maxsize=depth)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="uae-metrics", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            if self._error is None:
                try:
                    with torch.no_grad():
                        self._update(*item)
                    del item
                except BaseException as e:  # noqa: BLE001 - handed to the main thread
                    self._error = e

    def _check(self) -> None:
        if self._error is not None:
            error, self._error = self._error, None
            raise error

    def put(self, *args: Any) -> None:
        """Queue one call (blocks while ``depth`` calls wait)."""
        self._check()
        self._queue.put(args)

    def close(self, check: bool = True) -> None:
        """Wait for every queued call; raise the thread's error when ``check``."""
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join()
        if check:
            self._check()


@torch.no_grad()
def reconstruct_batch(
    model: torch.nn.Module, x: torch.Tensor, out_size: int, amp: bool = True
) -> torch.Tensor:
    """Reconstruct ``(B, 3, H, W)`` images in ``[0, 1]`` and resize the result to ``out_size`` if needed.

    Returns:
        ``(B, 3, out_size, out_size)`` float32 in ``[0, 1]``.
    """
    with maybe_autocast(x.device, enabled=amp):
        y = model(x, clamp=True).sample
    return match_size(y.float().clamp(0.0, 1.0), out_size)


@torch.no_grad()
def evaluate_reconstruction(
    model: torch.nn.Module,
    loader: DataLoader,
    metrics: ReconstructionMetrics,
    eval_size: int,
    input_filter: Callable[[torch.Tensor], torch.Tensor] | None = None,
    device: str | torch.device = "cpu",
    amp: bool = True,
    progress: bool = True,
    desc: str = "eval",
    background: bool | None = None,
) -> dict[str, Any]:
    """Stream a loader through the model and the metrics.

    Args:
        model: A :class:`uae.UAE` (eval mode).
        loader: Dict batches with ``"image"`` (encoder input) and optionally ``"target"`` (the
            reference at ``eval_size``; otherwise the image itself, resized).
        metrics: The accumulator (its ``compute`` is returned).
        eval_size: Side at which reconstructions are compared with the references (paper: 256).
        input_filter: Optional transform applied to both the model input and the reference (e.g. a
            low-pass filter); the model reconstructs the filtered image and is compared with it.
        device: Device.
        amp: bf16/fp16 autocast on CUDA.
        progress: Show a tqdm bar.
        desc: Progress bar label.
        background: Update the metrics in a background thread (:class:`BackgroundUpdates`) instead of
            between the model's batches (default: for a model on any device but the CPU).

    Returns:
        ``metrics.compute()`` plus ``seconds``, ``images_per_second`` and ``images``
        (``{"used", "skipped", "skipped_files"}``: unreadable files are skipped and counted once).
    """
    from uae.data.datasets import SkipLog

    device = torch.device(device)
    start = time.perf_counter()
    skips = SkipLog()
    if background is None:
        background = device.type != "cpu"
    worker = BackgroundUpdates(metrics.update) if background else None
    update = worker.put if worker is not None else metrics.update
    trimmer = HeapTrimmer(device)  # on growth only
    try:
        for batch in iterate(loader, desc, progress):
            if not skips.update(batch):
                continue
            x, ref = batch_images(batch, device)
            ref = match_size(ref, eval_size)
            if input_filter is not None:
                x = input_filter(x).clamp(0.0, 1.0)
                ref = input_filter(ref).clamp(0.0, 1.0)
            update(reconstruct_batch(model, x, eval_size, amp=amp), ref)
            del x, ref, batch
            trimmer.step()
    except BaseException:
        if worker is not None:
            worker.close(check=False)
        raise
    if worker is not None:
        worker.close()
    if skips.used == 0:
        raise InputError(f"none of the images could be read ({len(skips.skipped)} skipped)")
    out = metrics.compute()
    out["images"] = skips.summary()
    seconds = time.perf_counter() - start
    out["seconds"] = round(seconds, 3)
    out["images_per_second"] = round(out["num_images"] / max(seconds, 1e-9), 3)
    return out


def evaluate_dataset(
    model: torch.nn.Module,
    data: str,
    *,
    metrics: ReconstructionMetrics | Mapping[str, Any] | None = None,
    size: int | None = None,
    options: RunOptions | None = None,
) -> dict[str, Any]:
    """PSNR / SSIM / LPIPS / rFID of a model's reconstructions of a dataset against the originals.

    Args:
        model: A :class:`uae.UAE` (e.g. from :func:`uae.evaluation.common.prepare_model`).
        data: An image folder or a named dataset (``options.data_root``).
        metrics: The accumulator, or keyword arguments of a
            :class:`~uae.evaluation.metrics.ReconstructionMetrics` built on the model's device once the
            data is found (default: PSNR, SSIM, LPIPS and rFID where their weights are available).
        size: Side at which reconstructions are compared (default: the model's output size).
        options: How images are read and run (default: :class:`~uae.evaluation.options.RunOptions`'s).

    Returns:
        ``{"data", "data_path", "input_size", "eval_size", <metrics.compute()>, "seconds",
        "images_per_second", "images", "num_skipped"}``.
    """
    options = options or RunOptions()
    device = model_device(model)
    size = size or model.config.output_size
    ds, root = open_dataset(
        data,
        model.config.img_size,
        options=options,
        out_size=size,
        labels=False,
        data_config=resolve_data_config(model),
        uint8=device.type == "cuda",
    )
    res = evaluate_reconstruction(
        model,
        make_loader(
            ds,
            options.batch_size,
            options.num_workers,
            device=device,
            worker_niceness=options.worker_niceness,
        ),
        as_metrics(metrics, device),
        size,
        device=device,
        amp=options.amp,
        progress=options.progress,
    )
    res = {
        "data": data,
        "data_path": str(root),
        "input_size": model.config.img_size,
        "eval_size": size,
        **res,
    }
    res["num_skipped"] = res["images"]["skipped"]
    return res
