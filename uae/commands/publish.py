"""``uae publish SRC --repo-id org/name [--from FORMAT] [--file ROLE=PATH] [--dry-run] [--out DIR]``."""

from __future__ import annotations

import argparse
from collections.abc import Sequence


def build_parser() -> argparse.ArgumentParser:
    """Options of ``uae publish``."""
    parser = argparse.ArgumentParser(
        prog="uae publish",
        description="Convert a released model (a pretrained name from `uae models --pretrained`, or local release "
        "files with --from) into uae's Hub layout with a model card, and push it with huggingface_hub.",
    )
    parser.add_argument(
        "src", help="pretrained name (arch.tag) or, with --from, the release's main local file"
    )
    parser.add_argument("--repo-id", required=True, help="target Hub repo, org/name")
    parser.add_argument(
        "--from",
        dest="release_format",
        default=None,
        help="local files' format: authors_v1, authors_v2 or rae",
    )
    parser.add_argument(
        "--file",
        action="append",
        default=[],
        metavar="ROLE=PATH",
        help="another local release file (repeatable)",
    )
    parser.add_argument(
        "--like", default=None, help="pretrained name whose license/metrics/notes describe local files"
    )
    parser.add_argument("--license", dest="license_id", default=None, help="license id for the card")
    parser.add_argument("--name", default=None, help="config.name of the converted model")
    parser.add_argument("--revision", default=None, help="Hub revision of the release (pretrained names)")
    parser.add_argument("--out", default=None, help="folder to write (default publish/<org>--<name>)")
    parser.add_argument("--private", action="store_true", help="create the Hub repo private")
    parser.add_argument("--dry-run", action="store_true", help="write the folder, push nothing")
    return parser


def main(argv: Sequence[str]) -> int:
    """Parse, then run :func:`uae.convert.publish.run_publish`."""
    args = build_parser().parse_args(list(argv))
    from uae.convert.publish import run_publish

    return run_publish(args)
