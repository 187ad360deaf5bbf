"""``uae app [--model M] [--host H] [--port N]``: serve the band explorer until interrupted."""

from __future__ import annotations

from collections.abc import Sequence

from uae.commands._options import ArgumentParser, add_model_arg


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
    return parser


def main(argv: Sequence[str]) -> int:
    """Parse, build the page (:func:`uae.app.build_app`) and serve it until interrupted."""
    args = build_parser().parse_args(list(argv))
    from uae.app import build_app, launch_kwargs

    launch = launch_kwargs(args.host, args.port)  # checks the port before the model is loaded
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    demo = build_app(args.model, device=args.device)
    print(f"uae app: serving {args.model} on http://{args.host}:{args.port} (Ctrl+C to stop)", flush=True)
    demo.launch(**launch)
    return 0
