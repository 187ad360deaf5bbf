"""``uae filtered-eval``: probe accuracy and reconstruction metrics on original / LFC / HFC images."""

from __future__ import annotations

from collections.abc import Sequence

from uae.commands._options import (
    ArgumentParser,
    CLIError,
    add_metric_opts,
    add_model_data,
    add_probe_opts,
    flags_of,
    metric_options,
    positive_float,
    probe_options,
    run_options,
)


def build_parser() -> ArgumentParser:
    """Options of ``uae filtered-eval``."""
    p = ArgumentParser(
        prog="uae filtered-eval",
        description="Low-pass (LFC) / high-pass (HFC) filtered evaluation at radius r beside the originals.",
    )
    add_model_data(
        p,
        data_help="labelled folder (for the probe), 'imagenet' (with --data-root), or any image folder (--no-probe)",
    )
    add_metric_opts(p)
    add_probe_opts(p)
    p.add_argument(
        "--radius", type=positive_float, nargs="+", default=[0.25, 0.5], help="cut-off radii (1 = Nyquist)"
    )
    p.add_argument("--band", default="0", help="probe feature band")
    p.add_argument("--no-probe", action="store_true", help="only reconstruction metrics")
    p.add_argument("--no-recon", action="store_true", help="only probe accuracy")
    p.add_argument("--output", default="uae_filtered.json", help="result JSON file")
    return p


FLAGS = flags_of(build_parser(), radii="--radius")


def main(argv: Sequence[str]) -> int:
    """``uae filtered-eval``: parse, run :func:`uae.evaluation.filtered.filtered_evaluation` (the probe is
    trained on the originals, every filtered variant evaluated), write the result JSON and print a table."""
    args = build_parser().parse_args(list(argv))
    if args.no_probe and args.no_recon:
        raise CLIError("--no-probe and --no-recon leave nothing to evaluate")
    from uae.commands._report import (
        format_table,
        metric_notes_for_flags,
        notes_instead_of_warnings,
        num_skipped,
        print_notes,
    )
    from uae.evaluation.common import prepare_model, write_json
    from uae.evaluation.filtered import filtered_evaluation
    from uae.evaluation.probe import parse_band
    from uae.paths import output_dir, output_file

    band = parse_band(args.band)
    output_file(args.output, param="output")
    if args.cache_dir:
        output_dir(args.cache_dir, param="cache_dir")
    model, _ = prepare_model(args.model, random_init=args.random_init, device=args.device)
    with notes_instead_of_warnings():  # each reason once, under the table
        res = filtered_evaluation(
            model,
            args.data,
            radii=args.radius,
            band=band,
            with_probe=not args.no_probe,
            with_reconstruction=not args.no_recon,
            probe=probe_options(args),
            metrics=metric_options(args),
            size=args.size,
            options=run_options(args),
        )
    results = {"model": args.model, **res}
    for entry in results["variants"].values():
        if "unavailable" in entry:
            entry["unavailable"] = metric_notes_for_flags(entry["unavailable"])
    write_json(args.output, results)
    print(f"uae filtered-eval: {args.model} on {args.data}")
    with_probe = "probe" in results
    cols = (["top1"] if with_probe else []) + ([] if args.no_recon else ["psnr", "ssim", "lpips", "rfid"])
    rows = [
        [n, *((100 * e[c]) if c == "top1" else e.get(c) for c in cols)]
        for n, e in results["variants"].items()
    ]
    print(format_table(rows, ["images", *(c + (" %" if c == "top1" else "") for c in cols)]))
    if not args.no_recon:
        first = next(iter(results["variants"].values()))
        print_notes(unavailable=first["unavailable"], skipped=results["images"]["skipped"])
    elif with_probe:
        print_notes(skipped=num_skipped(*results["probe"]["images"].values()))
    print(f"results written to {args.output}")
    return 0
