"""Files in and out: every file uae writes, and every weights file it reads, goes through here.

Reading: :func:`read_state_dict` is the one state-dict reader (safetensors, or torch files with
``weights_only=True`` only), :func:`read_torch_dict` / :func:`read_yaml_mapping` the checkpoint and config
readers under it; each fails with one line naming the file (``uae.errors`` types).

Writing: atomically, with the usual permissions.

``tempfile.mkstemp`` (and safetensors >= 0.6's own atomic ``save_file``) create files with mode
``0600``; a renamed temp file keeps it, so weights, configs and shards would end up unreadable by the
group and others (timm, diffusers and a plain ``open()`` give ``0644`` under the usual umask 022).
:func:`atomic_write` gives the finished file the mode ``open()`` would (``0666`` minus the umask)
before it is renamed into place, once, for every writer.

Temp files are hidden and named ``.tmp-<random>-<final name>`` in the destination folder (same file
system, so the rename is atomic); :func:`remove_temp_files` deletes the ones a killed run left behind.
Temp *folders* (:func:`temp_dir_for`, a converted release being written) carry the host and process id,
so :func:`remove_stale_temp_dirs` can delete those of processes that are gone.

Checked folders: :func:`write_manifest` records the size, mtime and SHA-256 of a folder's files and
:func:`verify_manifest` says what changed since (hashing only files whose size or mtime moved).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import tempfile
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from uae.errors import DamagedFileError, InputError, MissingFileError, UnsafeFileError

logger = logging.getLogger(__name__)

#: Prefix of the temp files of :func:`atomic_write` (safetensors' own temp files start with ``.tmp`` too).
TEMP_PREFIX = ".tmp"

_umask_lock = threading.Lock()


def current_umask() -> int:
    """The process umask (read from ``/proc`` on Linux, else set-and-restored under a lock)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    with _umask_lock:
        mask = os.umask(0o022)
        os.umask(mask)
    return mask


def default_file_mode() -> int:
    """The mode ``open(path, "w")`` gives a new file: ``0666`` minus the umask (``0644`` under umask 022)."""
    return 0o666 & ~current_umask()


def fix_permissions(path: str | os.PathLike) -> None:
    """Give an existing file written by a ``0600`` writer the mode :func:`default_file_mode`."""
    os.chmod(path, default_file_mode())


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temp path next to ``path``; on success it gets the usual mode and replaces ``path``.

    The temp file keeps ``path``'s suffix (so writers that pick a format from the name, such as
    Pillow, still work). On an exception it is removed and ``path`` is left untouched.

    Example::

        with atomic_write("out/model.safetensors") as tmp:
            save_file(tensors, str(tmp))

    Raises:
        IsADirectoryError: ``path`` is an existing folder.
    """
    path = Path(path)
    tmp = new_temp_file(path)
    try:
        yield tmp
        replace_with_temp_file(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def new_temp_file(path: str | os.PathLike) -> Path:
    """Create the empty temp file of ``path`` (``.tmp-<random>-<name>`` in its folder, made if missing).

    :func:`atomic_write` uses it; a writer that keeps its file open for longer (a latent shard written
    batch by batch) creates it here and finishes with :func:`replace_with_temp_file`.

    Raises:
        IsADirectoryError: ``path`` is an existing folder.
    """
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"{path} is a folder, expected a file path")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f"{TEMP_PREFIX}-", suffix=f"-{path.name}", dir=path.parent)
    os.close(fd)
    return Path(name)


def replace_with_temp_file(tmp: str | os.PathLike, path: str | os.PathLike) -> None:
    """Give a finished temp file the usual mode and rename it to ``path`` (atomic on one file system)."""
    os.chmod(tmp, default_file_mode())  # the writer may have replaced our file by its own 0600 one
    os.replace(tmp, path)


def write_text(path: str | os.PathLike, text: str, fsync: bool = False) -> Path:
    """Write a text file atomically (usual permissions)."""
    path = Path(path)
    with atomic_write(path) as tmp:
        with tmp.open("w") as f:
            f.write(text)
            if fsync:
                f.flush()
                os.fsync(f.fileno())
    return path


def write_json(
    path: str | os.PathLike, data: Any, indent: int = 2, fsync: bool = False, **kwargs: Any
) -> Path:
    """Write ``data`` as JSON atomically (usual permissions); ``kwargs`` go to ``json.dumps``."""
    return write_text(path, json.dumps(data, indent=indent, **kwargs) + "\n", fsync=fsync)


def save_safetensors(
    tensors: Mapping[str, Any], path: str | os.PathLike, metadata: Mapping[str, str] | None = None
) -> Path:
    """``safetensors.torch.save_file`` atomically, with the usual permissions."""
    from safetensors.torch import save_file

    path = Path(path)
    with atomic_write(path) as tmp:
        save_file(dict(tensors), str(tmp), metadata=dict(metadata) if metadata else None)
    return path


def remove_temp_files(
    folder: str | os.PathLike, *, names: Iterable[str] | None = None, min_age_s: float = 0.0
) -> list[Path]:
    """Delete the hidden ``.tmp*`` files a killed writer left in ``folder`` (not recursive); with ``names``
    only the temp files of those file names (``.tmp-<random, no dash>-<name>``: for a folder that is not the
    writer's own), with ``min_age_s`` only files not modified for that long (a running writer keeps writing).

    Returns:
        The removed paths.
    """
    wanted, removed = None if names is None else set(names), []
    for p in Path(folder).glob(f"{TEMP_PREFIX}*"):
        if wanted is not None and (p.name.count("-") < 2 or p.name.split("-", 2)[2] not in wanted):
            continue
        with contextlib.suppress(FileNotFoundError):  # gone meanwhile: is_file() below says so
            if min_age_s and time.time() - p.stat().st_mtime <= min_age_s:
                continue
        if p.is_file():
            logger.info("Removing partial file %s", p)
            with contextlib.suppress(FileNotFoundError):
                p.unlink()
                removed.append(p)
    return removed


# ---------------------------------------------------------------------------------------------- checked folders
#: The record of a checked folder's files (:func:`write_manifest`): name -> size, mtime, SHA-256.
MANIFEST_NAME = "uae_manifest.json"
#: A file modified less than this before its record was made may have changed within the file system's
#: timestamp granularity, so its (size, mtime) cannot vouch for it: it is hashed again ("racily clean", as
#: git calls it).
RACY_NS = 2_000_000_000
_TEMP_DIR_SEPARATOR = ".tmpdir."


def file_sha256(path: str | os.PathLike, chunk: int = 8 << 20) -> str:
    """Hex SHA-256 of a file, read in chunks."""
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def write_manifest(folder: str | os.PathLike, names: list[str] | None = None) -> Path:
    """Record the size, mtime and SHA-256 of ``folder``'s files in ``folder/uae_manifest.json``.

    Args:
        folder: The folder.
        names: The files to record (default: every regular file but the manifest and hidden files).

    Returns:
        The manifest's path.
    """
    folder = Path(folder)
    if names is None:
        names = sorted(p.name for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))
    files = {}
    for name in names:
        if name == MANIFEST_NAME:
            continue
        st = (folder / name).stat()
        files[name] = {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "sha256": file_sha256(folder / name)}
    return write_json(folder / MANIFEST_NAME, {"format": 1, "verified_ns": time.time_ns(), "files": files})


def verify_manifest(folder: str | os.PathLike, required: tuple[str, ...] = ()) -> list[str]:
    """What is wrong with a folder recorded by :func:`write_manifest` (an empty list: nothing).

    Cheap when nothing changed: a file whose size and mtime are the recorded ones (and were recorded at
    least :data:`RACY_NS` after it was modified) is not read again. A file that changed mtime is hashed;
    when its content is still the recorded one the record is refreshed, so it is hashed once.

    Args:
        folder: The folder.
        required: Files that must be recorded and present.

    Returns:
        One short phrase per problem: a missing manifest or file, a size or SHA-256 that differs.
    """
    folder = Path(folder)
    try:
        record = json.loads((folder / MANIFEST_NAME).read_text())
        files = dict(record["files"])
        verified_ns = int(record.get("verified_ns", 0))
    except (OSError, ValueError, KeyError, TypeError):
        return [f"no readable {MANIFEST_NAME}"]
    problems = [f"{name} is not recorded" for name in required if name not in files]
    refreshed = False
    for name, want in sorted(files.items()):
        path = folder / name
        try:
            st = path.stat()
        except OSError:
            problems.append(f"{name} is missing")
            continue
        if st.st_size != want.get("size"):
            problems.append(f"{name} has {st.st_size} bytes, {want.get('size')} were written (truncated?)")
            continue
        if st.st_mtime_ns == want.get("mtime_ns") and st.st_mtime_ns < verified_ns - RACY_NS:
            continue
        if file_sha256(path) != want.get("sha256"):
            problems.append(f"{name} does not have the SHA-256 it was written with (damaged)")
            continue
        want["mtime_ns"], refreshed = st.st_mtime_ns, True
    if refreshed and not problems:
        with contextlib.suppress(OSError):  # a read-only cache is still used, it is just hashed again
            write_json(folder / MANIFEST_NAME, {**record, "verified_ns": time.time_ns(), "files": files})
    return problems


@contextlib.contextmanager
def temp_dir_for(target: str | os.PathLike) -> Iterator[Path]:
    """A hidden temp folder beside ``target`` (same file system), named after it and this process.

    Fill it, then rename it into place; it is removed if it is still there at the end. A process killed
    meanwhile leaves it behind: :func:`remove_stale_temp_dirs` recognises it by the dead process's id.
    """
    import shutil
    import socket

    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    prefix = f".{target.name}{_TEMP_DIR_SEPARATOR}{socket.gethostname()}.{os.getpid()}."
    tmp = Path(tempfile.mkdtemp(prefix=prefix, dir=target.parent))
    try:
        yield tmp
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def remove_stale_temp_dirs(parent: str | os.PathLike, max_age_s: float = 86400.0) -> list[Path]:
    """Delete the temp folders of :func:`temp_dir_for` in ``parent`` whose process is gone.

    A folder of this host whose process no longer runs is removed; one of another host (a shared file
    system) when it is older than ``max_age_s``.

    Returns:
        The removed folders.
    """
    import shutil
    import socket

    parent = Path(parent)
    host = socket.gethostname()
    removed = []
    try:
        candidates = [p for p in parent.iterdir() if p.name.startswith(".") and _TEMP_DIR_SEPARATOR in p.name]
    except OSError:
        return removed
    for p in candidates:
        owner = p.name.split(_TEMP_DIR_SEPARATOR, 1)[1].rsplit(".", 2)
        if len(owner) != 3 or not p.is_dir():
            continue
        owner_host, pid = owner[0], owner[1]
        try:
            age = time.time() - p.stat().st_mtime
        except OSError:
            continue
        alive = _pid_alive(int(pid)) if owner_host == host and pid.isdigit() else age < max_age_s
        if not alive:
            logger.info("Removing the temp folder of an interrupted run: %s", p)
            shutil.rmtree(p, ignore_errors=True)
            removed.append(p)
    return removed


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # exists, owned by someone else
        return True
    return True


# ---------------------------------------------------------------------------------------------- reading
#: Entries of a training checkpoint that hold a state dict, in the order :func:`read_state_dict` tries them.
STATE_DICT_ENTRIES = ("ema", "model", "state_dict")


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def read_torch_dict(path: str | os.PathLike, what: str = "torch file") -> dict[str, Any]:
    """``torch.load(path, weights_only=True, mmap=True)`` of a file that must hold a dict.

    The file is memory-mapped (legacy non-zip files are read whole): a converter that uses one entry of
    a training checkpoint (``"ema"``) never reads the others into memory.

    Args:
        path: The file.
        what: What the file is, for messages (``"v1 checkpoint"``).

    Raises:
        MissingFileError: No such file (a ``FileNotFoundError``).
        UnsafeFileError: A pickle with objects outside torch's safe allowlist (a ``ValueError``).
        DamagedFileError: A corrupt or truncated file, or not a dict (a ``ValueError``); one line naming
            the file and the cause.
    """
    import torch

    path = Path(path)
    if not path.is_file():
        raise MissingFileError(f"{what} not found: {path}")
    try:
        try:  # memory-mapped: the tensors are the file's pages until written to (zip files, torch >= 1.6)
            obj = torch.load(str(path), map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError as e:
            if "mmap" not in str(e):
                raise
            obj = torch.load(str(path), map_location="cpu", weights_only=True)  # a legacy (non-zip) file
    except Exception as e:  # arbitrary pickles, corrupt or truncated files
        found = re.search(r"GLOBAL ([\w.]+)", str(e))
        if found:
            raise UnsafeFileError(
                f"refused to read {path} as {what}: it holds pickled code ({found.group(1)}), which uae never "
                "runs (read with weights_only=True); use a file of plain tensors (a state dict or safetensors)"
            ) from e
        raise DamagedFileError(
            f"cannot read {path} as a {what} with weights_only=True: {_first_line(e)}"
        ) from e
    if not isinstance(obj, dict):
        raise DamagedFileError(f"{path} does not hold a dict (got {type(obj).__name__})")
    return obj


def read_safetensors(path: str | os.PathLike) -> dict[str, Any]:
    """All tensors of a ``.safetensors`` file.

    Raises:
        MissingFileError: No such file.
        DamagedFileError: A truncated or foreign file (one line, a ``ValueError``).
    """
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file():
        raise MissingFileError(f"weights file not found: {path}")
    try:
        return load_file(str(path))
    except Exception as e:  # truncated, corrupt, not safetensors
        raise DamagedFileError(
            f"cannot read {path} as safetensors (truncated or not a safetensors file): {_first_line(e)}"
        ) from e


def read_state_dict(
    path: str | os.PathLike,
    entry: str | None = None,
    *,
    entries: tuple[str, ...] = STATE_DICT_ENTRIES,
    what: str = "checkpoint file",
) -> dict[str, Any]:
    """The one state-dict reader: a ``.safetensors`` file, or a torch file read with ``weights_only=True``.

    A torch file may hold the state dict itself or a dict of them (a training checkpoint with
    ``{"ema", "model", ...}``): see :func:`state_dict_in`.

    Args:
        path: The file.
        entry: The checkpoint entry to use; ``None`` tries ``entries`` in order, then the dict itself.
        entries: Entries tried when ``entry`` is ``None`` (DINOv2 files: ``("model", "state_dict",
            "teacher")``).
        what: What the file is, for messages.

    Returns:
        ``{name: tensor}``.

    Raises:
        MissingFileError: The file does not exist.
        DamagedFileError: The file cannot be read as a state dict, or holds entries that are not tensors.
        UnsafeFileError: The pickle needs code execution.
        InputError: ``entry`` is not in the file.
    """
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(f"{what} not found: {path}")
    if path.suffix == ".safetensors":
        return read_safetensors(path)
    return state_dict_in(read_torch_dict(path, what), path, entry, entries=entries)


def state_dict_in(
    obj: Mapping[str, Any],
    path: str | os.PathLike,
    entry: str | None = None,
    *,
    entries: tuple[str, ...] = STATE_DICT_ENTRIES,
) -> dict[str, Any]:
    """The state dict inside a loaded torch file: ``obj[entry]``, the first of ``entries``, or ``obj`` itself.

    Args:
        obj: What :func:`read_torch_dict` returned.
        path: The file it came from (for messages).
        entry: The entry to use; ``None`` tries ``entries`` in order, then ``obj`` itself.
        entries: Entries tried when ``entry`` is ``None``.

    Raises:
        InputError: ``entry`` is not a dict entry of ``obj``.
        DamagedFileError: The state dict holds values that are not tensors.
    """
    import torch

    if entry is not None:
        if not isinstance(obj.get(entry), dict):
            raise InputError(f"{path} has no state dict entry {entry!r}; entries: {sorted(map(str, obj))}")
        obj = obj[entry]
    else:
        nested = next((k for k in entries if isinstance(obj.get(k), dict)), None)
        if nested is not None:
            logger.info("Using the %r entry of %s", nested, path)
            obj = obj[nested]
    others = sorted(str(k) for k, v in obj.items() if not isinstance(v, torch.Tensor))
    if others:
        raise DamagedFileError(f"{path}: entries that are not tensors: {others[:10]}")
    return dict(obj)


def read_yaml_mapping(path: str | os.PathLike, what: str = "YAML file") -> dict[str, Any]:
    """A YAML file that must hold a mapping (``yaml.safe_load``).

    Raises:
        MissingFileError: No such file.
        DamagedFileError: Not valid YAML, or not a mapping (a ``ValueError``).
    """
    import yaml

    path = Path(path)
    if not path.is_file():
        raise MissingFileError(f"{what} not found: {path}")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise DamagedFileError(f"{path} is not valid YAML: {_first_line(e)}") from e
    if not isinstance(data, dict):
        raise DamagedFileError(f"{path} does not hold a YAML mapping")
    return data
