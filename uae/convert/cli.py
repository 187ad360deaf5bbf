"""``uae convert``: command-line front end of the converters."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from uae.cliargs import ArgumentParser, output_dir, positive_int
from uae.convert import authors_v2
from uae.convert.authors_v1 import load_release as load_authors_v1_release
from uae.convert.common import load_torch_state
from uae.convert.rae import rae_to_uae

SOURCES = ("authors", "authors_v2", "rae")


def convert_main(argv: Sequence[str]) -> int:
    """``uae convert --from authors|authors_v2|rae FILE --out DIR``: write a converted model in save_pretrained layout."""
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
    args = parser.parse_args(list(argv))
    output_dir(args.out, "--out")

    if args.source == "authors_v2":
        config = Path(args.config) if args.config else Path(args.file).parent / "config.yaml"
        heads = {"encoder_heads": args.encoder_heads, "decoder_heads": args.decoder_heads}
        options = {k: v for k, v in heads.items() if v is not None}
        if args.entry:
            options["entry"] = args.entry
        model = authors_v2.load_release(
            {"checkpoint": args.file, "config": config}, name=args.name, **options
        )
        return _write(model, Path(args.out))
    stats = load_torch_state(args.stats) if args.stats else None
    if args.source == "authors":
        files = {"checkpoint": args.file, **({"config": args.config} if args.config else {})}
        try:
            model = load_authors_v1_release(
                files,
                entry=args.entry or "model",
                encoder_heads=args.encoder_heads,
                decoder_heads=args.decoder_heads,
                stats=stats,
                name=args.name or "uae_authors_converted",
            )
        except ValueError as e:
            if _is_v2_file(args.file):
                raise ValueError(f"{args.file} is a v2 checkpoint, use --from authors_v2") from e
            raise
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
    return _write(model, Path(args.out))


def _is_v2_file(path: str) -> bool:
    """Whether ``path`` holds an authors' v2 ``stage1.UAE`` state dict (for a pointed error message)."""
    try:
        return authors_v2.is_v2_state(authors_v2.read_checkpoint(path))
    except (OSError, ValueError):
        return False


def _write(model, out: Path) -> int:  # model: UAE
    """Save a converted model and print a one-line summary."""
    model.save_pretrained(out)
    c = model.config
    print(
        f"wrote {out}: {c.name}, input {c.img_size}px -> output {c.output_size}px, latent "
        f"{'x'.join(map(str, c.latent_shape))}, K={c.num_bands}, "
        f"{sum(p.numel() for p in model.parameters()) / 1e6:.1f}M parameters"
    )
    return 0
