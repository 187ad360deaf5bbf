"""``uae`` command line: one entry point, one module per sub-command in :mod:`uae.commands`.

uae's own errors (:class:`uae.errors.UAEError`: missing files, unreadable images, unknown model names,
bad arguments) are printed as one line on stderr with exit code 2, without a traceback, naming the
command's flag where the library names a parameter (:func:`uae.commands._options.command_flags`). Set ``UAE_DEBUG=1`` to
see their traceback. Any other exception is a bug in uae: its traceback is printed with a line asking
to report it (exit code 1).
"""

from __future__ import annotations

import importlib
import logging
import os
import sys
import traceback
from collections.abc import Sequence

from uae._version import __version__
from uae.commands import COMMANDS, prepare_process
from uae.commands._options import USER_ERRORS, CLIError, command_flags
from uae.errors import for_flags

__all__ = ["COMMANDS", "USER_ERRORS", "CLIError", "main"]


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is at emit time (test capture may replace and close it)."""

    @property  # type: ignore[override]
    def stream(self):  # noqa: D102
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:  # the base class assigns it in __init__
        pass


def _configure_logging() -> None:
    """Log the package's messages to stderr (Lightning configures its own loggers)."""
    log = logging.getLogger("uae")
    if not log.handlers:
        handler = _StderrHandler()
        handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
        log.addHandler(handler)
        log.setLevel(os.environ.get("UAE_LOG_LEVEL", "INFO"))


def _usage() -> str:
    lines = ["usage: uae <command> [options]", "", "Unified Autoencoding toolkit. Commands:"]
    lines += [f"  {name:14s} {help_}" for name, (_, _, help_) in COMMANDS.items()]
    lines += ["", "Run `uae <command> --help` for a command's options."]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``uae`` console script."""
    argv = list(sys.argv[1:] if argv is None else argv)
    _configure_logging()
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(_usage())
        return 0
    if argv[0] in ("-V", "--version"):
        print(f"uae {__version__}")
        return 0
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"uae: error: unknown command {name!r}; choose from {', '.join(COMMANDS)}", file=sys.stderr)
        return 2
    module_name, func, _ = COMMANDS[name]
    prepare_process(name)  # before the command module (and torch) is imported
    module = None
    try:
        module = importlib.import_module(module_name)
        return int(getattr(module, func)(rest) or 0)
    except USER_ERRORS as e:
        if os.environ.get("UAE_DEBUG"):
            raise
        print(f"uae {name}: error: {for_flags(e, command_flags(module))}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"uae {name}: interrupted", file=sys.stderr)
        return 130
    except Exception as e:
        traceback.print_exc()
        print(
            f"uae {name}: internal error ({type(e).__name__}): this is a bug in uae {__version__}, not in your "
            "input. Please report it with the command line and the traceback above.",
            file=sys.stderr,
        )
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
