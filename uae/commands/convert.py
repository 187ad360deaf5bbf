"""``uae convert --from authors|authors_v2|rae FILE --out DIR``: write a converted model in save_pretrained layout."""

from __future__ import annotations

from collections.abc import Sequence

from uae.commands._options import ArgumentParser, positive_int

#: Checkpoint families of ``--from``.
SOURCES = ("authors", "authors_v2", "rae")


def build_parser() -> ArgumentParser:
    """Options of ``uae convert``."""
    parser = ArgumentParser(
        prog="uae convert",
        description="Convert the authors' v1 UAE checkpoint (.pt with 'model'/'ema'), their v2 release "
        "(checkpoints/<encoder>/ep-last.pt + config.yaml) or an RAE decoder (model.pt) "
        "into uae's layout (config.json + model.safetensors).",
    )
    parser.add_argument("--from", dest="source", choices=SOURCES, required=True, help="checkpoint family")
    parser.add_argument("file", help="checkpoint file (.pt/.pth/.bin/.safetensors)")
    parser.add_argument("--out", required=True, help="output directory (created)")
    parser.add_argument(
        "--encoder-weights",
        default=None,
        help="rae: DINOv2-with-registers weights (transformers, timm or facebookresearch file); default: the "
        "timm Hub id from the Hub cache",
    )
    parser.add_argument(
        "--entry",
        default=None,
        help="state dict entry to use (authors: default 'model', what their evaluation loads; authors_v2: "
        "'ema', what theirs loads; rae: 'ema', else 'model')",
    )
    parser.add_argument(
        "--config",
        default=None,
        help="authors: the release's YAML config (default: the config embedded in the checkpoint); "
        "authors_v2: its config.yaml (default: config.yaml beside the checkpoint)",
    )
    parser.add_argument("--stats", default=None, help="optional latent statistics file with 'mean' and 'var'")
    parser.add_argument(
        "--encoder-heads", type=positive_int, default=None, help="encoder attention heads (default C // 64)"
    )
    parser.add_argument(
        "--decoder-heads", type=positive_int, default=None, help="decoder attention heads (default by width)"
    )
    parser.add_argument("--name", default=None, help="config.name of the converted model")
    return parser


def main(argv: Sequence[str]) -> int:
    """Parse, then run :func:`uae.convert.cli.run_convert`."""
    args = build_parser().parse_args(list(argv))
    from uae.convert.cli import run_convert

    return run_convert(args)
