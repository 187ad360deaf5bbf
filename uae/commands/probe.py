"""``uae probe``: linear probe (BN without affine + linear) on frozen band features."""

from __future__ import annotations

from collections.abc import Sequence

from uae.commands._options import (
    ArgumentParser,
    add_model_data,
    add_probe_opts,
    probe_options,
    run_options,
)


def build_parser() -> ArgumentParser:
    """Options of ``uae probe``."""
    p = ArgumentParser(prog="uae probe", description="Linear probe on frozen UAE features (cached once).")
    add_model_data(
        p,
        data_help="labelled folder (class sub-folders), 'imagenet' (with --data-root: train/ + val/), or a named split",
    )
    add_probe_opts(p)
    p.add_argument(
        "--band",
        nargs="+",
        default=["0"],
        help="band index, 'all' (bands concatenated), 'latent' (raw encoder); several allowed",
    )
    p.add_argument("--output", default="uae_probe.json", help="result JSON file")
    return p


def main(argv: Sequence[str]) -> int:
    """``uae probe``: parse, extract (cached) features per band and train the heads
    (:func:`uae.evaluation.probe.linear_probe`), write the result JSON and print a table."""
    args = build_parser().parse_args(list(argv))
    from uae.commands._report import format_table, num_skipped, print_notes
    from uae.evaluation.common import prepare_model, write_json
    from uae.evaluation.probe import linear_probe, parse_band
    from uae.paths import output_dir, output_file

    bands = [parse_band(b) for b in args.band]
    output_file(args.output, param="output")
    if args.cache_dir:
        output_dir(args.cache_dir, param="cache_dir")
    probe = probe_options(args)
    model, _ = prepare_model(args.model, random_init=args.random_init, device=args.device)
    results = linear_probe(model, args.data, bands=bands, probe=probe, options=run_options(args))
    results = {"model": args.model, **results}
    write_json(args.output, results)
    classes = results["classes"]
    print(f"uae probe: {args.model} on {args.data} ({len(classes)} classes)")
    rows = [
        [
            b,
            r["feature_dim"],
            100 * r["top1"],
            100 * r["top5"],
            100 * r["train_top1"],
            r["num_train"],
            r["num_val"],
        ]
        for b, r in results["bands"].items()
    ]
    print(
        format_table(
            rows, ["band", "dim", "top1 %", f"top{min(5, len(classes))} %", "train top1 %", "train", "val"]
        )
    )
    print_notes(skipped=num_skipped(*results["images"].values()))
    print(f"results written to {args.output}")
    return 0
