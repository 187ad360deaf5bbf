"""``uae filtered-eval``: probe accuracy and reconstruction metrics on original / LFC / HFC images."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from uae.cliargs import ArgumentParser, output_dir, output_file, positive_float
from uae.evaluation.options import add_metric_opts, add_model_data, add_probe_opts


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


def main(argv: Sequence[str]) -> int:
    """``uae filtered-eval``: parse, train the probe on originals, evaluate every filtered variant."""
    args = build_parser().parse_args(list(argv))
    if args.no_probe and args.no_recon:
        raise ValueError("--no-probe and --no-recon leave nothing to evaluate")
    from uae.data.datasets import SkipLog
    from uae.evaluation.common import (
        build_dataset,
        build_metrics,
        fit_probe,
        format_table,
        images_summary,
        make_loader,
        max_pixels_option,
        print_skipped,
        print_unavailable,
        probe_datasets,
        probe_features,
        resolve_data,
        setup_model,
        write_json,
    )
    from uae.evaluation.filtered import make_filter
    from uae.evaluation.probe import evaluate_head, parse_band
    from uae.evaluation.reconstruction import evaluate_reconstruction

    output_file(args.output, "--output")
    if args.cache_dir:
        output_dir(args.cache_dir, "--cache-dir")
    model, device = setup_model(args)
    variants = [("original", 0.0)] + [(k, r) for r in args.radius for k in ("lfc", "hfc")]
    results: dict[str, Any] = {"model": args.model, "data": args.data, "variants": {}}
    head = None
    if not args.no_probe:
        band = parse_band(args.band)
        train_ds, val_ds, classes = probe_datasets(args, model.config.img_size)
        cache_dir = (
            Path(args.cache_dir) if args.cache_dir else Path(args.output).resolve().parent / "features"
        )
        logs = (SkipLog(), SkipLog())
        head, res = fit_probe(
            model, (train_ds, val_ds), band, args, device, cache_dir, "filtered", len(classes), logs=logs
        )
        images = {"train": images_summary(logs[0]), "val": images_summary(logs[1])}
        results["probe"] = {"band": str(band), "trained_on": "original images", **res, "images": images}
    rec_metrics = None
    for kind, radius in variants:
        name = kind if kind == "original" else f"{kind}@{radius:g}"
        flt = make_filter(kind, radius)
        entry: dict[str, Any] = {"kind": kind, "radius": radius if kind != "original" else None}
        if head is not None:
            if kind == "original":
                entry.update({"top1": results["probe"]["top1"], "top5": results["probe"]["top5"]})
            else:
                _, (fva, lva) = probe_features(
                    model,
                    (None, val_ds),
                    band,
                    args,
                    device,
                    cache_dir,
                    "filtered",
                    input_filter=flt,
                    filter_tag=f"{kind}{radius:g}",
                )
                keep = lva >= 0
                entry.update(evaluate_head(head, fva[keep], lva[keep]))
        if not args.no_recon:
            root = (
                resolve_data("imagenet-val", args.data_root)
                if args.data == "imagenet"
                else resolve_data(args.val_data or args.data, args.data_root)
            )
            size = args.size or model.config.output_size
            ds = build_dataset(
                root,
                model.config.img_size,
                out_size=size,
                labels=False,
                limit=args.limit,
                max_pixels=max_pixels_option(args),
            )
            if rec_metrics is None:
                rec_metrics = build_metrics(args, device)  # weights resolved and loaded once for all variants
            rec_metrics.reset()
            rec = evaluate_reconstruction(
                model,
                make_loader(ds, args.batch_size, args.num_workers),
                rec_metrics,
                size,
                input_filter=flt,
                device=device,
                amp=not args.no_amp,
                progress=not args.no_progress,
                desc=f"eval {name}",
            )
            entry.update({k: rec[k] for k in ("psnr", "ssim", "lpips", "rfid", "num_images")})
            entry["num_skipped"] = rec["images"]["skipped"]
            entry["unavailable"] = rec["unavailable"]
            results.setdefault("notes", rec["notes"])
            results.setdefault("images", rec["images"])  # the same files for every variant
        results["variants"][name] = entry
    write_json(args.output, results)
    print(f"uae filtered-eval: {args.model} on {args.data}")
    cols = (["top1"] if head is not None else []) + (
        [] if args.no_recon else ["psnr", "ssim", "lpips", "rfid"]
    )
    rows = [
        [n, *((100 * e[c]) if c == "top1" else e.get(c) for c in cols)]
        for n, e in results["variants"].items()
    ]
    print(format_table(rows, ["images", *(c + (" %" if c == "top1" else "") for c in cols)]))
    if not args.no_recon:
        print_unavailable(next(iter(results["variants"].values())))
        print_skipped(results["images"])
    elif "probe" in results:
        print_skipped(images_summary(*logs))
    print(f"results written to {args.output}")
    return 0
