"""``uae encode`` images/s with draft JPEG decoding against full decoding (A/B in one run).

Run from the repository root::

    python -m benchmarks.encode_throughput --model uae_demo --images 1024

On a folder of synthetic 500x375 JPEG photographs (ImageNet's typical size,
:mod:`benchmarks.synthetic_images`), :func:`uae.evaluation.latents.encode_dataset` (what ``uae encode``
runs; bands, float32, default loader workers) is timed alternately (ABAB, ``--repeats`` rounds) with
``RunOptions(draft=False)`` (full decode: what ``uae encode`` did before) and ``RunOptions(draft=True)``
(the default now), each into a fresh folder. The figure of merit is draft / full images/s (target:
>= 1.5 with ``uae_demo``). Results: ``benchmarks/results/encode_throughput_<device>.json``.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

import torch

from benchmarks.report import device_env, rate_fields, ratio_fields, write_result
from benchmarks.synthetic_images import add_folder_args, jpeg_folder


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="uae_demo")
    p.add_argument(
        "--random-init",
        action="store_true",
        help="a registered architecture without trained weights (size only)",
    )
    p.add_argument("--images", type=int, default=1024)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--num-workers", type=int, default=min(4, os.cpu_count() or 1))
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--repeats", type=int, default=3)
    add_folder_args(p)
    p.add_argument("--out", default="benchmarks/results")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    from uae.evaluation.common import prepare_model
    from uae.evaluation.latents import encode_dataset
    from uae.evaluation.options import RunOptions

    folder, tmp = jpeg_folder(args.folder, args.images, args.size)
    model, device = prepare_model(args.model, random_init=args.random_init, device=args.device)

    def run(draft: bool) -> float:
        opts = RunOptions(
            batch_size=args.batch_size, num_workers=args.num_workers, progress=False, draft=draft
        )
        with tempfile.TemporaryDirectory() as out:
            start = time.perf_counter()
            index = encode_dataset(model, str(folder), out, options=opts)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            seconds = time.perf_counter() - start
        return index["num_used"] / seconds

    run(True)  # warm-up
    rates: dict[str, list[float]] = {"full": [], "draft": []}
    for _ in range(args.repeats):
        for name, draft in (("full", False), ("draft", True)):
            rates[name].append(run(draft))
            print(f"{name:6s} {rates[name][-1]:8.1f} images/s", flush=True)
    result = {
        "settings": {**{k: v for k, v in vars(args).items() if k not in ("out", "folder")},
                     "torch_threads": torch.get_num_threads()},
        "env": device_env(device),
        **rate_fields(rates),
        "draft_over_full": ratio_fields(rates["draft"], rates["full"]),
    }  # fmt: skip
    summary = {k: result[k] for k in ("median_images_per_s", "draft_over_full")}
    write_result(args.out, f"encode_throughput_{device.type}", result, summary)
    if tmp is not None:
        tmp.cleanup()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
