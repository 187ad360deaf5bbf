"""``uae eval``: PSNR / SSIM / LPIPS / rFID of reconstructions against the originals."""

from __future__ import annotations

from collections.abc import Sequence

from uae.commands._options import (
    ArgumentParser,
    add_metric_opts,
    add_model_data,
    metric_options,
    run_options,
)


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
    """``uae eval``: parse, evaluate (:func:`uae.evaluation.reconstruction.evaluate_dataset`), write the
    result JSON and print a table."""
    args = build_parser().parse_args(list(argv))
    from uae.commands._report import (
        format_table,
        metric_notes_for_flags,
        notes_instead_of_warnings,
        print_notes,
    )
    from uae.evaluation.common import prepare_model, write_json
    from uae.evaluation.reconstruction import evaluate_dataset
    from uae.paths import output_file

    output_file(args.output, param="output")
    model, _ = prepare_model(args.model, random_init=args.random_init, device=args.device)
    with notes_instead_of_warnings():  # each reason once, under the table
        res = evaluate_dataset(
            model, args.data, metrics=metric_options(args), size=args.size, options=run_options(args)
        )
    res = {"model": args.model, **res}
    res["unavailable"] = metric_notes_for_flags(res["unavailable"])
    write_json(args.output, res)
    skipped = f", {res['num_skipped']} skipped" if res["num_skipped"] else ""
    size = res["eval_size"]
    print(f"uae eval: {args.model} on {args.data} ({res['num_images']} images{skipped}, {size}x{size})")
    rows = [[m.upper(), res[m]] for m in ("psnr", "ssim", "lpips", "rfid")]
    print(format_table(rows, ["metric", "value"]))
    print_notes(unavailable=res["unavailable"], skipped=res["num_skipped"])
    print(f"  note: {res['notes']['rfid']}")
    print(f"results written to {args.output}")
    return 0
