"""``uae spectrum``: radial power spectrum of latents and the energy share per band."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from uae.cliargs import ArgumentParser, output_dir, positive_int
from uae.evaluation.options import add_model_data


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
        help="uae (the unified encoder), teacher (DINOv2 init), vae (diffusers AutoencoderKL, needs --vae)",
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
    """``uae spectrum``: parse, compute the spectra, write CSV / PNG / JSON and print the band shares."""
    args = build_parser().parse_args(list(argv))
    from uae.data.datasets import SkipLog
    from uae.evaluation.common import (
        build_dataset,
        format_table,
        images_summary,
        make_loader,
        max_pixels_option,
        print_skipped,
        resolve_data,
        setup_model,
        write_json,
    )
    from uae.evaluation.spectrum import (
        autoencoderkl_encoder,
        compute_spectra,
        plot_spectra,
        teacher_encoder,
        uae_encoder,
        write_spectrum_csv,
    )

    output_dir(args.out_dir, "--out-dir")
    root = resolve_data(args.data, args.data_root)
    model, device = setup_model(args)
    encoders, skipped = [], {}
    for name in args.encoders:
        if name == "uae":
            encoders.append(uae_encoder(model))
        elif name == "teacher":
            encoders.append(teacher_encoder(model, args.teacher_weights))
        else:
            if not args.vae:
                raise ValueError("--encoders vae needs --vae PATH_OR_REPO (a diffusers AutoencoderKL)")
            try:
                encoders.append(autoencoderkl_encoder(args.vae, size=args.vae_size, device=device))
            except ImportError as e:  # pragma: no cover - defensive
                skipped["vae"] = str(e)
    size = max(e.size for e in encoders)
    ds = build_dataset(root, size, labels=False, limit=args.limit, max_pixels=max_pixels_option(args))
    log = SkipLog()
    results = compute_spectra(
        encoders,
        make_loader(ds, args.batch_size, args.num_workers),
        band_energy=model.band_projector.band_energy,
        device=device,
        amp=not args.no_amp,
        progress=not args.no_progress,
        skip_log=log,
    )
    out = Path(args.out_dir)
    spec_csv, band_csv = write_spectrum_csv(results, out)
    png = plot_spectra(results, out / "spectrum.png", title=f"{args.model} on {args.data}")
    write_json(
        out / "spectrum.json",
        {
            "model": args.model,
            "data": args.data,
            "num_bands": model.config.num_bands,
            "encoders": results,
            "skipped": skipped,
            "images": images_summary(log),
        },
    )
    k = model.config.num_bands
    rows = [
        [r["encoder"], "x".join(map(str, r["latent_shape"])), *(100 * s for s in r["band_share"])]
        for r in results
    ]
    print(f"uae spectrum: energy share per band (%), {results[0]['num_images']} images")
    print(format_table(rows, ["encoder", "latent", *(f"band {i}" for i in range(k))]))
    print_skipped(images_summary(log))
    print(f"written: {spec_csv}, {band_csv}, {png}")
    return 0
