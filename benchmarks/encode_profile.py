"""Where does ``uae encode``'s main thread spend its time? A cProfile of one export after a warm-up one.

Run from the repository root::

    python -m benchmarks.encode_profile FOLDER --num-workers 12 --device cuda

:func:`uae.evaluation.latents.encode_dataset` with ``uae encode``'s settings (bands, float32, batch 32,
the command's OpenMP wait policy) over ``FOLDER``, once to warm up, then once under ``cProfile`` (and with
``--trace`` once more under ``torch.profiler``); prints the rate and the top entries by cumulative and by
own time. Where Python's profiler records every thread (3.12 does: the loader's
pin-memory thread shows up), the cumulative times of the threads overlap; the own times stay exact.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import tempfile
import time


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("folder", help="image folder")
    p.add_argument("--model", default="uae_demo")
    p.add_argument("--num-workers", type=int, default=4)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--device", default="auto")
    p.add_argument("--top", type=int, default=35, help="entries listed per ordering")
    p.add_argument(
        "--trace",
        default=None,
        help="also record the export with torch.profiler (CPU and CUDA activity, every thread) and write "
        "a Chrome trace here (open it in chrome://tracing or Perfetto)",
    )
    args = p.parse_args(argv)
    from uae.commands import prepare_process

    prepare_process("encode")  # as `uae encode` sets itself up, before torch is imported
    from uae.evaluation.common import prepare_model
    from uae.evaluation.latents import encode_dataset
    from uae.evaluation.options import RunOptions

    model, _ = prepare_model(args.model, device=args.device)
    opts = RunOptions(batch_size=args.batch_size, num_workers=args.num_workers, progress=False)
    with tempfile.TemporaryDirectory() as d:
        encode_dataset(model, args.folder, f"{d}/warm-up", options=opts)
        prof = cProfile.Profile()
        start = time.perf_counter()
        prof.enable()
        index = encode_dataset(model, args.folder, f"{d}/profiled", options=opts)
        prof.disable()
        took = time.perf_counter() - start
        if args.trace:
            from torch.profiler import ProfilerActivity, profile

            activities = [ProfilerActivity.CPU]
            if model.device.type == "cuda":
                activities.append(ProfilerActivity.CUDA)
            with profile(activities=activities) as trace:
                encode_dataset(model, args.folder, f"{d}/traced", options=opts)
            trace.export_chrome_trace(args.trace)
            print(f"trace written to {args.trace}")
    n = index["num_images"]
    print(f"images {n} in {took:.2f} s = {n / took:.0f} images/s, shards {index['num_shards']}")
    stats = pstats.Stats(prof)
    stats.sort_stats("cumtime").print_stats(args.top)
    stats.sort_stats("tottime").print_stats(args.top // 2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
