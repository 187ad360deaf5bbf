"""``uae reconstruct IMG... [--model M] [--out DIR]``: write reconstructions and a band picture."""

from __future__ import annotations

from collections.abc import Sequence

from uae.commands._options import ArgumentParser, add_image_model_args, flags_of, positive_int


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


FLAGS = flags_of(build_parser(), out_dir="--out")


def main(argv: Sequence[str]) -> int:
    """Parse, run :func:`uae.inference.reconstruct_files`, print what was written."""
    args = build_parser().parse_args(list(argv))
    from uae.inference import reconstruct_files

    res = reconstruct_files(
        args.images,
        model=args.model,
        out_dir=args.out,
        band_picture=not args.no_bands,
        max_band_rows=args.max_band_rows,
        batch_size=args.batch_size,
        device=args.device,
    )
    for r in res.images:
        print(f"{r.source} -> {r.path}  (PSNR {r.psnr:.2f} dB vs the {res.output_size}px input crop)")
    if res.band_picture is not None:
        print(f"band picture -> {res.band_picture}")
    print(
        f"mean PSNR {res.mean_psnr:.2f} dB over {len(res.images)} image(s) with {res.model_name} "
        f"(K={res.num_bands})"
    )
    return 0
