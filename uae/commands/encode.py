"""``uae encode``: band latents of a dataset as sharded safetensors (resumable), with latent stats."""

from __future__ import annotations

from collections.abc import Sequence

from uae.cliargs import ArgumentParser, output_dir, positive_int
from uae.evaluation.options import EXPORTABLE, add_model_data


def build_parser() -> ArgumentParser:
    """Options of ``uae encode``."""
    p = ArgumentParser(
        prog="uae encode", description="Export band / fused latents of a dataset as sharded safetensors."
    )
    add_model_data(p)
    p.add_argument("--out", required=True, help="output folder (re-run the same command to resume)")
    p.add_argument("--what", nargs="+", default=["bands"], choices=list(EXPORTABLE), help="tensors to store")
    p.add_argument(
        "--shard-size",
        type=positive_int,
        default=None,
        help="images per shard (default: about 1 GiB per shard)",
    )
    p.add_argument(
        "--dtype", default="float32", choices=["float32", "float16", "bfloat16"], help="storage dtype"
    )
    return p


def main(argv: Sequence[str]) -> int:
    """``uae encode``: parse, export the latents (resuming a partial export), print the latent statistics."""
    args = build_parser().parse_args(list(argv))
    import torch

    from uae.evaluation.common import build_dataset, max_pixels_option, resolve_data, setup_model
    from uae.evaluation.export import export_latents

    output_dir(args.out, "--out")
    root = resolve_data(args.data, args.data_root)
    model, device = setup_model(args)
    ds = build_dataset(
        root, model.config.img_size, labels=None, limit=args.limit, max_pixels=max_pixels_option(args)
    )
    index = export_latents(
        model,
        ds,
        args.out,
        what=args.what,
        shard_size=args.shard_size,
        batch_size=args.batch_size,
        num_workers=args.num_workers,
        dtype=args.dtype,
        device=device,
        amp=not args.no_amp,
        progress=not args.no_progress,
        metadata={"model": args.model, "data": args.data, "data_path": str(root)},
    )
    print(
        f"uae encode: {len(index['shards'])}/{index['num_shards']} shards, {index.get('num_used', 0)} images "
        f"({index.get('num_skipped', 0)} skipped of {index['num_images']}) -> {args.out}"
    )
    for k, s in index.get("stats", {}).items():
        mean = torch.tensor(s["mean"])
        std = torch.tensor(s["std"])
        print(
            f"  {k}: shape {index['shapes'][k]}, mean of channel means {mean.mean():.4f}, mean channel std {std.mean():.4f}"
        )
    return 0
