"""``uae encode``: band latents of a dataset as sharded safetensors (resumable), with latent stats.

Across GPUs and nodes: launch it with ``torchrun`` (``torchrun --nproc-per-node 8 -m uae.cli encode ...``,
``--nnodes``/``--rdzv-endpoint`` for several nodes, the output folder on a shared file system); each
process encodes its share of the shards and the finished folder is the same as a one-process run's.
"""

from __future__ import annotations

from collections.abc import Sequence

from uae.commands._options import ArgumentParser, add_model_data, flags_of, positive_int, run_options
from uae.evaluation.options import EXPORTABLE


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


FLAGS = flags_of(build_parser(), out_dir="--out")


def main(argv: Sequence[str]) -> int:
    """``uae encode``: parse, export the latents (:func:`uae.evaluation.latents.encode_dataset`, resuming a
    partial export), print the latent statistics."""
    args = build_parser().parse_args(list(argv))
    import torch

    from uae.evaluation.common import init_distributed, prepare_model, process_group
    from uae.evaluation.latents import encode_dataset
    from uae.paths import output_dir

    output_dir(args.out, param="out")
    device = init_distributed(args.device)  # a torchrun launch: one process per GPU (or CPU worker)
    model, _ = prepare_model(args.model, random_init=args.random_init, device=device)
    index = encode_dataset(
        model,
        args.data,
        args.out,
        what=args.what,
        shard_size=args.shard_size,
        dtype=args.dtype,
        metadata={"model": args.model},
        options=run_options(args),
    )
    if process_group()[0] != 0:
        return 0
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
