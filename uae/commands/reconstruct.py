"""``uae reconstruct IMG... [--model M] [--out DIR]``: write reconstructions and a band picture."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from uae.cliargs import DEFAULT_MODEL, ArgumentParser, positive_int


def add_image_model_args(parser: argparse.ArgumentParser) -> None:
    """Input images, ``--model`` and ``--device`` (shared with ``uae bands``)."""
    parser.add_argument("images", nargs="+", metavar="IMG", help="image files")
    parser.add_argument(
        "--model",
        default=DEFAULT_MODEL,
        help=f"registered name, model directory or Hub repo id (default: {DEFAULT_MODEL}, the embedded demo)",
    )
    parser.add_argument("--device", default="cpu", help="torch device (default: cpu)")


def build_parser() -> ArgumentParser:
    """Options of ``uae reconstruct``."""
    parser = ArgumentParser(
        prog="uae reconstruct",
        description="Reconstruct images with a UAE: writes DIR/<name>.png per input (at the model's output size) "
        "and DIR/bands.png (progressive decodes from bands 0..k and band energies).",
    )
    add_image_model_args(parser)
    parser.add_argument(
        "--out", default="reconstructions", help="output directory (default: ./reconstructions)"
    )
    parser.add_argument("--no-bands", action="store_true", help="do not write the band picture")
    parser.add_argument(
        "--max-band-rows", type=positive_int, default=6, help="images shown in the band picture (default 6)"
    )
    parser.add_argument("--batch-size", type=positive_int, default=16)
    return parser


def main(argv: Sequence[str]) -> int:
    """Parse, then run :func:`uae.inference.run_reconstruct`."""
    args = build_parser().parse_args(list(argv))
    from uae.inference import run_reconstruct

    return run_reconstruct(args)
