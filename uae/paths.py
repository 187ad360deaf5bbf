"""Checks of output paths before any work is done: a folder that can be created, a file that is not an input.

Nothing is created here. The errors are :class:`uae.errors.InputError` naming the parameter
(``out``, ``output``, ...), which a command reports as its flag (``--out``).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from uae.errors import InputError


def _blocking_file(path: Path) -> Path | None:
    """The first existing ancestor of ``path`` (or ``path`` itself) that is not a folder."""
    for p in (path, *path.parents):
        if p.exists():
            return None if p.is_dir() else p
    return None


def output_dir(path: str | os.PathLike, *, param: str = "out") -> Path:
    """Check that ``path`` is, or can be created as, a folder.

    Args:
        path: The folder.
        param: The parameter that holds it (named in the message).

    Returns:
        ``path`` with ``~`` expanded.

    Raises:
        InputError: ``path`` or one of its parents is an existing file.
    """
    path = Path(path).expanduser()
    block = _blocking_file(path)
    if block is not None:
        where = "is" if block == path else f"is inside {str(block)!r}, which is"
        raise InputError(f"{param} {str(path)!r} {where} an existing file, not a folder", param=param)
    return path


def output_file(
    path: str | os.PathLike, *, param: str = "out", inputs: Iterable[str | os.PathLike] = ()
) -> Path:
    """Check that ``path`` can be written as a file and is none of ``inputs``.

    Args:
        path: The file.
        param: The parameter that holds it (named in the message).
        inputs: Files the same run reads, which must never be overwritten.

    Returns:
        ``path`` with ``~`` expanded.

    Raises:
        InputError: ``path`` is an existing folder, lies under a file, or is one of the inputs.
    """
    path = Path(path).expanduser()
    if path.is_dir():
        raise InputError(f"{param} {str(path)!r} is an existing folder; give a file path", param=param)
    output_dir(path.parent, param=param)
    if is_one_of(path, inputs):
        raise InputError(
            f"{param} {str(path)!r} is one of the input files; choose another output name", param=param
        )
    return path


def is_one_of(path: str | os.PathLike, others: Iterable[str | os.PathLike]) -> bool:
    """Whether ``path`` names the same file as any of ``others`` (resolved, following links)."""
    target = Path(path).expanduser().resolve()
    return any(Path(o).expanduser().resolve() == target for o in others)
