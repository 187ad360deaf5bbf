"""``uae eval``: PSNR / SSIM / LPIPS / rFID of reconstructions against the originals."""

from __future__ import annotations

from collections.abc import Sequence

from uae.cliargs import ArgumentParser, output_file
from uae.evaluation.options import add_metric_opts, add_model_data


def build_parser() -> ArgumentParser:
    """Options of ``uae eval``."""
    p = ArgumentParser(
        prog="uae eval", description="Reconstruction metrics (PSNR, SSIM, LPIPS, rFID) on a dataset."
    )
    add_model_data(p)
    add_metric_opts(p)
    p.add_argument("--output", default="uae_eval.json", help="result JSON file")
    return p


def main(argv: Sequence[str]) -> int:
    """``uae eval``: parse, evaluate, write the result JSON and print a table."""
    args = build_parser().parse_args(list(argv))
    from uae.evaluation.common import (
        build_dataset,
        build_metrics,
        format_table,
        make_loader,
        max_pixels_option,
        print_skipped,
        print_unavailable,
        resolve_data,
        setup_model,
        write_json,
    )
    from uae.evaluation.reconstruction import evaluate_reconstruction

    output_file(args.output, "--output")
    root = resolve_data(args.data, args.data_root)
    model, device = setup_model(args)
    size = args.size or model.config.output_size
    ds = build_dataset(
        root,
        model.config.img_size,
        out_size=size,
        labels=False,
        limit=args.limit,
        max_pixels=max_pixels_option(args),
    )
    metrics = build_metrics(args, device)
    res = evaluate_reconstruction(
        model,
        make_loader(ds, args.batch_size, args.num_workers),
        metrics,
        size,
        device=device,
        amp=not args.no_amp,
        progress=not args.no_progress,
    )
    res = {
        "model": args.model,
        "data": args.data,
        "data_path": str(root),
        "input_size": model.config.img_size,
        "eval_size": size,
        **res,
    }
    res["num_skipped"] = res["images"]["skipped"]
    write_json(args.output, res)
    skipped = f", {res['num_skipped']} skipped" if res["num_skipped"] else ""
    print(f"uae eval: {args.model} on {args.data} ({res['num_images']} images{skipped}, {size}x{size})")
    rows = [[m.upper(), res[m]] for m in ("psnr", "ssim", "lpips", "rfid")]
    print(format_table(rows, ["metric", "value"]))
    print_unavailable(res)
    print_skipped(res["images"])
    print(f"  note: {res['notes']['rfid']}")
    print(f"results written to {args.output}")
    return 0
