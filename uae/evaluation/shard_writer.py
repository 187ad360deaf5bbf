"""Writing a latent export's shards (:mod:`uae.evaluation.latents`; the folder's layout, reading and checking
are in :mod:`uae.evaluation.shards`).

:class:`ShardFile` writes a safetensors file piece by piece, its SHA-256 taken from the bytes as written;
:class:`ShardBuffer` gathers one shard's batches (on the CPU straight into its file, elsewhere in memory)
and :class:`ShardWriter` commits finished shards in order, in a background thread for a GPU export.
"""

from __future__ import annotations

import contextlib
import errno as errno_codes
import hashlib
import json
import logging
import math
import os
import struct
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from uae.evaluation.shards import channel_moments, combine_moments, output_errors
from uae.files import file_sha256, new_temp_file, replace_with_temp_file

logger = logging.getLogger(__name__)

#: safetensors' names of the dtypes a shard holds.
SAFETENSORS_DTYPES = {
    torch.float64: "F64",
    torch.float32: "F32",
    torch.float16: "F16",
    torch.bfloat16: "BF16",
    torch.int64: "I64",
}


def _raw_bytes(t: torch.Tensor) -> memoryview:
    """The bytes of a CPU tensor in memory order (no copy when it is contiguous), as safetensors stores them
    (little-endian: the byte order of every machine torch builds for but s390x)."""
    t = t.detach().contiguous()
    return memoryview(t.reshape(-1).view(torch.uint8).numpy())


class ShardFile:
    """A safetensors file written piece by piece, its SHA-256 taken from the bytes as they are written.

    The layout (every tensor's dtype and shape, in file order) is fixed when the file is opened: the
    header (the format's JSON, ``__metadata__`` first, padded with spaces to a multiple of 8 bytes, as
    safetensors' own writer does) is written at once, and then each tensor's bytes at their offsets, whole
    (:meth:`write`) or a few rows at a time (:meth:`write_rows`: an export's batches, so a shard is on its
    way to the disk while the next batches are encoded, and is never held in memory). Any safetensors
    reader reads the result. When the bytes come in file order (a shard of one exported tensor), the
    SHA-256 is updated as they are written; otherwise :meth:`close` reads the file back once to hash it.

    Args:
        path: The file (typically a temp file the caller renames, :func:`uae.files.new_temp_file`).
        layout: ``name -> (dtype, shape)`` in file order.
        metadata: The header's ``__metadata__`` (strings).
    """

    def __init__(
        self,
        path: str | os.PathLike,
        layout: Mapping[str, tuple[torch.dtype, Sequence[int]]],
        metadata: Mapping[str, str] | None = None,
    ) -> None:
        if sys.byteorder != "little":
            raise NotImplementedError("writing safetensors files piece by piece needs a little-endian CPU")
        header: dict[str, Any] = {"__metadata__": dict(metadata)} if metadata else {}
        self.regions: dict[str, tuple[int, int, torch.dtype, tuple[int, ...]]] = {}
        end = 0
        for name, (dtype, shape) in layout.items():
            shape = tuple(int(d) for d in shape)
            nbytes = math.prod(shape) * torch.empty((), dtype=dtype).element_size()
            header[name] = {
                "dtype": SAFETENSORS_DTYPES[dtype],
                "shape": list(shape),
                "data_offsets": [end, end + nbytes],
            }
            self.regions[name] = (end, nbytes, dtype, shape)
            end += nbytes
        text = json.dumps(header, separators=(",", ":")).encode()
        text += b" " * (-len(text) % 8)
        head = struct.pack("<Q", len(text)) + text
        self.path = Path(path)
        self.data_start = len(head)
        self.size = self.data_start + end
        self._spans: dict[str, list[tuple[int, int]]] = {
            k: [] for k in self.regions
        }  # bytes written, per tensor
        self._hash = hashlib.sha256()
        self._hashed = 0  # the file's bytes [0, _hashed) went into _hash
        self._in_order = True
        self._file: Any = open(self.path, "wb", buffering=0)  # noqa: SIM115 - closed by close()/discard()
        try:
            self._write(head, 0)
        except BaseException:
            self.discard()
            raise

    def _write(self, data: memoryview | bytes, offset: int) -> None:
        self._file.seek(offset)
        view = memoryview(data)
        while len(view):
            n = self._file.write(view)
            if not n:
                raise OSError(errno_codes.EIO, "write returned no bytes", str(self.path))
            view = view[n:]
        if self._in_order and offset == self._hashed:
            self._hash.update(data)  # releases the GIL for large buffers
            self._hashed += len(data)
        else:
            self._in_order = False

    def write_rows(self, name: str, row: int, tensor: torch.Tensor) -> None:
        """Write ``tensor`` as rows ``row .. row + len(tensor)`` of ``name`` (same dtype and row shape)."""
        start, nbytes, dtype, shape = self.regions[name]
        if tensor.dtype != dtype or tuple(tensor.shape[1:]) != shape[1:] or tensor.dim() != len(shape):
            raise ValueError(
                f"{name}: expected rows of {dtype} {list(shape[1:])}, got {tensor.dtype} {list(tensor.shape)}"
            )
        if not 0 <= row <= row + len(tensor) <= shape[0]:
            raise ValueError(f"{name}: rows {row}..{row + len(tensor)} outside 0..{shape[0]}")
        data = _raw_bytes(tensor.cpu())
        row_bytes = nbytes // shape[0] if shape[0] else 0
        self._write(data, self.data_start + start + row * row_bytes)
        self._spans[name].append((row * row_bytes, row * row_bytes + len(data)))

    def write(self, name: str, tensor: torch.Tensor) -> None:
        """Write the whole of ``name`` (its dtype and shape)."""
        start, nbytes, dtype, shape = self.regions[name]
        if tensor.dtype != dtype or tuple(tensor.shape) != shape:
            raise ValueError(
                f"{name}: expected {dtype} {list(shape)}, got {tensor.dtype} {list(tensor.shape)}"
            )
        self._write(_raw_bytes(tensor.cpu()), self.data_start + start)
        self._spans[name].append((0, nbytes))

    def read_rows(self, name: str, count: int) -> torch.Tensor:
        """Rows ``0 .. count`` of ``name`` as written so far (read back from the file)."""
        start, _, dtype, shape = self.regions[name]
        out = torch.empty((count, *shape[1:]), dtype=dtype)
        view = _raw_bytes(out)
        with open(self.path, "rb") as f:
            f.seek(self.data_start + start)
            if f.readinto(view) != len(view):
                raise OSError(errno_codes.EIO, f"{name}: fewer bytes than written", str(self.path))
        return out

    def _coverage_problem(self, name: str) -> str | None:
        """Why ``name``'s bytes are not each written exactly once, or ``None``."""
        pos, nbytes = 0, self.regions[name][1]
        for lo, hi in sorted(self._spans[name]):
            if lo < pos:
                return f"bytes {lo}..{min(hi, pos)} written twice"
            if lo > pos:
                return f"bytes {pos}..{lo} not written"
            pos = hi
        return None if pos == nbytes else f"bytes {pos}..{nbytes} not written"

    def close(self) -> tuple[int, str]:
        """Finish the file: check every byte of every tensor was written exactly once, close it, and return
        ``(bytes, sha256)``.

        Raises:
            RuntimeError: A tensor was not written in full or in part twice (nothing is returned for such a
                file).
        """
        problems = {k: p for k in self.regions if (p := self._coverage_problem(k)) is not None}
        if problems:
            raise RuntimeError(f"{self.path.name}: tensors not written exactly once: {problems}")
        self._file.close()
        if self._in_order and self._hashed == self.size:
            return self.size, self._hash.hexdigest()
        return self.path.stat().st_size, file_sha256(self.path)

    def discard(self) -> None:
        """Close and delete the file (an export that stopped)."""
        with contextlib.suppress(OSError):
            self._file.close()
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()


def write_shard(
    tensors: Mapping[str, torch.Tensor], path: str | os.PathLike, metadata: Mapping[str, str] | None = None
) -> tuple[int, str]:
    """Write a shard whole and atomically (:class:`ShardFile` on a temp file in the folder, renamed into
    place): the same layout as a shard streamed batch by batch.

    Args:
        tensors: The shard's tensors (CPU), in file order.
        path: The final file.
        metadata: safetensors header metadata.

    Returns:
        ``(bytes, sha256)`` of the written file.

    Raises:
        OSError: Writing failed (disk full, no permission...).
    """
    tmp = new_temp_file(path)
    try:
        file = ShardFile(tmp, {k: (v.dtype, tuple(v.shape)) for k, v in tensors.items()}, metadata)
        try:
            for k, v in tensors.items():
                file.write(k, v)
            size, digest = file.close()
        except BaseException:
            file.discard()
            raise
        replace_with_temp_file(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise
    return size, digest


def shard_metadata(count: int, shard: int, start: int) -> dict[str, str]:
    """A shard file's header metadata: ``{"uae_shard": '{"count": n, "shard": s, "start": lo}'}``."""
    return {"uae_shard": json.dumps({"count": count, "shard": shard, "start": start}, sort_keys=True)}


class ShardBuffer:
    """One shard being encoded: its encoded tensors, indices, labels, running float64 moments, skipped files.

    On the CPU, given the shard's ``path``, the first batch fixes the file's layout (:class:`ShardFile`, a
    temp file beside ``path``) and every batch is written there as it comes: the disk works while the next
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
        rows = {k: (self.store, (self.capacity, *self.shapes[k])) for k in self.shapes}
        tail: dict[str, tuple[torch.dtype, tuple[int, ...]]] = {
            "index": (torch.long, (self.capacity,)),
            "label": (torch.long, (self.capacity,)),
        }
        for k, (_, mean, _) in self.moments.items():
            tail[f"stats.{k}.mean"] = (torch.float64, tuple(mean.shape))
            tail[f"stats.{k}.m2"] = (torch.float64, tuple(mean.shape))
            tail[f"stats.{k}.count"] = (torch.long, (1,))
        with output_errors(self.path.parent, self.path.name):
            tmp = new_temp_file(self.path)
            try:
                self.file = ShardFile(
                    tmp, {**rows, **tail}, shard_metadata(self.capacity, self.shard, self.lo)
                )
            except BaseException:
                with contextlib.suppress(FileNotFoundError):
                    tmp.unlink()
                raise

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
        return {k: t[: self.count] for k, t in self.tensors.items()}  # rows of a contiguous tensor: no copy

    def tail_tensors(self) -> dict[str, torch.Tensor]:
        """The indices, labels and per-channel moments of the images added so far (in file order)."""
        tensors = {"index": self.index[: self.count], "label": self.label[: self.count]}
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
        try:
            for k, t in self.tail_tensors().items():
                self.file.write(k, t)
            size, digest = self.file.close()
            replace_with_temp_file(self.file.path, self.path)
        except BaseException:
            self.discard()
            raise
        self.file = None
        return size, digest

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
