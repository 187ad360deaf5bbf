"""``uae convert``: command-line front end of the converters (options in :mod:`uae.commands.convert`)."""

from __future__ import annotations

import argparse
from pathlib import Path

from uae.commands.convert import SOURCES  # noqa: F401  (re-exported)
from uae.convert import authors_v2
from uae.convert.authors_v1 import load_release as load_authors_v1_release
from uae.convert.common import load_torch_state
from uae.convert.rae import rae_to_uae
from uae.paths import output_dir


def run_convert(args: argparse.Namespace) -> int:
    """``uae convert`` with parsed options (:mod:`uae.commands.convert`): write a converted model."""
    output_dir(args.out, param="out")

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
