"""``uae spectrum``: radial power spectrum of latents and the energy share per band."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from uae.commands._options import ArgumentParser, add_model_data, positive_int, run_options


def build_parser() -> ArgumentParser:
    """Options of ``uae spectrum``."""
    p = ArgumentParser(
        prog="uae spectrum", description="Radial power spectrum of latent grids and energy per UAE band."
    )
    add_model_data(p)
    p.add_argument(
        "--encoders",
        nargs="+",
        default=["uae"],
        choices=["uae", "teacher", "vae"],
        help="uae (the unified encoder), teacher (DINOv2 init, needs its weights), vae (diffusers "
        "AutoencoderKL, needs --vae); one whose weights are missing is left out with a note",
    )
    p.add_argument(
        "--teacher-weights", default=None, help="DINOv2 weights for the teacher (default: the config's)"
    )
    p.add_argument(
        "--vae", default=None, help="AutoencoderKL directory or Hub id (e.g. stabilityai/sd-vae-ft-mse)"
    )
    p.add_argument("--vae-size", type=positive_int, default=256, help="input side of the VAE")
    p.add_argument(
        "--out-dir",
        default="uae_spectrum",
        help="folder for spectrum.csv, band_energy.csv, spectrum.png, spectrum.json",
    )
    return p


def main(argv: Sequence[str]) -> int:
    """``uae spectrum``: parse, compute the spectra (:func:`uae.evaluation.spectrum.latent_spectra`),
    write CSV / PNG / JSON and print the band shares."""
    args = build_parser().parse_args(list(argv))
    from uae.commands._report import format_table, print_notes
    from uae.evaluation.common import prepare_model, write_json
    from uae.evaluation.spectrum import latent_spectra, plot_spectra, write_spectrum_csv
    from uae.paths import output_dir

    out = output_dir(args.out_dir, param="out_dir")
    model, _ = prepare_model(args.model, random_init=args.random_init, device=args.device)
    res = latent_spectra(
        model,
        args.data,
        encoders=args.encoders,
        teacher_weights=args.teacher_weights,
        vae=args.vae,
        vae_size=args.vae_size,
        options=run_options(args),
        skip_unavailable=True,  # an encoder without its weights is left out with a note
    )
    results = res["encoders"]
    spec_csv, band_csv = write_spectrum_csv(results, out)
    png = plot_spectra(results, Path(out) / "spectrum.png", title=f"{args.model} on {args.data}")
    summary = {
        "model": args.model,
        "data": args.data,
        "num_bands": res["num_bands"],
        "encoders": results,
        "skipped": res["skipped"],  # encoders left out (weights or library missing), with the reason
        "images": res["images"],
    }
    write_json(Path(out) / "spectrum.json", summary)
    k = res["num_bands"]
    rows = [
        [r["encoder"], "x".join(map(str, r["latent_shape"])), *(100 * s for s in r["band_share"])]
        for r in results
    ]
    print(f"uae spectrum: energy share per band (%), {results[0]['num_images']} images")
    print(format_table(rows, ["encoder", "latent", *(f"band {i}" for i in range(k))]))
    for name, why in res["skipped"].items():
        why = why.replace("teacher_weights=PATH", "--teacher-weights PATH")
        print(f"  {name}: skipped - {why}")
    print_notes(skipped=res["images"]["skipped"])
    print(f"written: {spec_csv}, {band_csv}, {png}")
    return 0
