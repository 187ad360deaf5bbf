"""``uae probe``: linear probe (BN without affine + linear) on frozen band features."""

from __future__ import annotations

import math
from collections.abc import Sequence

from uae.commands._options import (
    ArgumentParser,
    add_model_data,
    add_probe_opts,
    probe_options,
    run_options,
)
from uae.commands._report import percent


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


#: timm's LARS scales each step to at most ``lr * LARS_TRUST`` of the weight's norm.
LARS_TRUST = 1e-3


def lars_note(result: dict, probe) -> str | None:
    """Why a LARS head probably underfit, or ``None``.

    LARS (timm's, trust coefficient 1e-3) moves the weight by at most ``lr * 1e-3`` of its norm per step.
    The MAE protocol uses it at batch 16384 on ImageNet (lr 6.4, about 7000 steps); on a small folder the
    head takes a few hundred steps at lr 0.1 and can move its weight by only a few percent, so it
    underfits where SGD (the default) fits.
    """
    if result.get("optimizer") != "lars":
        return None
    steps = result["epochs"] * math.ceil(result["num_train"] / result["batch_size"])
    reach = result["lr"] * LARS_TRUST * steps
    if reach >= 0.5:
        return None
    return (
        f"LARS moves the weights by at most lr x 1e-3 of their norm per step: {steps} steps at lr "
        f"{result['lr']:g} reach {100 * reach:.0f} % of it, so the head may underfit (train top1 "
        f"{percent(result['train_top1'])} %); use --optimizer sgd (the default) or a larger --lr"
    )


def main(argv: Sequence[str]) -> int:
    """``uae probe``: parse, extract (cached) features per band and train the heads
    (:func:`uae.evaluation.probe.linear_probe`), write the result JSON and print a table."""
    args = build_parser().parse_args(list(argv))
    from uae.commands._report import format_table, num_skipped, print_notes
    from uae.evaluation.common import prepare_model, write_json
    from uae.evaluation.probe import linear_probe, parse_band, top_k
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
    k = top_k(len(classes))
    rows = [
        [
            b,
            r["feature_dim"],
            percent(r["top1"]),
            *([percent(r["top5"])] if k else []),
            percent(r["train_top1"]),
            r["num_train"],
            r["num_val"],
        ]
        for b, r in results["bands"].items()
    ]
    header = ["band", "dim", "top1 %", *([f"top{k} %"] if k else []), "train top1 %", "train", "val"]
    print(format_table(rows, header))
    first = next(iter(results["bands"].values()))
    print(
        f"  chance level: {percent(first['chance'])} % (1/{len(classes)}); always answering the most frequent "
        f"training class ({classes[first['majority_class']]}): {percent(first['majority_rate'])} % of val"
    )
    for b, r in results["bands"].items():
        if note := lars_note(r, probe):
            print(f"  band {b}: {note}")
    print_notes(skipped=num_skipped(*results["images"].values()))
    print(f"results written to {args.output}")
    return 0
