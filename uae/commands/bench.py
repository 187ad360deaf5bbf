"""``uae bench``: speed and memory of a model beside peer tokenizers (:func:`uae.bench.run.run_benchmark`),
or the command's start-up latency (``--startup``, :mod:`uae.bench.startup`).

``--quick`` is the README's check (the small demo config, seconds); ``--plan`` prints what a run would
do and its estimated time and memory without running it. Also run as ``python -m benchmarks.run`` from a
checkout.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Sequence

from uae.bench.names import ABLATIONS, B_CONFIG, PEERS
from uae.commands._options import (
    ArgumentParser,
    CLIError,
    flags_of,
    non_negative_int,
    positive_float,
    positive_int,
)
from uae.errors import UAEError, for_flags


def build_parser() -> ArgumentParser:
    """Options of ``uae bench``."""
    p = ArgumentParser(
        prog="uae bench",
        description="Throughput and memory of uae, side by side with peer tokenizers, in one run on the same inputs.",
    )
    p.add_argument(
        "--quick",
        action="store_true",
        help="a check in seconds: --model uae_demo --threads 1 --repeats 3 --warmup 1 --piece-repeats 3 "
        "--peers rae-equiv,dinov2 --no-train (options given explicitly win)",
    )
    p.add_argument(
        "--plan",
        action="store_true",
        help="print the processes a run would start, with its estimated time and peak memory, and stop",
    )
    p.add_argument(
        "--model",
        default=None,
        help=f"registered uae model name (default: the paper's B config, {B_CONFIG}; uae_demo with --quick)",
    )
    p.add_argument(
        "--batch-size",
        type=positive_int,
        default=None,
        help="inference batch (default: 2 on CPU, 64 on CUDA)",
    )
    p.add_argument(
        "--train-batch-size",
        type=positive_int,
        default=None,
        help="training-step batch (default: --batch-size)",
    )
    p.add_argument(
        "--resolution",
        type=positive_int,
        default=None,
        help="encoder input side (default: the model's img_size)",
    )
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto (cuda when available)")
    p.add_argument(
        "--precision",
        choices=("fp32", "bf16", "fp16"),
        default=None,
        help="default: bf16 on CUDA, fp32 on CPU",
    )
    p.add_argument(
        "--repeats",
        type=positive_int,
        default=None,
        help="timed runs per measurement, the median is reported (default 5; 3 with --quick)",
    )
    p.add_argument(
        "--warmup",
        type=non_negative_int,
        default=None,
        help="untimed runs before timing (default 2; 1 with --quick)",
    )
    p.add_argument(
        "--piece-repeats",
        type=positive_int,
        default=None,
        help="timed runs for the cheap projector/modulator pieces (default 10; 3 with --quick)",
    )
    p.add_argument(
        "--train-repeats", type=positive_int, default=None, help="timed training steps (default: --repeats)"
    )
    p.add_argument(
        "--compile",
        action="store_true",
        help="torch.compile the uae encoder, modulator and decoder (and peers)",
    )
    p.add_argument(
        "--no-sdpa",
        action="store_true",
        help="explicit softmax attention instead of F.scaled_dot_product_attention",
    )
    p.add_argument(
        "--peers", default=None, help=f"comma list of {', '.join(PEERS)}; 'all' (default) or 'none'"
    )
    p.add_argument(
        "--ablations",
        default=None,
        help="comma list of sdpa, compile: reconstruct with that option flipped (default: none)",
    )
    p.add_argument("--no-train", action="store_true", help="skip the training-step measurements")
    p.add_argument("--no-flops", action="store_true", help="skip the FLOP count")
    p.add_argument(
        "--peak-tflops",
        type=positive_float,
        default=None,
        help="peak FLOP/s of the device for the utilisation (TFLOP/s)",
    )
    p.add_argument("--threads", type=positive_int, default=None, help="torch.set_num_threads on CPU")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--out-dir",
        default="outputs/bench",
        help="folder for the JSON and markdown results (default: outputs/bench)",
    )
    p.add_argument("--name", default=None, help="file stem of the JSON / markdown results")
    p.add_argument(
        "--startup",
        action="store_true",
        help="measure start-up instead: `uae --help`, each sub-command's --help, `uae models`, and "
        "create_model('uae_demo') / `uae reconstruct` as ratios to `import torch` (--threads sets their "
        "OMP_NUM_THREADS)",
    )
    return p


FLAGS = flags_of(build_parser(), sdpa="--no-sdpa", train="--no-train", flops="--no-flops")


def _startup(args) -> int:
    """``uae bench --startup``: the help commands and the model commands, written and printed."""
    from uae.bench.startup import run_startup, write_startup
    from uae.commands import COMMANDS

    if args.threads:
        os.environ["OMP_NUM_THREADS"] = str(args.threads)  # inherited by the timed processes
    md = write_startup(run_startup(list(COMMANDS), args.repeats or 5), args.out_dir, args.name or "startup")
    print(md.read_text())
    return 0


def _parse_list(value: str, allowed: Sequence[str], flag: str) -> list[str]:
    """``all``, ``none`` / empty, or a comma list of names from ``allowed``."""
    if value == "all":
        return list(allowed)
    if value in ("none", ""):
        return []
    items = [v.strip() for v in value.split(",") if v.strip()]
    bad = [v for v in items if v not in allowed]
    if bad:
        raise CLIError(f"{flag}: unknown {bad}; choose from {', '.join(allowed)}")
    return items


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: ``uae bench [options]`` (also ``python -m benchmarks.run`` from a checkout).

    Errors are reported here as one line (exit code 2), as :mod:`uae.cli` does, so that
    ``python -m benchmarks.run`` reports them the same way.
    """
    if not logging.getLogger("uae").handlers:  # `uae bench` has configured the package's logger already
        logging.basicConfig(
            level=os.environ.get("UAE_LOG_LEVEL", "INFO"), format="%(levelname)s %(name)s: %(message)s"
        )
    try:
        args = build_parser().parse_args(None if argv is None else list(argv))
        if args.startup:
            return _startup(args)
        from uae.bench.run import run_benchmark
        from uae.bench.settings import QUICK, BenchSettings

        preset = QUICK if args.quick else {}
        given = {
            "model": args.model,
            "repeats": args.repeats,
            "warmup": args.warmup,
            "piece_repeats": args.piece_repeats,
            "threads": args.threads,
            "peers": None if args.peers is None else tuple(_parse_list(args.peers, PEERS, "--peers")),
            "ablations": None
            if args.ablations is None
            else tuple(_parse_list(args.ablations or "none", ABLATIONS, "--ablations")),
        }
        chosen = {**preset, **{k: v for k, v in given.items() if v is not None}}
        if args.no_train:
            chosen["train"] = False
        settings = BenchSettings(
            device=args.device,
            batch_size=args.batch_size,
            train_batch_size=args.train_batch_size,
            resolution=args.resolution,
            precision=args.precision,
            train_repeats=args.train_repeats,
            compile=args.compile,
            sdpa=not args.no_sdpa,
            flops=not args.no_flops,
            peak_tflops=args.peak_tflops,
            seed=args.seed,
            **chosen,
        )
        if args.plan:
            from uae.bench.run import describe_run

            print(describe_run(settings))
            return 0
        result = run_benchmark(settings)
    except UAEError as e:
        print(f"uae bench: error: {for_flags(e, FLAGS)}", file=sys.stderr)
        return 2
    from uae.bench.report import write_results

    jpath, mpath = write_results(result, args.out_dir, args.name)
    print(mpath.read_text())
    print(f"wrote {jpath} and {mpath}")
    return 0
