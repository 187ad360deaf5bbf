"""``uae app [--model M] [--host H] [--port N]``: serve the band explorer until interrupted."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from uae.commands._options import ArgumentParser, add_model_arg, positive_int


def build_parser() -> ArgumentParser:
    """Options of ``uae app``."""
    parser = ArgumentParser(
        prog="uae app",
        description="Serve the band explorer (a Gradio page): upload an image, decode from band 0 upwards, see the "
        "band energies, the latent spectrum, band 0's features and low/high-pass filtered inputs. Offline.",
    )
    add_model_arg(parser)
    parser.add_argument(
        "--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1, loopback only)"
    )
    parser.add_argument("--port", type=int, default=7860, help="port (default: 7860)")
    parser.add_argument("--device", default="cpu", help="torch device (default: cpu)")
    parser.add_argument(
        "--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)"
    )
    parser.add_argument(
        "--cache-seconds",
        type=positive_int,
        default=None,
        help="delete uploads and served pictures older than this (default: 300; checked every minute)",
    )
    return parser


def host_warning(host: str, port: int) -> str | None:
    """The warning printed when ``host`` is not loopback (``None`` when it is)."""
    from uae.app import is_loopback

    if is_loopback(host):
        return None
    return (
        f"warning: --host {host or repr(host)} is not loopback: anyone who can reach this machine on port {port} "
        "can use the page (no login), and their uploads are processed here"
    )


def main(argv: Sequence[str]) -> int:
    """Parse, build the page (:func:`uae.app.build_app`) and serve it until interrupted (Ctrl+C or SIGTERM)."""
    args = build_parser().parse_args(list(argv))
    from uae.app import CACHE_SECONDS, build_app, launch_kwargs, serve

    launch = launch_kwargs(args.host, args.port)  # checks the port before the model is loaded
    warning = host_warning(args.host, args.port)
    if warning:
        print(warning, file=sys.stderr, flush=True)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    demo = build_app(args.model, device=args.device, cache_seconds=args.cache_seconds or CACHE_SECONDS)
    print(f"uae app: serving {args.model} on http://{args.host}:{args.port} (Ctrl+C to stop)", flush=True)
    serve(demo, **launch)
    return 0
