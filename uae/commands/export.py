"""``uae export CKPT OUT_DIR [--raw]``: Lightning checkpoint -> Hub-layout directory (EMA weights)."""

from __future__ import annotations

import argparse
from collections.abc import Sequence


def build_parser() -> argparse.ArgumentParser:
    """Options of ``uae export``."""
    parser = argparse.ArgumentParser(
        prog="uae export",
        description="Export a Lightning training checkpoint to a Hub-layout directory "
        "(``config.json`` + ``model.safetensors``).",
    )
    parser.add_argument("checkpoint", help="Lightning .ckpt written by `uae fit`")
    parser.add_argument("out_dir", help="output folder (config.json + model.safetensors)")
    parser.add_argument(
        "--raw", action="store_true", help="export the raw weights instead of the EMA weights"
    )
    return parser


def main(argv: Sequence[str]) -> int:
    """Parse, then run :func:`uae.training.export.run_export`."""
    args = build_parser().parse_args(list(argv))
    from uae.training.export import run_export

    return run_export(args)
