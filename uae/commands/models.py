"""``uae models [PATTERN] [--pretrained] [--family F]``: list architectures (and their weights), or the weights table."""

from __future__ import annotations

from collections.abc import Sequence

from uae.commands._options import ArgumentParser


def build_parser() -> ArgumentParser:
    """Options of ``uae models``."""
    parser = ArgumentParser(prog="uae models", description="List registered models and their weights.")
    parser.add_argument("pattern", nargs="?", default=None, help="shell-style filter, e.g. '*dinov2*'")
    parser.add_argument(
        "--pretrained",
        action="store_true",
        help="list the weights (arch.tag): source, Hub repo, license, notes",
    )
    parser.add_argument(
        "--family",
        choices=["tokenizer", "generator"],
        default=None,
        help="only tokenizers (UAE, RAE) or only latent generators (DiT-DH)",
    )
    return parser


def main(argv: Sequence[str]) -> int:
    """Parse, then print one line per model (or per weights with ``--pretrained``)."""
    args = build_parser().parse_args(list(argv))
    from uae.models.pretrained import get_pretrained_cfg
    from uae.models.registry import get_entry, list_models

    if args.pretrained:
        for name in list_models(args.pattern, pretrained=True, family=args.family):
            c = get_pretrained_cfg(name)
            where = c.hf_hub_id or f"in the package ({c.local_dir})"
            print(f"{name:40s} {c.source:11s} {where:34s} {c.license:11s} {c.notes}")
        return 0
    for name in list_models(args.pattern, family=args.family):
        e = get_entry(name)
        tags = e.pretrained_tags
        status = f"weights: {', '.join(tags)}" if tags else ("recipe only" if e.recipe else "no weights")
        if e.family != "tokenizer":
            status = f"{e.family}; {status}"
        print(f"{name:34s} {status:32s} {e.description}")
    return 0
