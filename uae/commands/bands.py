"""``uae bands IMG... [--model M] [--out FILE.png]``: one picture of progressive band decodes and band energies."""

from __future__ import annotations

from collections.abc import Sequence

from uae.commands._options import ArgumentParser, add_image_model_args


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
    """Parse, run :func:`uae.explorer.band_picture_files`, print each image's band energies and PSNRs."""
    args = build_parser().parse_args(list(argv))
    from uae.explorer import band_picture_files

    dest, rows = band_picture_files(args.images, model=args.model, out=args.out, device=args.device)
    for r in rows:
        print(
            f"{r.source}: band energy "
            + " ".join(f"{float(v):.3f}" for v in r.energy)
            + " | PSNR from bands 0..k: "
            + " ".join(f"{float(p):.2f}" for p in r.psnrs)
            + " dB"
        )
    print(f"band picture -> {dest}")
    return 0
