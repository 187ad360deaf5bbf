"""``uae publish SRC --repo-id org/name [--from FORMAT] [--file ROLE=PATH] [--dry-run] [--out DIR]``.

Parses the options, calls :func:`uae.convert.publish.publish` with keywords and prints what it wrote.
"""

from __future__ import annotations

from collections.abc import Sequence

from uae.commands._options import ArgumentParser

#: Parameter of :func:`~uae.convert.publish.publish` -> the option that sets it.
FLAGS = {
    "repo_id": "--repo-id",
    "release_format": "--from",
    "source": "--from",
    "files": "--file",
    "like": "--like",
    "license_id": "--license",
    "name": "--name",
    "revision": "--revision",
    "out": "--out",
}


def build_parser() -> ArgumentParser:
    """Options of ``uae publish``."""
    parser = ArgumentParser(
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


def parse_files(pairs: Sequence[str]) -> dict[str, str]:
    """``--file ROLE=PATH`` values as ``{role: path}``.

    Raises:
        CLIError: A value is not ``ROLE=PATH`` (one line, exit code 2).
    """
    from uae.commands._options import CLIError

    out = {}
    for pair in pairs:
        role, sep, path = pair.partition("=")
        if not sep or not role or not path:
            raise CLIError(f"--file expects ROLE=PATH, got {pair!r}")
        out[role] = path
    return out


def main(argv: Sequence[str]) -> int:
    """Parse, publish with :func:`uae.convert.publish.publish`, print the folder written (and where it went)."""
    args = build_parser().parse_args(list(argv))
    files = parse_files(args.file)
    from uae.convert.publish import publish

    folder = publish(
        args.src,
        args.repo_id,
        release_format=args.release_format,
        files=files,
        like=args.like,
        license_id=args.license_id,
        name=args.name,
        out=args.out,
        dry_run=args.dry_run,
        private=args.private,
        revision=args.revision,
    )
    action = "wrote" if args.dry_run else f"pushed to https://huggingface.co/{args.repo_id} from"
    print(f"{action} {folder}: {', '.join(sorted(p.name for p in folder.iterdir()))}")
    return 0
