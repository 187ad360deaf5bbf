"""``uae bands IMG... [--model M] [--out FILE.png]``: one picture of progressive band decodes and band energies."""

from __future__ import annotations

from collections.abc import Sequence

from uae.cliargs import ArgumentParser
from uae.commands.reconstruct import add_image_model_args


def build_parser() -> ArgumentParser:
    """Options of ``uae bands``."""
    parser = ArgumentParser(
        prog="uae bands",
        description="Picture of progressive decodes from bands 0..k (band 0 = the semantic, lowest-frequency band) "
        "and each band's share of the latent energy, one row per image.",
    )
    add_image_model_args(parser)
    parser.add_argument(
        "--out", default="bands.png", help="output PNG (default: ./bands.png; never one of the inputs)"
    )
    return parser


def main(argv: Sequence[str]) -> int:
    """Parse, then run :func:`uae.inference.run_bands`."""
    args = build_parser().parse_args(list(argv))
    from uae.inference import run_bands

    return run_bands(args)
