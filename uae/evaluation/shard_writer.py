"""Writing a latent export's shards (:mod:`uae.evaluation.latents`; the folder's layout, reading and checking
are in :mod:`uae.evaluation.shards`).

:class:`ShardBuffer` gathers one shard's batches (on the CPU straight into its file, a
:class:`~uae.evaluation.shard_file.ShardFile`, elsewhere in memory) and :class:`ShardWriter` commits finished
shards in order, in a background thread for a GPU export.
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from uae.evaluation.shard_file import ShardFile
from uae.evaluation.shards import channel_moments, combine_moments, output_errors

logger = logging.getLogger(__name__)


def shard_metadata(count: int, shard: int, start: int) -> dict[str, str]:
    """A shard file's header metadata: ``{"uae_shard": '{"count": n, "shard": s, "start": lo}'}``."""
    return {"uae_shard": json.dumps({"count": count, "shard": shard, "start": start}, sort_keys=True)}


class ShardBuffer:
    """One shard being encoded: its encoded tensors, indices, labels, running float64 moments, skipped files.

    On the CPU, given the shard's ``path``, the first batch fixes the file's layout (a :class:`ShardFile` on
    a temp file beside ``path``) and every batch is written there as it comes: the disk works while the next
    batches are encoded and memory holds a batch, not a shard (~1 GiB by default); :meth:`commit_file` adds
    the indices, labels and moments and renames the file into place. A shard that turns out to have
    unreadable images (fewer rows than planned) is read back and written whole (:meth:`row_tensors`).
    Elsewhere (no ``path``, or a GPU) the tensors are preallocated: one shard in memory.

    Nothing a batch leaves behind is allocated per batch (the moments are folded into one running
    ``(count, mean, M2)`` per tensor, in the order :func:`combine_moments` would combine the batches, so
    the floats are the same): small long-lived blocks between each batch's temporaries would fragment
    the heap, and the process would grow batch after batch.

    With ``device`` a CUDA device, :meth:`add` does not wait for the GPU: the shard's tensors are
    allocated in pinned host memory, each batch is converted to the storage dtype on the GPU and copied
    there asynchronously, and its float64 moments stay on the GPU. :meth:`finish` (called before the
    shard is written) waits for the GPU once and brings the moments to the CPU. When the pinned memory
    cannot be had, that tensor is pageable and its batches are copied as they come (a warning says so).
    PyTorch keeps freed pinned memory for reuse: the next shard takes the same buffers.

    Args:
        shard: The shard number.
        lo: Its first dataset index.
        hi: One past its last dataset index.
        store: Storage dtype of the encoded tensors.
        device: Where the encoded batches come from (``None``: the CPU).
        path: The shard's file, to stream it there (CPU only; ``None``: keep the shard in memory).
    """

    def __init__(
        self,
        shard: int,
        lo: int,
        hi: int,
        store: torch.dtype,
        device: torch.device | None = None,
        path: str | os.PathLike | None = None,
    ) -> None:
        self.shard, self.lo, self.capacity, self.store = shard, lo, hi - lo, store
        self.count = 0
        self.tensors: dict[str, torch.Tensor] = {}
        self.pinned: dict[str, bool] = {}
        self.moments: dict[str, tuple[int, torch.Tensor, torch.Tensor]] = {}
        self.shapes: dict[str, tuple[int, ...]] = {}  # each encoded tensor's shape per image
        self.index = torch.empty(self.capacity, dtype=torch.long)
        self.label = torch.empty(self.capacity, dtype=torch.long)
        self.skipped: list[tuple[int, str]] = []
        self.device = device if device is not None and device.type == "cuda" else None
        self.path = Path(path) if path is not None and self.device is None else None
        self.file: ShardFile | None = None

    def _allocate(self, key: str, shape: tuple[int, ...]) -> torch.Tensor:
        """The shard's tensor for ``key``: pinned for a CUDA buffer when the memory can be had."""
        self.pinned[key] = False
        if self.device is not None:
            try:
                tensor = torch.empty(shape, dtype=self.store, pin_memory=True)
            except RuntimeError as e:  # pinned (page-locked) memory is a limited resource
                size = math.prod(shape) * torch.empty(0, dtype=self.store).element_size()
                logger.warning(
                    "Could not pin %.1f MiB of host memory for shard %d (%s); copying its batches one at a time",
                    size / 2**20,
                    self.shard,
                    str(e).splitlines()[0] if str(e) else type(e).__name__,
                )
            else:
                self.pinned[key] = True
                return tensor
        # Touched now, not page by page as the batches arrive: the process's resident size then grows once
        # per shard, so a HeapTrimmer watching it for heap growth is not set off batch after batch.
        return torch.zeros(shape, dtype=self.store)

    def _open_file(self) -> None:
        """Create the shard's temp file with the layout of a shard without unreadable images."""
        assert self.path is not None
        layout = {k: (self.store, (self.capacity, *self.shapes[k])) for k in self.shapes}
        layout.update({k: (t.dtype, tuple(t.shape)) for k, t in self.tail_tensors(self.capacity).items()})
        with output_errors(self.path.parent, self.path.name):
            self.file = ShardFile.beside(
                self.path, layout, shard_metadata(self.capacity, self.shard, self.lo)
            )

    def add(self, encoded: dict[str, torch.Tensor], index: Any, label: Any) -> None:
        """Store a batch of encoded tensors (float32, on the buffer's device) with their dataset indices and
        labels.

        Raises:
            OutputError: Writing a streamed shard's file failed (a full disk).
        """
        b = len(index)
        for k, v in encoded.items():
            # float64 moments where the batch is (a GPU encode does not wait for them on the CPU)
            n, mean, m2 = channel_moments(v, channel_dim=2 if k == "bands" else 1)
            if self.device is None:
                mean, m2 = mean.cpu(), m2.cpu()
            part = (n, mean, m2)
            self.moments[k] = combine_moments([self.moments[k], part]) if k in self.moments else part
            self.shapes.setdefault(k, tuple(v.shape[1:]))
        if self.path is not None and self.file is None and self.count == 0 and not self.skipped:
            self._open_file()  # a shard whose first images are unreadable stays in memory
        for k, v in encoded.items():
            if self.file is not None:
                with output_errors(self.path.parent, self.path.name):  # type: ignore[union-attr]
                    self.file.write_rows(k, self.count, v.to(self.store))
                continue
            if k not in self.tensors:
                self.tensors[k] = self._allocate(k, (self.capacity, *v.shape[1:]))
            rows = self.tensors[k][self.count : self.count + b]
            if self.pinned[k]:
                rows.copy_(v.to(self.store), non_blocking=True)  # ordered on the stream: v may be freed
            else:
                rows.copy_(v)
        self.index[self.count : self.count + b] = torch.as_tensor(index)
        self.label[self.count : self.count + b] = torch.as_tensor(label)
        self.count += b

    def finish(self) -> None:
        """Wait for the asynchronous copies of a CUDA shard and bring its moments to the CPU (a no-op
        elsewhere). Call it in the thread that added the batches, before the shard is written."""
        if self.device is None:
            return
        if any(self.pinned.values()):
            torch.cuda.current_stream(self.device).synchronize()
        self.moments = {k: (n, mean.cpu(), m2.cpu()) for k, (n, mean, m2) in self.moments.items()}

    def row_tensors(self) -> dict[str, torch.Tensor]:
        """The encoded tensors of the images added so far, ``(count, ...)`` each (a streamed shard's are read
        back from its file)."""
        if self.file is not None:
            return {k: self.file.read_rows(k, self.count) for k in self.shapes}
        return {k: self.tensors[k][: self.count] for k in self.shapes}  # rows of a contiguous tensor: no copy

    def tail_tensors(self, rows: int | None = None) -> dict[str, torch.Tensor]:
        """The indices, labels and per-channel moments of the images added so far (in file order; with
        ``rows``, the first ``rows`` indices and labels: the file's layout for ``rows`` images)."""
        rows = self.count if rows is None else rows
        tensors = {"index": self.index[:rows], "label": self.label[:rows]}
        for k, (count, mean, m2) in self.moments.items():
            tensors[f"stats.{k}.mean"] = mean
            tensors[f"stats.{k}.m2"] = m2
            tensors[f"stats.{k}.count"] = torch.tensor([count], dtype=torch.int64)
        return tensors

    @property
    def streamed(self) -> bool:
        """Whether the shard's file was written as it was encoded and is complete but for its tail."""
        return self.file is not None and self.count == self.capacity

    def commit_file(self) -> tuple[int, str]:
        """Finish a :attr:`streamed` shard's file (indices, labels, moments) and rename it into place.

        Returns:
            ``(bytes, sha256)`` of the file.
        """
        if not self.streamed or self.file is None or self.path is None:
            raise RuntimeError(f"shard {self.shard} was not streamed to a file in full")
        tail = self.tail_tensors()  # before the file is handed over: a failure here leaves it to discard()
        file, self.file = self.file, None
        return file.commit_with(tail, self.path)

    def discard(self) -> None:
        """Delete the streamed temp file, if any (a shard that is written whole, or an export that stopped)."""
        if self.file is not None:
            self.file.discard()
            self.file = None


def release_pinned_memory() -> None:
    """Give back the pinned host memory PyTorch keeps cached for reuse once nothing holds it (the shard
    buffers of a GPU export: up to two shards, ~2 GiB by default), where this torch can
    (``torch.accelerator.empty_host_cache``)."""
    empty = getattr(getattr(torch, "accelerator", None), "empty_host_cache", None)
    if empty is not None and torch.cuda.is_initialized():  # no CUDA context: nothing was pinned
        empty()


class ShardWriter:
    """Commits finished shards in a background thread, one at a time, while the next shard is encoded.

    Writing a shard (serialise, SHA-256, fsync, rename, index) takes seconds per GiB and releases the
    GIL, so on a GPU it overlaps the encoding of the next shard instead of stalling it. At most one
    shard is being written: :meth:`submit` first waits for the previous one, so memory holds at most
    two shards and shards are committed in order. A write's error (a full disk: ``OutputError``) is
    raised in the caller's thread by the next :meth:`submit` or :meth:`wait`. As a context manager it
    closes on exit (:meth:`close`, ``failed`` when leaving with an exception).

    Args:
        commit: Writes and records one :class:`ShardBuffer` (the commit point).
        callback: Called as ``callback("shard", shard, batches)`` in the caller's thread once a shard
            is committed.
        background: Write in the background thread (a GPU export; :meth:`close` then also gives back the
            pinned memory of the written shards, :func:`release_pinned_memory`); ``False`` writes in
            :meth:`submit` itself (for a model on the CPU, whose cores the thread would take: measured
            0.92x on 2 cores).
    """

    def __init__(
        self,
        commit: Callable[[ShardBuffer], None],
        callback: Callable[[str, int, int], None] | None,
        background: bool = True,
    ) -> None:
        from concurrent.futures import ThreadPoolExecutor

        self.commit, self.callback = commit, callback
        self.pool = (
            ThreadPoolExecutor(max_workers=1, thread_name_prefix="uae-shard-writer") if background else None
        )
        self.pending: tuple[Any, int, int] | None = None

    def submit(self, buf: ShardBuffer, batches: int) -> None:
        """Start writing ``buf`` (a complete shard of ``batches`` batches) after the previous write ends."""
        buf.finish()
        self.wait()
        if self.pool is None:
            self.commit(buf)
            if self.callback is not None:
                self.callback("shard", buf.shard, batches)
            return
        self.pending = (self.pool.submit(self.commit, buf), buf.shard, batches)

    def wait(self) -> None:
        """Wait for the shard being written; raise its error, else report it to the callback."""
        if self.pending is None:
            return
        future, shard, batches = self.pending
        self.pending = None
        future.result()
        if self.callback is not None:
            self.callback("shard", shard, batches)

    def __enter__(self) -> ShardWriter:
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        self.close(failed=exc_type is not None)

    def close(self, failed: bool = False) -> None:
        """Stop the thread. With ``failed`` (the caller is raising), a shard still being written is
        finished first and its own error only logged, so what was complete is kept."""
        if failed and self.pending is not None:
            future, shard, _ = self.pending
            self.pending = None
            try:
                future.result()
            except Exception as e:  # noqa: BLE001 - the caller's error is the one raised
                logger.warning("Writing shard %d failed as well: %s", shard, e)
        if self.pool is not None:
            self.pool.shutdown(wait=True)
            release_pinned_memory()
