"""How fast can the evaluation loader feed a model? ``uint8`` against float32 pixels from the workers.

Run from the repository root::

    python -m benchmarks.loader_transport --images 1024 --input 224 --target 256
    python -m benchmarks.loader_transport --images 4096 --input 224 --target 256 --device cuda --num-workers 12

The loader of ``uae eval`` / ``uae encode`` / the probe (:func:`uae.evaluation.common.open_dataset` +
:func:`~uae.evaluation.common.make_loader`) over a folder of synthetic 500x375 JPEGs, every batch taken
to ``--device`` by :func:`~uae.evaluation.common.batch_images` and nothing else: the rate a model as fast
as a GPU would get. ``uint8``: the workers send ``uint8`` pixels, scaled on the device (what the runners
do); ``float32``: the workers scale and send float32 (what they did before). The two alternate for
``--repeats`` rounds; the ratio uint8 / float32 per round is the figure of merit.
"""

from __future__ import annotations

import argparse
import os
import time

import torch

from benchmarks.report import device_env, rate_fields, ratio_fields, sync, write_result
from benchmarks.synthetic_images import add_folder_args, jpeg_folder


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--images", type=int, default=1024)
    p.add_argument("--input", type=int, default=224, help="model input side")
    p.add_argument("--target", type=int, default=256, help="reference side (the decoder output)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--num-workers", type=int, default=min(4, os.cpu_count() or 1))
    p.add_argument("--device", default="cpu")
    p.add_argument("--repeats", type=int, default=3)
    add_folder_args(p)
    p.add_argument("--out", default="benchmarks/results")
    args = p.parse_args(argv)

    from uae.evaluation.common import batch_images, make_loader, open_dataset
    from uae.evaluation.options import RunOptions

    folder, tmp = jpeg_folder(args.folder, args.images, args.size)
    device = torch.device(args.device)
    opts = RunOptions(batch_size=args.batch_size, num_workers=args.num_workers, progress=False)

    def run(uint8: bool) -> float:
        ds, _ = open_dataset(
            str(folder), args.input, options=opts, out_size=args.target, labels=False, uint8=uint8
        )
        n = 0
        start = time.perf_counter()
        for batch in make_loader(ds, args.batch_size, args.num_workers, device=device):
            x, ref = batch_images(batch, device)
            n += len(x)
        sync(device)
        assert n == len(ds), n  # every image, none dropped
        return n / (time.perf_counter() - start)

    run(True)  # warm-up (page cache, first-call allocations)
    rates: dict[str, list[float]] = {"uint8": [], "float32": []}
    for _ in range(args.repeats):
        for name in rates:
            rates[name].append(run(name == "uint8"))
            print(f"{name:8s} {rates[name][-1]:9.1f} images/s", flush=True)
    result = {
        "settings": {k: v for k, v in vars(args).items() if k not in ("out", "folder")},
        "env": device_env(device),
        **rate_fields(rates),
        "uint8_over_float32": ratio_fields(rates["uint8"], rates["float32"]),
    }
    summary = {k: result[k] for k in ("median_images_per_s", "uint8_over_float32")}
    write_result(args.out, f"loader_transport_{device.type}_{args.input}_{args.target}", result, summary)
    if tmp is not None:
        tmp.cleanup()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
