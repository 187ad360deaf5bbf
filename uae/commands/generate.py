"""``uae generate --model NAME (--class C... | --num-samples N) --out DIR``: images from a latent generator.

Two modes:

* ``--class 207 388 --num 8``: ``--num`` images per class, written as PNGs with a labelled grid.
* ``--num-samples 50000``: a resumable sample folder for FID (``uae eval-gen``); under ``torchrun`` every
  process writes its own part (``torchrun --nproc_per_node 8 -m uae.cli generate ...``).
"""

from __future__ import annotations

from collections.abc import Sequence

from uae.commands._options import (
    ArgumentParser,
    flags_of,
    non_negative_float,
    non_negative_int,
    positive_int,
)


def _steps(value: str) -> int:
    import argparse

    try:
        n = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"must be an integer >= 2 (sampler grid points), got {value!r}"
        ) from None
    if n < 2:
        raise argparse.ArgumentTypeError(f"must be an integer >= 2 (sampler grid points), got {value!r}")
    return n


def build_parser() -> ArgumentParser:
    """Options of ``uae generate``."""
    p = ArgumentParser(
        prog="uae generate",
        description="Generate class-conditional images with a released (or your own) latent generator and the "
        "tokenizer it was trained on. Sampler and guidance default to the release's settings.",
    )
    p.add_argument(
        "--model",
        required=True,
        help="generator: registered name or arch.tag (uae models), save_pretrained directory or Hub repo id",
    )
    p.add_argument(
        "--tokenizer",
        default=None,
        help="tokenizer that decodes the latents (default: the one the release was trained on; required for a "
        "directory or repo)",
    )
    guide = p.add_mutually_exclusive_group()
    guide.add_argument("--guide-model", default=None, help="autoguidance model (default: the release's)")
    guide.add_argument(
        "--no-guide-model",
        action="store_true",
        help="no autoguidance model (the release's autoguidance is off)",
    )
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument(
        "--class", dest="class_labels", type=non_negative_int, nargs="+", metavar="C", help="class indices"
    )
    what.add_argument(
        "--num-samples",
        type=positive_int,
        default=None,
        help="write a resumable sample folder of N images for FID (see --label-sampling)",
    )
    p.add_argument("--num", type=positive_int, default=1, help="images per class with --class (default 1)")
    p.add_argument(
        "--label-sampling",
        choices=["equal", "random"],
        default="equal",
        help="--num-samples: 'equal' gives image i class i %% num_classes (N/num_classes per class), 'random' "
        "uniform labels (default equal)",
    )
    p.add_argument(
        "--steps", type=_steps, default=None, help="sampler grid points (default: the release's, 50)"
    )
    p.add_argument(
        "--guidance",
        type=non_negative_float,
        default=None,
        help="guidance scale, <= 1 for none (default: the release's)",
    )
    p.add_argument(
        "--guidance-method", choices=["cfg", "autoguidance"], default=None, help="default: the release's"
    )
    p.add_argument("--t-min", type=float, default=None, help="guidance interval start (t = 1 is noise)")
    p.add_argument("--t-max", type=float, default=None, help="guidance interval end")
    p.add_argument(
        "--sampler", dest="method", default=None, help="ODE method euler or rk4 (default: the release's)"
    )
    p.add_argument(
        "--seed", type=non_negative_int, default=0, help="run seed; each image's noise follows from it"
    )
    p.add_argument(
        "--batch-size",
        type=positive_int,
        default=None,
        help="images per batch (default: all; 32 for --num-samples)",
    )
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument(
        "--device", default="auto", help="cuda, cpu, cuda:1, ... (default: cuda:LOCAL_RANK when available)"
    )
    p.add_argument(
        "--no-amp", action="store_true", help="float32 on CUDA too (default: bf16 autocast on CUDA)"
    )
    p.add_argument(
        "--random-init", action="store_true", help="registered names without trained weights (smoke tests)"
    )
    p.add_argument("--no-grid", action="store_true", help="--class: do not write grid.png")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


FLAGS = flags_of(
    build_parser(),
    class_labels="--class",
    out_dir="--out",
    method="--sampler",
    guide_model="--guide-model",
    model="--model",
)


def main(argv: Sequence[str]) -> int:
    """Parse, run :func:`uae.generation.run.generate_files` or ``generate_sample_folder``, print what was written."""
    args = build_parser().parse_args(list(argv))
    from uae.generation.run import generate_files, generate_sample_folder

    settings = {
        k: getattr(args, k)
        for k in ("steps", "guidance", "guidance_method", "t_min", "t_max", "method")
        if getattr(args, k) is not None
    }
    common = {
        "tokenizer": args.tokenizer,
        "guide_model": False if args.no_guide_model else args.guide_model,
        "random_init": args.random_init,
        "device": args.device,
        "amp": not args.no_amp,
        "progress": not args.no_progress,
        "seed": args.seed,
    }
    if args.num_samples is not None:
        res = generate_sample_folder(
            args.model,
            out_dir=args.out,
            num_samples=args.num_samples,
            label_sampling=args.label_sampling,
            batch_size=args.batch_size or 32,
            **common,
            **settings,
        )
        state = "complete" if res.complete else "incomplete (re-run the same command to resume)"
        if res.rank == 0:
            print(
                f"{res.out_dir}: rank {res.rank}/{res.world_size} wrote {res.written}, kept {res.skipped} "
                f"existing; the folder of {res.num_samples} images is {state}"
            )
        return 0
    res = generate_files(
        args.model,
        class_labels=args.class_labels,
        out_dir=args.out,
        num=args.num,
        batch_size=args.batch_size,
        grid=not args.no_grid,
        **common,
        **settings,
    )
    for path, label in zip(res.images, res.output.labels.tolist()):
        print(f"class {label} -> {path}")
    if res.grid is not None:
        print(f"grid -> {res.grid}")
    return 0
