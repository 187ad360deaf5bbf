"""uae's own error types.

The command line (:mod:`uae.cli`) prints these as one line with exit code 2; any other exception is a
bug and is shown with its traceback and a hint to report it. Library code raises them for problems a
user can fix (a bad argument, a missing or damaged file, an unknown model name) and speaks of
parameters, not command-line flags; the commands translate parameter names to their flags.

Every type also derives from the built-in exception a Python caller would expect (``ValueError``,
``FileNotFoundError``, ``OSError``), so ``except ValueError`` keeps working in notebooks.
"""

from __future__ import annotations

import re

__all__ = [
    "UAEError",
    "for_flags",
    "ConfigError",
    "InputError",
    "MissingFileError",
    "DamagedFileError",
    "UnsafeFileError",
    "OutputError",
    "UAELoadError",
]


class UAEError(Exception):
    """Base of every error uae raises on purpose: the message is one line a user can act on.

    Args:
        message: What is wrong and what to do, naming the parameter (``batch_size``), not a flag.
        param: The parameter the message is about, when there is one. The commands translate it to their
            flag (``batch_size`` -> ``--batch-size``) with :func:`for_flags`.
    """

    def __init__(self, message: str = "", *, param: str | None = None) -> None:
        super().__init__(message)
        self.param = param


def for_flags(error: BaseException, flags: dict[str, str]) -> str:
    """The first line of ``error``'s message with its parameter named as the command's flag.

    Args:
        error: Any exception; a :class:`UAEError` with ``param`` in ``flags`` has that name replaced.
        flags: Parameter name -> flag, e.g. ``{"batch_size": "--batch-size"}``.

    Returns:
        One line (the type's name when the message is empty).
    """
    text = str(error).strip()
    line = text.splitlines()[0] if text else type(error).__name__
    param = getattr(error, "param", None)
    if param and param in flags:
        # The first mention of the parameter as a word of its own, not inside a path, a quoted value or a
        # longer name (in ``out 'outputs/out.png' ...`` only the first ``out``).
        word = rf"(?<![\w./\\'\"-]){re.escape(param)}(?![\w/\\'\"-]|\.\w)"
        line = re.sub(word, lambda _: flags[param], line, count=1)
    return line


class InputError(UAEError, ValueError):
    """An argument, tensor or file content is not what the function accepts (names what was expected)."""


class ConfigError(InputError):
    """A config field (``UAEConfig``, a recipe, a weights-table entry) has an invalid value; names the field."""


class MissingFileError(UAEError, FileNotFoundError):
    """A file or folder the user must supply does not exist (names it and, where known, how to get it)."""


class DamagedFileError(InputError):
    """A file exists but cannot be used: truncated, corrupted, wrong checksum, non-finite weights."""


class UnsafeFileError(InputError):
    """A file would need code execution to be read (a pickle that ``weights_only=True`` refuses)."""


class OutputError(UAEError, OSError):
    """Writing a result failed for a reason outside uae (disk full, no permission, read-only file system)."""


class UAELoadError(InputError):
    """A checkpoint could not be loaded into a model (wrong architecture, mismatched keys, shapes or dtypes)."""
