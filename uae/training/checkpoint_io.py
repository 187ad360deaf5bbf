"""Training checkpoints in and out: read only as tensors and plain values, written whole or not at all.

Reading (:func:`read_checkpoint`): ``torch.load(weights_only=True)`` only, so a checkpoint that holds pickled
code is refused before anything in it runs, with one line naming the file and the object it wanted
(``UnsafeFileError``); a truncated or foreign file is a ``DamagedFileError``. An ``http(s)://`` checkpoint
is first downloaded to a temporary file (:func:`fetch_checkpoint`; offline: refused in one line) and then
read the same way -- Lightning's own loader would ``torch.load`` a URL with ``weights_only`` off.

Writing (:class:`AtomicCheckpointIO`): the checkpoint goes to a hidden temp file in the target folder
(``.tmp-<random>-last.ckpt``), is flushed to disk, and is renamed over the target. A kill at any moment
leaves the previous file whole; Lightning's own writer stages the file in the system temp folder and,
when that is another file system, copies it over the target (a kill during the copy leaves a truncated
``last.ckpt``). Temp files of a killed write are removed at the next save of the same name.

uae's own checkpoints hold only tensors and plain values (the random states as tensors and tuples,
hyper-parameters as plain types), so they load with ``weights_only=True``.
:class:`uae.training.callbacks.AtomicCheckpoints` installs :class:`AtomicCheckpointIO` on every trainer
that trains a stage module.
"""

from __future__ import annotations

import atexit
import contextlib
import importlib
import logging
import os
import pathlib
import re
import shutil
import tempfile
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO
from lightning.fabric.utilities.cloud_io import get_filesystem

from uae.errors import ConfigError, DamagedFileError, MissingFileError, OutputError, UnsafeFileError
from uae.files import TEMP_PREFIX, atomic_write
from uae.online import offline

logger = logging.getLogger(__name__)

#: ``ckpt_path`` values Lightning resolves itself (from the checkpoint callbacks or the run folder).
CKPT_KEYWORDS = ("last", "best", "hpc", "registry")

_GLOBAL = re.compile(r"GLOBAL ([\w.]+)")


def lightning_safe_globals() -> list[Any]:
    """The few non-container types a Lightning checkpoint may hold besides tensors (allowlisted for
    ``weights_only=True``): ``AttributeDict`` (``save_hyperparameters`` outside LightningCLI) and paths
    (a ``Path`` given to a module or data module in a notebook). Nothing here runs code when unpickled;
    uae's own checkpoints store paths as strings anyway."""
    out: list[Any] = [
        pathlib.PosixPath,
        pathlib.WindowsPath,
        pathlib.PurePosixPath,
        pathlib.PureWindowsPath,
    ]
    for module in ("lightning.fabric.utilities.data", "lightning_fabric.utilities.data"):
        try:
            out.append(importlib.import_module(module).AttributeDict)
        except (ImportError, AttributeError):
            pass
    return out


def is_url(path: str | os.PathLike) -> bool:
    """Whether ``path`` is an ``http://`` or ``https://`` address."""
    return str(path).lower().startswith(("http://", "https://"))


def _is_remote(path: str | os.PathLike) -> bool:
    """A ``scheme://`` path other than a local ``file://`` one (fsspec: ``s3://``, ``gs://``, ``http://``...)."""
    text = str(path)
    return "://" in text and not text.startswith("file://")


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def _load_error(source: str, e: BaseException) -> Exception:
    """The one-line uae error for a failed ``torch.load(weights_only=True)`` of ``source``."""
    text = str(e)
    found = _GLOBAL.search(text)
    if found or "Weights only load failed" in text:
        what = f" ({found.group(1)})" if found else ""
        return UnsafeFileError(
            f"{source} is not a plain checkpoint: it holds pickled Python objects{what} that would run code "
            "when loaded, and uae reads checkpoints as tensors and plain values only (weights_only=True)",
            param="ckpt_path",
        )
    return DamagedFileError(
        f"cannot read {source} as a checkpoint (truncated or not a torch file): {_first_line(e)}",
        param="ckpt_path",
    )


def read_checkpoint(
    path: str | os.PathLike, map_location: Any = "cpu", *, mmap: bool = False, source: str | None = None
) -> dict[str, Any]:
    """``torch.load(path, weights_only=True)`` of a training checkpoint, with one-line errors.

    Args:
        path: A local file, or an fsspec address other than ``http(s)://`` (``s3://...``; use
            :func:`fetch_checkpoint` for web addresses).
        map_location: Where tensors go (``torch.load``'s argument).
        mmap: Memory-map the tensors instead of reading them (local zip-format files; cheap to inspect).
        source: How to name the file in messages (default: ``path``).

    Returns:
        The checkpoint dict.

    Raises:
        MissingFileError: No such file.
        UnsafeFileError: It holds pickled objects that ``weights_only=True`` refuses (nothing was run).
        DamagedFileError: Truncated, corrupt, not a torch file, or not a dict.
    """
    source = source or str(path)
    if _is_remote(path):
        fs = get_filesystem(path)
        if not fs.exists(str(path)):
            raise MissingFileError(f"checkpoint not found: {source}", param="ckpt_path")
        try:
            with fs.open(str(path), "rb") as f, torch.serialization.safe_globals(lightning_safe_globals()):
                obj = torch.load(f, map_location=map_location, weights_only=True)
        except Exception as e:  # arbitrary pickles, corrupt or truncated files
            raise _load_error(source, e) from e
    else:
        local = Path(path).expanduser()
        if not local.is_file():
            raise MissingFileError(f"checkpoint not found: {source}", param="ckpt_path")
        try:
            with torch.serialization.safe_globals(lightning_safe_globals()):
                obj = torch.load(str(local), map_location=map_location, weights_only=True, mmap=mmap)
        except RuntimeError as e:
            if mmap and "mmap" in str(e).lower():  # legacy (non-zip) format: read it whole
                return read_checkpoint(local, map_location, source=source)
            raise _load_error(source, e) from e
        except Exception as e:  # arbitrary pickles, corrupt or truncated files
            raise _load_error(source, e) from e
    if not isinstance(obj, dict):
        raise DamagedFileError(
            f"{source} is not a training checkpoint (holds a {type(obj).__name__}, not a dict)",
            param="ckpt_path",
        )
    return obj


def fetch_checkpoint(url: str, folder: str | os.PathLike | None = None, timeout: float = 60.0) -> Path:
    """Download an ``http(s)://`` checkpoint to a local file (nothing in it is loaded).

    Args:
        url: The address.
        folder: Where to put it; default: a new temporary folder, removed when the process exits.
        timeout: Seconds a connection may stall.

    Returns:
        The local file.

    Raises:
        MissingFileError: Offline (``HF_HUB_OFFLINE`` / ``UAE_OFFLINE``), or the download failed.
    """
    if offline():
        raise MissingFileError(
            f"cannot download the checkpoint {url}: offline (HF_HUB_OFFLINE / UAE_OFFLINE is set); download "
            "it yourself and pass the local file",
            param="ckpt_path",
        )
    if folder is None:
        folder = tempfile.mkdtemp(prefix="uae-ckpt-")
        atexit.register(shutil.rmtree, folder, True)
    name = Path(urllib.request.url2pathname(url.split("?", 1)[0].rstrip("/"))).name or "checkpoint.ckpt"
    out = Path(folder) / name
    logger.info("Downloading checkpoint %s", url)
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response, atomic_write(out) as tmp:  # noqa: S310
            with tmp.open("wb") as f:
                shutil.copyfileobj(response, f, length=1 << 20)
    except (urllib.error.URLError, OSError, ValueError) as e:
        raise MissingFileError(
            f"cannot download the checkpoint {url}: {_first_line(e)}", param="ckpt_path"
        ) from e
    return out


def local_checkpoint(ckpt_path: str | os.PathLike) -> Path:
    """A local file for ``ckpt_path``: itself, or the downloaded copy of an ``http(s)://`` address."""
    return fetch_checkpoint(str(ckpt_path)) if is_url(ckpt_path) else Path(ckpt_path).expanduser()


def _fsync_dir(folder: Path) -> None:
    with contextlib.suppress(OSError):  # not every platform / file system can open a folder
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def save_checkpoint_atomically(checkpoint: dict[str, Any], path: str | os.PathLike) -> Path:
    """``torch.save`` to a temp file beside ``path``, flushed to disk, then renamed over ``path``.

    Raises:
        OutputError: The file could not be written (disk full, no permission); ``path`` is unchanged.
    """
    path = Path(path)
    for stale in path.parent.glob(f"{TEMP_PREFIX}-*-{path.name}"):  # left by a killed write of this name
        with contextlib.suppress(OSError):
            stale.unlink()
    try:
        with atomic_write(path) as tmp:
            with tmp.open("wb") as f:
                torch.save(checkpoint, f)
                f.flush()
                os.fsync(f.fileno())
    except OSError as e:
        raise OutputError(f"cannot write checkpoint {path}: {e.strerror or _first_line(e)}") from e
    _fsync_dir(path.parent)
    return path


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning ``CheckpointIO`` that writes local checkpoints atomically and reads with ``weights_only=True``.

    * save: :func:`save_checkpoint_atomically` for local paths (other fsspec paths: Lightning's writer);
    * load: :func:`read_checkpoint` (``http(s)://`` downloaded first with :func:`fetch_checkpoint`);
      a request to load with ``weights_only`` off is refused.
    """

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None
    ) -> None:
        if storage_options is not None or _is_remote(path):
            return super().save_checkpoint(checkpoint, path, storage_options)
        save_checkpoint_atomically(checkpoint, path)
        return None

    def load_checkpoint(
        self,
        path: Any,
        map_location: Callable | Any | None = lambda storage, loc: storage,
        weights_only: bool | None = None,
    ) -> dict[str, Any]:
        if weights_only is False:
            raise ConfigError(
                "uae loads training checkpoints with weights_only=True only (a checkpoint that needs "
                "weights_only off can run code when loaded)",
                param="weights_only",
            )
        source = str(path)
        local = fetch_checkpoint(source) if is_url(source) else path
        return read_checkpoint(local, map_location, source=source)


__all__ = [
    "AtomicCheckpointIO",
    "CKPT_KEYWORDS",
    "fetch_checkpoint",
    "is_url",
    "lightning_safe_globals",
    "local_checkpoint",
    "read_checkpoint",
    "save_checkpoint_atomically",
]
