"""``uae export CKPT OUT_DIR [--raw] [--name NAME]``: Lightning checkpoint -> Hub-layout directory (EMA weights)."""

from __future__ import annotations

from collections.abc import Sequence

from uae.commands._options import ArgumentParser


def build_parser() -> ArgumentParser:
    """Options of ``uae export``."""
    parser = ArgumentParser(
        prog="uae export",
        description="Export a Lightning training checkpoint to a Hub-layout directory "
        "(``config.json`` + ``model.safetensors``).",
    )
    parser.add_argument("checkpoint", help="Lightning .ckpt written by `uae fit`")
    parser.add_argument("out_dir", help="output folder (config.json + model.safetensors)")
    parser.add_argument(
        "--raw", action="store_true", help="export the raw weights instead of the EMA weights"
    )
    parser.add_argument(
        "--name", default=None, help="name of the exported model (default: the trained model's)"
    )
    return parser


def main(argv: Sequence[str]) -> int:
    """Parse, export the checkpoint (a tokenizer stage's or a generator's:
    :func:`uae.training.generator_io.export_training_checkpoint`), print where the weights went."""
    args = build_parser().parse_args(list(argv))
    from uae.training.generator_io import export_training_checkpoint  # tokenizer stages and generators

    out = export_training_checkpoint(args.checkpoint, args.out_dir, ema=not args.raw, name=args.name)
    print(f"exported {'raw' if args.raw else 'EMA'} weights to {out}")
    return 0
