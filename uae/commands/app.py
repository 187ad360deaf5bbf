"""``uae app [--model M] [--host H] [--port N]``: serve the band explorer until interrupted."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from uae.cliargs import DEFAULT_MODEL


def build_parser() -> argparse.ArgumentParser:
    """Options of ``uae app``."""
    parser = argparse.ArgumentParser(
        prog="uae app",
        description="Serve the band explorer (a Gradio page): upload an image, decode from band 0 upwards, see the "
        "band energies, the latent spectrum, band 0's features and low/high-pass filtered inputs. Offline.",
    )
    parser.add_argument(
        "--model",
        default=DEFAULT_MODEL,
        help=f"registered name, model directory or Hub repo id (default: {DEFAULT_MODEL}, the embedded demo)",
    )
    parser.add_argument(
        "--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1, loopback only)"
    )
    parser.add_argument("--port", type=int, default=7860, help="port (default: 7860)")
    parser.add_argument("--device", default="cpu", help="torch device (default: cpu)")
    parser.add_argument(
        "--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)"
    )
    return parser


def main(argv: Sequence[str]) -> int:
    """Parse, then run :func:`uae.app.run_app`."""
    args = build_parser().parse_args(list(argv))
    from uae.app import run_app

    return run_app(args)
