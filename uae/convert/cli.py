"""``uae convert``: command-line front end of the converters."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from uae.convert.authors_v1 import load_release as load_authors_v1_release
from uae.convert.common import load_torch_state
from uae.convert.rae import rae_to_uae

SOURCES = ("authors", "rae")


def convert_main(argv: Sequence[str]) -> int:
    """``uae convert --from authors|rae FILE --out DIR``: write a converted model in save_pretrained layout."""
    parser = argparse.ArgumentParser(
        prog="uae convert",
        description="Convert the authors' v1 UAE checkpoint (.pt with 'model'/'ema') or an RAE decoder (model.pt) "
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
        help="state dict entry to use (authors: default 'model', what their evaluation loads; rae: 'ema', "
        "else 'model')",
    )
    parser.add_argument(
        "--config",
        default=None,
        help="authors: the release's YAML config (default: the config embedded in the checkpoint)",
    )
    parser.add_argument("--stats", default=None, help="optional latent statistics file with 'mean' and 'var'")
    parser.add_argument(
        "--encoder-heads", type=int, default=None, help="encoder attention heads (default C // 64)"
    )
    parser.add_argument(
        "--decoder-heads", type=int, default=None, help="decoder attention heads (default by width)"
    )
    parser.add_argument("--name", default=None, help="config.name of the converted model")
    args = parser.parse_args(list(argv))

    stats = load_torch_state(args.stats) if args.stats else None
    if args.source == "authors":
        files = {"checkpoint": args.file, **({"config": args.config} if args.config else {})}
        model = load_authors_v1_release(
            files,
            entry=args.entry or "model",
            encoder_heads=args.encoder_heads,
            decoder_heads=args.decoder_heads,
            stats=stats,
            name=args.name or "uae_authors_converted",
        )
    else:
        state = load_torch_state(args.file, args.entry)
        enc = load_torch_state(args.encoder_weights) if args.encoder_weights else None
        model = rae_to_uae(
            state,
            enc,
            encoder_heads=args.encoder_heads,
            decoder_heads=args.decoder_heads,
            stats=stats,
            name=args.name,
        )
    out = Path(args.out)
    model.save_pretrained(out)
    c = model.config
    print(
        f"wrote {out}: {c.name}, input {c.img_size}px -> output {c.output_size}px, latent "
        f"{'x'.join(map(str, c.latent_shape))}, K={c.num_bands}, "
        f"{sum(p.numel() for p in model.parameters()) / 1e6:.1f}M parameters"
    )
    return 0
