"""A safetensors file written piece by piece (:class:`ShardFile`), its SHA-256 taken from the bytes as
written: the file format of a latent export's shards, streamed batch by batch
(:mod:`uae.evaluation.shard_writer`) or written whole (:func:`write_shard`)."""

from __future__ import annotations

import contextlib
import errno as errno_codes
import hashlib
import json
import math
import os
import struct
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from uae.files import file_sha256, new_temp_file, replace_with_temp_file

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

    @classmethod
    def beside(
        cls,
        path: str | os.PathLike,
        layout: Mapping[str, tuple[torch.dtype, Sequence[int]]],
        metadata: Mapping[str, str] | None = None,
    ) -> ShardFile:
        """A :class:`ShardFile` on a new hidden temp file beside ``path`` (:func:`uae.files.new_temp_file`),
        for :meth:`commit` to rename onto ``path``."""
        tmp = new_temp_file(path)
        try:
            return cls(tmp, layout, metadata)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
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

    def commit(self, path: str | os.PathLike) -> tuple[int, str]:
        """:meth:`close` the file and rename it onto ``path`` with the usual mode; on failure it is deleted.

        Returns:
            ``(bytes, sha256)`` of the file.
        """
        try:
            size, digest = self.close()
            replace_with_temp_file(self.path, path)
        except BaseException:
            self.discard()
            raise
        return size, digest

    def commit_with(self, tensors: Mapping[str, torch.Tensor], path: str | os.PathLike) -> tuple[int, str]:
        """Write the remaining ``tensors`` whole (:meth:`write`), then :meth:`commit` onto ``path``; on
        failure the file is deleted.

        Returns:
            ``(bytes, sha256)`` of the file.
        """
        try:
            for k, v in tensors.items():
                self.write(k, v)
        except BaseException:
            self.discard()
            raise
        return self.commit(path)

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
    file = ShardFile.beside(path, {k: (v.dtype, tuple(v.shape)) for k, v in tensors.items()}, metadata)
    return file.commit_with(tensors, path)
