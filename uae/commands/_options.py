"""What the ``uae`` commands share when parsing: a one-line-error parser, number types, the option groups
of the evaluation commands, and their translation into the library's settings.

Light on purpose: only the standard library, :mod:`uae.errors` and the names in
:mod:`uae.evaluation.options` / :mod:`uae.bench.names` are imported at module level, so that building a
parser (and ``--help``) does not import torch.

The number types plug into ``argparse`` (``type=positive_int``); with :class:`ArgumentParser` a bad
value is reported as one line naming the option (``uae eval: error: argument --batch-size: must be a
positive integer, got '0'``, exit code 2) instead of argparse's usage block.
"""

from __future__ import annotations

import argparse
import inspect
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

from uae.errors import UAEError
from uae.evaluation.options import NAMED_DATASETS
from uae.hardware import WORKER_NICENESS

if TYPE_CHECKING:  # pragma: no cover
    from uae.evaluation.options import ProbeOptions, RunOptions

#: Model of ``uae reconstruct | bands | app`` when ``--model`` is not given: the embedded demo.
DEFAULT_MODEL = "uae_demo"


class CLIError(UAEError):
    """A command-line error to report as one line (exit code 2): a bad option or option value."""


#: The errors :mod:`uae.cli` (and the LightningCLI of ``uae fit``) report as one line: uae's own.
#: Anything else is a bug and is shown with its traceback.
USER_ERRORS: tuple[type[BaseException], ...] = (UAEError,)


class ArgumentParser(argparse.ArgumentParser):
    """``argparse.ArgumentParser`` whose errors are one line (raised as :class:`CLIError`).

    :func:`uae.cli.main` prints them as ``uae <command>: error: <message>`` with exit code 2; the
    usage stays available with ``--help``.
    """

    def error(self, message: str):  # type: ignore[override]
        raise CLIError(f"{message} (see {self.prog} --help)")


def command_flags(module: Any) -> dict[str, str]:
    """Library parameter -> flag for a command module: its ``FLAGS``, else :func:`flags_of` its parser.

    A parser that needs arguments to be built (``uae fit``'s) gives no flags.
    """
    flags = getattr(module, "FLAGS", None)
    if flags is not None:
        return flags
    build = getattr(module, "build_parser", None)
    if build is None or any(
        p.default is inspect.Parameter.empty for p in inspect.signature(build).parameters.values()
    ):
        return {}
    return flags_of(build())


def flags_of(parser: argparse.ArgumentParser, **extra: str) -> dict[str, str]:
    """Library parameter -> flag for a command: every option's ``dest`` -> its long flag, plus ``extra``.

    ``extra`` names the library parameters whose name differs from the option's (``out_dir="--out"``).
    """
    flags = {a.dest: max(a.option_strings, key=len) for a in parser._actions if a.option_strings}
    flags.pop("help", None)
    return {**flags, **extra}


# ------------------------------------------------------------------------------------------ number types
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


# ------------------------------------------------------------------------------------------ option groups
def add_image_model_args(parser: argparse.ArgumentParser) -> None:
    """Input images, ``--model`` and ``--device`` (``uae reconstruct``, ``uae bands``)."""
    parser.add_argument("images", nargs="+", metavar="IMG", help="image files")
    add_model_arg(parser)
    parser.add_argument("--device", default="cpu", help="torch device (default: cpu)")


def add_model_arg(parser: argparse.ArgumentParser) -> None:
    """``--model`` with the embedded demo as default (``uae reconstruct | bands | app``)."""
    parser.add_argument(
        "--model",
        default=DEFAULT_MODEL,
        help=f"registered name, model directory or Hub repo id (default: {DEFAULT_MODEL}, the embedded demo)",
    )


def add_model_data(p: argparse.ArgumentParser, data_help: str = "") -> None:
    """``--model``, ``--data`` and the loader / device options of every evaluation command."""
    p.add_argument(
        "--model", required=True, help="registered name, save_pretrained directory, or Hub repo id"
    )
    p.add_argument(
        "--random-init", action="store_true", help="registered name without trained weights (smoke tests)"
    )
    p.add_argument(
        "--data",
        required=True,
        help=data_help
        or f"image folder, image array (.npy, ADM .npz; uae pack) or one of {', '.join(NAMED_DATASETS)}",
    )
    p.add_argument(
        "--data-root",
        default=None,
        help="root of ImageNet (train/, val/) or MS-COCO (val2017/) for named --data",
    )
    p.add_argument(
        "--limit", type=positive_int, default=None, help="use only the first N images (sorted paths)"
    )
    p.add_argument("--batch-size", type=positive_int, default=32)
    p.add_argument(
        "--num-workers",
        type=non_negative_int,
        default=None,
        help="image loading processes (default: one per core but one, at most 16, when the model is on a "
        "GPU; min(4, cores) on the CPU, none there for an image array; divided among the processes of a "
        "torchrun launch)",
    )
    p.add_argument(
        "--max-pixels",
        type=non_negative_int,
        default=None,
        help="skip images with more pixels than this (checked from the header; default: "
        "UAE_MAX_IMAGE_PIXELS or 67108864; 0: no limit)",
    )
    p.add_argument("--device", default="auto", help="cuda, cpu, cuda:1, ... (default: cuda when available)")
    p.add_argument("--no-amp", action="store_true", help="disable bf16/fp16 autocast on CUDA")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument(
        "--no-draft",
        action="store_true",
        help="decode large JPEGs at full size (default: at a reduced scale when the model's input is "
        "less than half the image's shorter side; 1.3-9x faster, not bit-identical)",
    )
    p.add_argument(
        "--worker-niceness",
        type=non_negative_int,
        default=WORKER_NICENESS,
        help="niceness the image loading processes add to their own when the model is on the CPU, so that "
        "the model's threads preempt them (0-19; 0: keep their priority; default: %(default)s)",
    )


def add_metric_opts(p: argparse.ArgumentParser) -> None:
    """Options of the reconstruction metrics (LPIPS, rFID, quantisation) and the comparison size."""
    p.add_argument("--no-lpips", action="store_true", help="skip LPIPS")
    p.add_argument("--no-fid", action="store_true", help="skip rFID")
    p.add_argument("--lpips-net", default="vgg", choices=["vgg", "alex", "squeeze"])
    p.add_argument(
        "--inception-weights",
        default=None,
        help="torch-fidelity Inception weights file (weights-inception-2015-12-05-6726825d.pth)",
    )
    p.add_argument("--no-download", action="store_true", help="never download metric weights")
    p.add_argument("--no-quantize", action="store_true", help="compare float images instead of 8-bit ones")
    p.add_argument(
        "--size",
        type=positive_int,
        default=None,
        help="reconstruction comparison resolution (default: the model's output size, 256 for the paper models)",
    )


def add_probe_opts(p: argparse.ArgumentParser) -> None:
    """Options of the linear probe (head training, validation split, feature cache, pooling)."""
    p.add_argument("--epochs", type=positive_int, default=90)
    p.add_argument("--head-batch-size", type=positive_int, default=256)
    p.add_argument("--optimizer", default="sgd", choices=["sgd", "lars"])
    p.add_argument(
        "--lr", type=positive_float, default=None, help="peak lr (default: 0.1 for SGD, 0.1*bs/256 for LARS)"
    )
    p.add_argument("--weight-decay", type=non_negative_float, default=0.0)
    p.add_argument("--warmup-epochs", type=non_negative_int, default=0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--val-data",
        default=None,
        help="validation folder (default: ImageNet val for imagenet, else a split)",
    )
    p.add_argument(
        "--val-fraction",
        type=open_unit_fraction,
        default=0.2,
        help="share of --data held out when there is no --val-data",
    )
    p.add_argument("--cache-dir", default=None, help="feature cache folder (default: <output dir>/features)")
    p.add_argument(
        "--pool",
        default="mean",
        help="'mean' (C features; band 0 then equals the raw latent) or a grid side g (avg-pool to g x g, C*g*g features)",
    )


# --------------------------------------------------------------------- parsed options -> library settings
def run_options(args: argparse.Namespace) -> RunOptions:
    """The :class:`~uae.evaluation.options.RunOptions` of :func:`add_model_data`'s options."""
    from uae.evaluation.options import RunOptions, default_num_workers

    workers = args.num_workers
    if workers is None:
        from uae.data.arrays import is_image_array_file
        from uae.evaluation.common import resolve_device

        decoded = is_image_array_file(args.data)
        workers = default_num_workers(resolve_device(args.device).type, decoded=decoded)
    return RunOptions(
        data_root=args.data_root,
        limit=args.limit,
        # --max-pixels: not given -> the default budget, 0 -> no limit
        max_pixels="default" if args.max_pixels is None else (args.max_pixels or None),
        batch_size=args.batch_size,
        num_workers=workers,
        amp=not args.no_amp,
        progress=not args.no_progress,
        draft=not args.no_draft,
        worker_niceness=args.worker_niceness,
    )


def metric_options(args: argparse.Namespace) -> dict[str, Any]:
    """Keyword arguments of :class:`~uae.evaluation.metrics.ReconstructionMetrics` from :func:`add_metric_opts`."""
    return {
        "lpips": not args.no_lpips,
        "fid": not args.no_fid,
        "lpips_net": args.lpips_net,
        "inception_weights": args.inception_weights,
        "allow_download": not args.no_download,
        "quantize": not args.no_quantize,
    }


def probe_options(args: argparse.Namespace) -> ProbeOptions:
    """The :class:`~uae.evaluation.options.ProbeOptions` of :func:`add_probe_opts`'s options.

    The feature cache is ``--cache-dir``, or ``features/`` next to the ``--output`` file.
    """
    from uae.evaluation.options import ProbeOptions

    cache_dir = args.cache_dir or Path(args.output).resolve().parent / "features"
    return ProbeOptions(
        epochs=args.epochs,
        head_batch_size=args.head_batch_size,
        optimizer=args.optimizer,
        lr=args.lr,
        weight_decay=args.weight_decay,
        warmup_epochs=args.warmup_epochs,
        seed=args.seed,
        val_data=args.val_data,
        val_fraction=args.val_fraction,
        pool=args.pool,
        cache_dir=str(cache_dir),
    )
