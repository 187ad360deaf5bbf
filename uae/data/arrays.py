"""Images stored as one ``(N, H, W, 3)`` uint8 array: ADM-style ``.npz`` batches and ``.npy`` files.

Decoding a JPEG of ImageNet's size costs about a core-millisecond, more than a small tokenizer needs to
reconstruct it, and an evaluation set is decoded again for every checkpoint compared. Decoded once
(:func:`uae.data.array_writer.pack_images`: the eval crop at one size, as ``uint8``), the set is read back by
:class:`ImageArrayDataset` image by image with positioned reads: nothing is loaded whole, the memory
stays flat, and worker processes share nothing but the file name.

Two layouts are read, both without pickles (an array of Python objects is refused):

* ``.npy``: one ``(N, H, W, 3)`` uint8 array in NumPy's format (``numpy.save``, ``pack_images``).
* ``.npz``: the ``arr_0`` images (and ``arr_1`` integer class labels, when present) of a ``numpy.savez``
  archive, the layout of ADM's reference batches (``VIRTUAL_imagenet256_labeled.npz``) and of the
  sample batches of guided-diffusion, RAE and the UAE authors; an optional ``classes`` member names the
  labels (``pack_images`` writes it; readers of ADM's layout ignore it). A member stored uncompressed
  (``numpy.savez``) is read in place; one compressed by ``numpy.savez_compressed`` is inflated into
  memory once (logged).

A file whose size disagrees with its header (truncated, or bytes appended) is a
:class:`~uae.errors.DamagedFileError` when opened; a read that comes back short later (the file cut
while in use) is one too. Single bit flips inside the pixels are not detectable (no checksum per
image), as with image files.
"""

from __future__ import annotations

import logging
import os
import pathlib
import struct
import threading
import zipfile
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from uae.errors import DamagedFileError, InputError, MissingFileError, UnsafeFileError

logger = logging.getLogger(__name__)

PathLike = str | os.PathLike

#: File suffixes read as image arrays (everything else given as data is an image folder).
IMAGE_ARRAY_SUFFIXES = (".npy", ".npz")

#: Member names of an ``.npz`` (``numpy.savez(path, images, labels)``).
IMAGES_KEY, LABELS_KEY = "arr_0", "arr_1"
#: Optional ``.npz`` member with the class names in label order (a ``str`` array; ``pack_images``).
CLASSES_KEY = "classes"

_ZIP_LOCAL_HEADER = struct.Struct("<4s22xHH")  # signature, ..., file name length, extra field length


def is_image_array_file(path: PathLike) -> bool:
    """Whether ``path`` names an image array (:data:`IMAGE_ARRAY_SUFFIXES`), existing or not."""
    return pathlib.Path(path).suffix.lower() in IMAGE_ARRAY_SUFFIXES


def is_image_array(path: PathLike) -> bool:
    """Whether ``path`` is an existing image array file (read by :class:`ImageArrayDataset`)."""
    return is_image_array_file(path) and pathlib.Path(path).expanduser().is_file()


def _read_npy_header(f: Any, where: str) -> tuple[tuple[int, ...], np.dtype, int]:
    """``(shape, dtype, header bytes)`` of the NPY array starting at ``f``'s position.

    Raises:
        DamagedFileError: Not NPY data, or a header NumPy cannot read.
        UnsafeFileError: An array of Python objects (stored as a pickle).
        InputError: Fortran order.
    """
    start = f.tell()
    try:
        version = np.lib.format.read_magic(f)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
        elif version == (2, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
        else:
            raise ValueError(f"NPY format version {version} is not supported (1.0 and 2.0 are)")
    except (ValueError, OSError, SyntaxError, struct.error) as e:
        raise DamagedFileError(f"{where} is not a readable NumPy array: {e}", param="data") from e
    if dtype.hasobject:
        raise UnsafeFileError(
            f"{where} holds Python objects (a pickle); refused, nothing was run", param="data"
        )
    if fortran:
        raise InputError(f"{where} is stored in Fortran order; save a C-ordered array", param="data")
    return tuple(int(s) for s in shape), dtype, f.tell() - start


def _check_images(shape: tuple[int, ...], dtype: np.dtype, where: str) -> tuple[int, int, int, int]:
    if len(shape) != 4 or shape[-1] != 3 or dtype != np.uint8:
        raise InputError(
            f"{where} must hold (N, H, W, 3) uint8 RGB images, got shape {shape} {dtype}", param="data"
        )
    if min(shape) <= 0:
        raise InputError(f"{where} holds no images (shape {shape})", param="data")
    return shape  # type: ignore[return-value]


class ImageArray:
    """The ``(N, H, W, 3)`` uint8 images of an ``.npy`` or ``.npz`` file, read one at a time.

    Args:
        path: The file.

    Attributes:
        path: The file.
        shape: ``(N, H, W, 3)``.
        labels: ``(N,)`` int64 class labels (an ``.npz``'s ``arr_1``), or ``None``.
        classes: The class names of an ``.npz``'s ``classes`` member, or ``None``.

    Raises:
        MissingFileError: No such file.
        DamagedFileError: Not an ``.npy``/``.npz``; an ``.npz`` without ``arr_0``; a size that disagrees
            with the header; labels that are not ``N`` integers.
        UnsafeFileError: Pickled objects.
        InputError: Not ``(N, H, W, 3)`` uint8, or not one of :data:`IMAGE_ARRAY_SUFFIXES`.
    """

    def __init__(self, path: PathLike) -> None:
        self.path = pathlib.Path(path).expanduser()
        if not self.path.is_file():
            raise MissingFileError(f"image array {str(self.path)!r} does not exist", param="data")
        suffix = self.path.suffix.lower()
        if suffix not in IMAGE_ARRAY_SUFFIXES:
            raise InputError(f"{self.path} is not one of {', '.join(IMAGE_ARRAY_SUFFIXES)}", param="data")
        self.labels: np.ndarray | None = None
        self.classes: list[str] | None = None
        self._memory: np.ndarray | None = None  # a compressed member, inflated
        self._offset = 0
        self._fd: int | None = None
        self._pid = -1
        self._lock = threading.RLock()  # _file() takes it inside a locked read
        if suffix == ".npy":
            with self.path.open("rb") as f:
                shape, dtype, header = _read_npy_header(f, str(self.path))
            self.shape = _check_images(shape, dtype, str(self.path))
            self._offset = header
            self._check_size(self.path.stat().st_size - header, str(self.path))
        else:
            self._open_npz()

    # ------------------------------------------------------------------------------------------ opening
    def _check_size(self, data_bytes: int, where: str) -> None:
        want = int(np.prod(self.shape))
        if data_bytes != want:
            state = "truncated" if data_bytes < want else "longer than its header says"
            raise DamagedFileError(
                f"{where} is {state}: {data_bytes} bytes of pixels for {self.shape} ({want} bytes)",
                param="data",
            )

    def _open_npz(self) -> None:
        where = f"{self.path}:{IMAGES_KEY}"
        try:
            with zipfile.ZipFile(self.path) as zf:
                names = zf.namelist()
                if f"{IMAGES_KEY}.npy" not in names:
                    raise DamagedFileError(
                        f"{self.path} has no {IMAGES_KEY!r} images (members: {', '.join(names) or 'none'})",
                        param="data",
                    )
                info = zf.getinfo(f"{IMAGES_KEY}.npy")
                if info.compress_type == zipfile.ZIP_STORED:
                    self._locate_stored(info, where)
                else:
                    self._inflate(zf, info, where)
                if f"{LABELS_KEY}.npy" in names:
                    with zf.open(f"{LABELS_KEY}.npy") as m:
                        labels = np.lib.format.read_array(m, allow_pickle=False)
                    self.labels = self._check_labels(labels)
                if f"{CLASSES_KEY}.npy" in names:
                    with zf.open(f"{CLASSES_KEY}.npy") as m:
                        classes = np.lib.format.read_array(m, allow_pickle=False)
                    self.classes = self._check_classes(classes)
        except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, ValueError, OSError) as e:
            if isinstance(e, (InputError, MissingFileError)):
                raise
            if isinstance(e, ValueError) and "allow_pickle" in str(e):
                raise UnsafeFileError(
                    f"{self.path} holds Python objects (a pickle); refused, nothing was run", param="data"
                ) from e
            raise DamagedFileError(f"cannot read {self.path} as an .npz archive: {e}", param="data") from e

    def _locate_stored(self, info: zipfile.ZipInfo, where: str) -> None:
        with self.path.open("rb") as f:
            f.seek(info.header_offset)
            sig, name_len, extra_len = _ZIP_LOCAL_HEADER.unpack(f.read(_ZIP_LOCAL_HEADER.size))
            if sig != b"PK\x03\x04":
                raise DamagedFileError(f"{where}: bad local header in the archive", param="data")
            start = info.header_offset + _ZIP_LOCAL_HEADER.size + name_len + extra_len
            f.seek(start)
            shape, dtype, header = _read_npy_header(f, where)
        self.shape = _check_images(shape, dtype, where)
        self._offset = start + header
        self._check_size(info.file_size - header, where)
        if start + info.file_size > self.path.stat().st_size:
            raise DamagedFileError(f"{where} runs past the end of the file (truncated)", param="data")

    def _inflate(self, zf: zipfile.ZipFile, info: zipfile.ZipInfo, where: str) -> None:
        with zf.open(info) as m:
            shape, dtype, _ = _read_npy_header(m, where)
            self.shape = _check_images(shape, dtype, where)
            logger.info(
                "%s is compressed: inflating %.1f MB of images into memory (numpy.savez or .npy are read "
                "in place)",
                where,
                np.prod(self.shape) / 1e6,
            )
            data = m.read()  # the zip's CRC is checked at the end of the member
        self._check_size(len(data), where)
        self._memory = np.frombuffer(data, dtype=np.uint8).reshape(self.shape)

    def _check_labels(self, labels: np.ndarray) -> np.ndarray:
        n = self.shape[0]
        if labels.shape != (n,) or labels.dtype.kind not in "iu" or (n and int(labels.min()) < 0):
            raise DamagedFileError(
                f"{self.path}: {LABELS_KEY} must be {n} non-negative integer labels, got "
                f"{labels.shape} {labels.dtype}",
                param="data",
            )
        return labels.astype(np.int64)

    def _check_classes(self, classes: np.ndarray) -> list[str]:
        top = -1 if self.labels is None or not len(self.labels) else int(self.labels.max())
        if classes.ndim != 1 or classes.dtype.kind != "U" or len(classes) <= top:
            raise DamagedFileError(
                f"{self.path}: {CLASSES_KEY} must name every label ({top + 1} or more strings), got "
                f"{classes.shape} {classes.dtype}",
                param="data",
            )
        return [str(c) for c in classes]

    # ------------------------------------------------------------------------------------------ reading
    def __len__(self) -> int:
        return self.shape[0]

    @property
    def image_size(self) -> tuple[int, int]:
        """``(height, width)`` of every image."""
        return self.shape[1], self.shape[2]

    def _file(self) -> int:
        pid = os.getpid()
        if self._fd is None or self._pid != pid:  # a forked worker opens its own
            with self._lock:
                if self._fd is None or self._pid != pid:
                    self._fd = os.open(self.path, os.O_RDONLY | getattr(os, "O_BINARY", 0))
                    self._pid = pid
        return self._fd

    def __getitem__(self, i: int) -> np.ndarray:
        """Image ``i`` as a new ``(H, W, 3)`` uint8 array.

        Raises:
            IndexError: Out of range.
            DamagedFileError: The file is shorter than when it was opened.
        """
        n = len(self)
        if not -n <= i < n:
            raise IndexError(f"index {i} out of range for {n} images")
        i %= n
        return self.read_run(i, i + 1)[0]

    def _read_into(self, view: memoryview, at: int) -> int:
        """One read of up to ``len(view)`` bytes of the file at offset ``at`` into ``view``; the count read."""
        if hasattr(os, "preadv"):
            return os.preadv(self._file(), [view], at)
        with self._lock:  # Windows, macOS before 11: seek + read
            fd = self._file()
            os.lseek(fd, at, os.SEEK_SET)
            chunk = os.read(fd, len(view))
        view[: len(chunk)] = chunk
        return len(chunk)

    def read_run(self, start: int, stop: int) -> np.ndarray:
        """Images ``start`` to ``stop - 1`` as a new ``(stop - start, H, W, 3)`` uint8 array (one read).

        Raises:
            IndexError: Not ``0 <= start < stop <= N``.
            DamagedFileError: The file is shorter than when it was opened.
        """
        if not 0 <= start < stop <= len(self):
            raise IndexError(f"images {start}:{stop} out of range for {len(self)} images")
        if self._memory is not None:
            return self._memory[start:stop].copy()
        size = self.shape[1] * self.shape[2] * 3
        want = (stop - start) * size
        data = bytearray(want)
        view, at, got = memoryview(data), self._offset + start * size, 0
        while got < want:  # a large read may come back in pieces
            n = self._read_into(view[got:], at + got)
            if n <= 0:
                raise DamagedFileError(
                    f"{self.path}: images {start}:{stop} are cut short ({got} of {want} bytes); the file "
                    "changed after it was opened",
                    param="data",
                )
            got += n
        return np.frombuffer(data, dtype=np.uint8).reshape(stop - start, *self.shape[1:])

    def close(self) -> None:
        """Close the file (a later read opens it again)."""
        if self._fd is not None and self._pid == os.getpid():
            os.close(self._fd)
        self._fd = None

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_fd"], state["_pid"], state["_lock"] = None, -1, None
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.RLock()  # _file() takes it inside a locked read

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # noqa: BLE001 - interpreter shutdown
            pass

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self.path)!r}, shape={self.shape})"


class ImageArrayDataset(Dataset):
    """The images of an :class:`ImageArray` as samples, like :class:`~uae.data.ImageFolderDataset`'s.

    Each image goes through ``transform`` as an RGB PIL image, so a sample is exactly what the same
    transform makes of a lossless image file (PNG) holding those pixels.

    Args:
        path: An ``.npy`` or ``.npz`` file (see the module).
        transform: ``PIL.Image -> tensor`` (or ``-> {"image", "target"}``); default: ``to_tensor``.
        labels: ``None``: the ``.npz``'s ``arr_1`` labels when present; ``True``: require them;
            ``False``: no labels (``label == -1``).
        limit: Keep only the first ``limit`` images.
        classes: Class names in label order (e.g. a training set's). Labels are mapped through the names
            when the file names its classes (a name not among ``classes`` becomes ``-1``), else taken
            as indices into ``classes`` (a label past them becomes ``-1``).

    Attributes:
        root: The file's folder; ``files`` are ``"<file>[<i>]"`` names under it.
        classes: The file's class names (``["0", ..., str(max label)]`` when it has none) when labelled,
            else ``[]``.
        targets: The label of each image (``-1`` when unlabelled).

    Raises:
        InputError: ``labels=True`` without labels; ``limit`` below 1; see :class:`ImageArray`.
    """

    def __init__(
        self,
        path: PathLike,
        transform: Callable[[Image.Image], Any] | None = None,
        labels: bool | None = None,
        limit: int | None = None,
        classes: list[str] | None = None,
    ) -> None:
        if limit is not None and limit <= 0:
            raise InputError(f"limit must be positive, got {limit}", param="limit")
        self.array = ImageArray(path)
        self.path = self.array.path
        self.root = self.path.parent
        self.transform = transform
        n = len(self.array) if limit is None else min(limit, len(self.array))
        self.files = [f"{self.path}[{i}]" for i in range(n)]
        found = self.array.labels
        if labels and found is None:
            raise InputError(
                f"labels=True but {self.path} has no {LABELS_KEY!r} labels (an .npz saved as "
                "numpy.savez(path, images, labels))",
                param="data",
            )
        if labels is False or found is None:
            self.classes: list[str] = []
            self.targets = [-1] * n
        else:
            own = self.array.classes or [str(k) for k in range(int(found.max()) + 1)]
            self.classes = list(own if classes is None else classes)
            index = {c: k for k, c in enumerate(self.classes)}
            if self.array.classes is not None:  # through the names
                self.targets = [index.get(own[t], -1) for t in found[:n]]
            else:
                self.targets = [int(t) if t < len(self.classes) else -1 for t in found[:n]]
        self.num_skipped = 0

    @property
    def labelled(self) -> bool:
        """True when the samples carry class labels."""
        return bool(self.classes)

    def __len__(self) -> int:
        return len(self.files)

    def _sample(self, i: int, out: torch.Tensor | dict[str, torch.Tensor]) -> dict[str, Any]:
        from uae.data.datasets import make_sample

        return make_sample(out, label=self.targets[i], index=i, path=self.files[i])

    def __getitem__(self, i: int) -> dict[str, Any]:
        """Sample ``i`` as ``{"image", "label", "index", "path", "skipped"}`` (and ``"target"``)."""
        from uae.data.transforms import to_tensor

        n = len(self)
        if not -n <= i < n:
            raise IndexError(f"index {i} out of range for {n} images")
        i %= n
        im = Image.fromarray(self.array[i])  # (H, W, 3) uint8: RGB
        return self._sample(i, self.transform(im) if self.transform is not None else to_tensor(im))

    def _passes_through(self) -> bool | None:
        """Whether the transform returns the pixels unchanged (an eval :class:`~uae.data.ImageTransform` at
        the images' own square size: its crop is the whole image and it resizes nothing): ``None`` if
        not, else whether it returns ``uint8``."""
        from uae.data.transforms import ImageTransform

        t, (h, w) = self.transform, self.array.image_size
        if type(t) is ImageTransform and not t.train and t.out_size is None and h == w == t.size:
            return t.uint8
        return None

    def __getitems__(self, indices: list[int]) -> list[dict[str, Any]]:
        """Samples ``indices`` (what ``DataLoader`` asks for a batch): the same as ``[self[i] for i in
        indices]``, read in one piece when the indices are consecutive and the transform passes the
        pixels through (:meth:`_passes_through`)."""
        uint8 = self._passes_through()
        run = len(indices) > 1 and all(b == a + 1 for a, b in zip(indices, indices[1:], strict=False))
        if uint8 is None or not run or not 0 <= indices[0] <= indices[-1] < len(self):
            return [self[i] for i in indices]
        from uae.data.transforms import scale_uint8

        x = torch.from_numpy(self.array.read_run(indices[0], indices[-1] + 1)).permute(0, 3, 1, 2)
        x = x if uint8 else scale_uint8(x)  # to_tensor's floats, bit for bit
        return [self._sample(i, x[k]) for k, i in enumerate(indices)]

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(path={str(self.path)!r}, n={len(self)}, classes={len(self.classes)}, "
            f"transform={self.transform!r})"
        )
