"""Shared argument checks of the ``uae`` commands: a one-line-error parser, number types, output paths.

The number types plug into ``argparse`` (``type=positive_int``); with :class:`ArgumentParser` a bad
value is reported as one line naming the option (``uae eval: error: argument --batch-size: must be a
positive integer, got '0'``, exit code 2) instead of argparse's usage block. The path checks raise
``ValueError`` naming the option, which :mod:`uae.cli` prints as one line (exit code 2).
"""

from __future__ import annotations

import argparse
import math
import os
from collections.abc import Iterable
from pathlib import Path

#: Model of ``uae reconstruct | bands | app`` when ``--model`` is not given: the embedded demo.
DEFAULT_MODEL = "uae_demo"


class CLIError(Exception):
    """An error to report as one line (exit code 2); re-exported as ``uae.cli.CLIError``."""


class ArgumentParser(argparse.ArgumentParser):
    """``argparse.ArgumentParser`` whose errors are one line (raised as :class:`CLIError`).

    :func:`uae.cli.main` prints them as ``uae <command>: error: <message>`` with exit code 2; the
    usage stays available with ``--help``.
    """

    def error(self, message: str):  # type: ignore[override]
        raise CLIError(f"{message} (see {self.prog} --help)")


def _number(value: str, kind: type, what: str, ok) -> int | float:
    try:
        x = kind(value)
    except (TypeError, ValueError):
        raise argparse.ArgumentTypeError(f"must be {what}, got {value!r}") from None
    if (kind is float and not math.isfinite(x)) or not ok(x):
        raise argparse.ArgumentTypeError(f"must be {what}, got {value!r}")
    return x


def positive_int(value: str) -> int:
    """argparse type: an integer >= 1."""
    return _number(value, int, "a positive integer", lambda x: x >= 1)


def non_negative_int(value: str) -> int:
    """argparse type: an integer >= 0."""
    return _number(value, int, "an integer >= 0", lambda x: x >= 0)


def positive_float(value: str) -> float:
    """argparse type: a finite number > 0."""
    return _number(value, float, "a positive number", lambda x: x > 0)


def non_negative_float(value: str) -> float:
    """argparse type: a finite number >= 0."""
    return _number(value, float, "a number >= 0", lambda x: x >= 0)


def open_unit_fraction(value: str) -> float:
    """argparse type: a number strictly between 0 and 1."""
    return _number(value, float, "a number strictly between 0 and 1", lambda x: 0 < x < 1)


def _blocking_file(path: Path) -> Path | None:
    """The first existing ancestor of ``path`` (or ``path`` itself) that is not a folder."""
    for p in (path, *path.parents):
        if p.exists():
            return None if p.is_dir() else p
    return None


def output_dir(path: str | os.PathLike, option: str = "--out") -> Path:
    """Check that ``path`` is, or can be created as, a folder (nothing is created).

    Raises:
        ValueError: ``path`` or one of its parents is an existing file.
    """
    path = Path(path).expanduser()
    block = _blocking_file(path)
    if block is not None:
        where = "is" if block == path else f"is inside {str(block)!r}, which is"
        raise ValueError(f"{option} {str(path)!r} {where} an existing file, not a folder")
    return path


def output_file(
    path: str | os.PathLike, option: str = "--out", inputs: Iterable[str | os.PathLike] = ()
) -> Path:
    """Check that ``path`` can be written as a file and is none of ``inputs`` (nothing is created).

    Raises:
        ValueError: ``path`` is an existing folder, lies under a file, or is one of the inputs.
    """
    path = Path(path).expanduser()
    if path.is_dir():
        raise ValueError(f"{option} {str(path)!r} is an existing folder; give a file path")
    output_dir(path.parent, option=f"{option} folder")
    if is_one_of(path, inputs):
        raise ValueError(f"{option} {str(path)!r} is one of the input files; choose another output name")
    return path


def is_one_of(path: str | os.PathLike, others: Iterable[str | os.PathLike]) -> bool:
    """Whether ``path`` names the same file as any of ``others`` (resolved, following links)."""
    target = Path(path).expanduser().resolve()
    return any(Path(o).expanduser().resolve() == target for o in others)
