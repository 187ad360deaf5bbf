"""``uae`` command line: one entry point, one module per sub-command in :mod:`uae.commands`.

Errors a user can fix (missing files, unreadable images, unknown model names, bad arguments) are
printed as one line on stderr with a non-zero exit code, without a traceback. Set ``UAE_DEBUG=1``
to see the traceback.
"""

from __future__ import annotations

import importlib
import logging
import os
import sys
from collections.abc import Sequence

from uae.cliargs import CLIError  # defined there so that `python -m uae.cli` catches it too

# name -> (module, function, one-line help). Each function takes argv (list[str]) and returns an exit code;
# each module (uae.commands.*) imports only light modules at import time, so `--help` is fast.
COMMANDS: dict[str, tuple[str, str, str]] = {
    "fit": (
        "uae.commands.fit",
        "main",
        "train a UAE stage with LightningCLI (--config recipes/<...>.yaml)",
    ),
    "validate": ("uae.commands.fit", "validate_main", "run validation of a training config (LightningCLI)"),
    "export": (
        "uae.commands.export",
        "main",
        "Lightning checkpoint -> Hub-layout directory (EMA weights)",
    ),
    "reconstruct": ("uae.commands.reconstruct", "main", "reconstruct images and write band pictures"),
    "eval": ("uae.commands.eval", "main", "PSNR / SSIM / LPIPS / rFID of a model on a dataset"),
    "probe": ("uae.commands.probe", "main", "linear probe on band features"),
    "spectrum": (
        "uae.commands.spectrum",
        "main",
        "radial power spectrum of latents and energy per band",
    ),
    "filtered-eval": ("uae.commands.filtered_eval", "main", "low-pass / high-pass filtered evaluation"),
    "bands": ("uae.commands.bands", "main", "picture of progressive band decodes and band energies"),
    "encode": (
        "uae.commands.encode",
        "main",
        "export band latents of a dataset as sharded safetensors",
    ),
    "convert": (
        "uae.commands.convert",
        "main",
        "convert the authors' or RAE checkpoints into uae's layout",
    ),
    "bench": ("uae.commands.bench", "main", "speed and memory of a model, side by side with peer tokenizers"),
    "models": ("uae.commands.models", "main", "list the registered models and their pretrained weights"),
    "publish": ("uae.commands.publish", "main", "convert a release, write a Hub folder + card, push"),
    "app": ("uae.commands.app", "main", "band explorer web page (Gradio; needs the app extra)"),
}

USER_ERRORS: tuple[type[BaseException], ...] = (
    FileNotFoundError,
    ValueError,
    PermissionError,
    KeyError,
    FileExistsError,
    IsADirectoryError,
    NotADirectoryError,
)


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
        from uae import __version__

        print(f"uae {__version__}")
        return 0
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"uae: error: unknown command {name!r}; choose from {', '.join(COMMANDS)}", file=sys.stderr)
        return 2
    module, func, _ = COMMANDS[name]
    try:
        fn = getattr(importlib.import_module(module), func)
        return int(fn(rest) or 0)
    except (CLIError, *USER_ERRORS) as e:
        if os.environ.get("UAE_DEBUG"):
            raise
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        if isinstance(e, KeyError):
            msg = f"missing key {msg}"
        print(f"uae {name}: error: {msg}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"uae {name}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
