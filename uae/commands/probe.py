"""``uae probe``: linear probe (BN without affine + linear) on frozen band features."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from uae.cliargs import ArgumentParser, output_dir, output_file
from uae.evaluation.options import add_model_data, add_probe_opts


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
    """``uae probe``: parse, extract (cached) features per band, train the heads, write the result JSON."""
    args = build_parser().parse_args(list(argv))
    from uae.data.datasets import SkipLog
    from uae.evaluation.common import (
        fit_probe,
        format_table,
        images_summary,
        print_skipped,
        probe_datasets,
        setup_model,
        write_json,
    )
    from uae.evaluation.probe import parse_band

    bands = [parse_band(b) for b in args.band]
    output_file(args.output, "--output")
    if args.cache_dir:
        output_dir(args.cache_dir, "--cache-dir")
    model, device = setup_model(args)
    train_ds, val_ds, classes = probe_datasets(args, model.config.img_size)
    cache_dir = Path(args.cache_dir) if args.cache_dir else Path(args.output).resolve().parent / "features"
    results: dict[str, Any] = {"model": args.model, "data": args.data, "classes": classes, "bands": {}}
    for band in bands:
        logs = (SkipLog(), SkipLog())
        _, res = fit_probe(
            model, (train_ds, val_ds), band, args, device, cache_dir, "probe", len(classes), logs=logs
        )
        results["bands"][str(band)] = res
        # The same files for every band: keep one count (of the last band's pass).
        results["images"] = {"train": images_summary(logs[0]), "val": images_summary(logs[1])}
    write_json(args.output, results)
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
    print_skipped(images_summary(*logs))
    print(f"results written to {args.output}")
    return 0
