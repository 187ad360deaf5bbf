"""Where does the evaluation loader's time go? Decoding per core, the workers' start, and the transport.

Run from the repository root::

    python -m benchmarks.loader_pipeline --images 1024 --workers 1,2
    python -m benchmarks.loader_pipeline --images 4096 --device cuda --workers 4,8,12,15

The loader of ``uae eval`` (:func:`uae.evaluation.common.open_dataset` for ``--model``'s sizes,
:func:`~uae.evaluation.common.make_loader`, :func:`~uae.evaluation.common.batch_images`, the pixels sent
as the runners send them) over a folder of synthetic 500x375 JPEGs, nothing else. It measures:

* **serial**: ``dataset[i]`` in this process: what one core decodes and transforms (images/s);
* **decode**, for each ``--workers`` count: the loader, with the time to its first batch (the workers'
  start: ``fork`` and their first batch) and the steady rate after it; ``per_worker`` is the steady
  rate over the workers, ``efficiency`` that over **serial** (1.0: each worker as fast as one core
  alone);
* **transport**: the same loader over a dataset that returns one sample already decoded (a copy per
  index): the ceiling the main process and the queues allow, without any decoding;
* **device decode** (CUDA only): the files' bytes read in this process and decoded in batches by
  ``torchvision.io.decode_jpeg(..., device="cuda")`` (nvJPEG), resized (antialiased bilinear) and
  centre-cropped on the GPU: what decoding on the GPU would give instead of the workers (not what
  ``uae eval`` does; a yardstick for it).

On a CUDA device each loader is measured twice: before CUDA is initialised (``cold``: the workers are
forked from a process without a CUDA context) and after ``--model`` is on the device and has run
(``model``: what ``uae eval`` does). Results go to ``benchmarks/results/loader_pipeline_<device>.json``.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset

from benchmarks.report import device_env, sync, write_result
from benchmarks.synthetic_images import add_folder_args, jpeg_folder


class OneSample(Dataset):
    """``len(base)`` copies of ``base[0]`` (decoded once), each with its own index: transport only."""

    def __init__(self, base: Dataset, n: int) -> None:
        self.sample = base[0]
        self.n = n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> dict[str, Any]:
        s = dict(self.sample)
        s["image"] = s["image"].clone()
        s["index"] = i
        return s


def device_decode(
    files: list[Path], batch_size: int, side: int, device: torch.device, repeats: int
) -> dict[str, Any]:
    """Images/s of nvJPEG decoding + resize + centre crop on ``device`` (bytes read here, in the loop)."""
    import torch.nn.functional as F
    from torchvision.io import decode_jpeg

    def one_round() -> float:
        start = time.perf_counter()
        for i in range(0, len(files), batch_size):
            data = [
                torch.frombuffer(bytearray(Path(f).read_bytes()), dtype=torch.uint8)
                for f in files[i : i + batch_size]
            ]
            out = []
            for im in decode_jpeg(data, device=device):
                h, w = im.shape[-2:]
                scale = side / min(h, w)
                size = (max(side, round(h * scale)), max(side, round(w * scale)))
                im = F.interpolate(im[None].float(), size=size, mode="bilinear", antialias=True)
                top, left = (size[0] - side) // 2, (size[1] - side) // 2
                out.append(im[..., top : top + side, left : left + side])
            torch.cat(out)
        sync(device)
        return len(files) / (time.perf_counter() - start)

    try:
        one_round()
        rates = [one_round() for _ in range(repeats)]
    except Exception as e:  # noqa: BLE001 - a yardstick: report why it could not run
        return {"error": f"{type(e).__name__}: {e}"}
    return {"images_per_s": round(max(rates), 1), "rounds": [round(r, 1) for r in rates]}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="uae_demo", help="a registered model (its input and output sizes)")
    p.add_argument("--images", type=int, default=1024)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--workers", default="1,2", help="comma-separated loader worker counts")
    p.add_argument("--device", default="cpu")
    p.add_argument("--repeats", type=int, default=2, help="rounds per setting (the best is reported)")
    p.add_argument("--serial", type=int, default=256, help="images decoded in this process")
    add_folder_args(p)
    p.add_argument("--out", default="benchmarks/results")
    args = p.parse_args(argv)

    from uae.evaluation.common import batch_images, make_loader, open_dataset
    from uae.evaluation.options import RunOptions
    from uae.models.registry import get_config

    folder, tmp = jpeg_folder(args.folder, args.images, args.size)
    device = torch.device(args.device)
    cfg = get_config(args.model)
    uint8 = device.type == "cuda"  # as the runners send them
    opts = RunOptions(batch_size=args.batch_size, progress=False)
    ds, _ = open_dataset(
        str(folder), cfg.img_size, options=opts, out_size=cfg.output_size, labels=False, uint8=uint8
    )
    n = len(ds)

    for i in range(min(32, n)):  # page cache, first-call allocations
        ds[i]
    k = min(args.serial, n)
    start = time.perf_counter()
    for i in range(k):
        ds[i]
    serial = k / (time.perf_counter() - start)
    print(f"serial: {serial:.1f} images/s ({1e3 / serial:.2f} ms per image)", flush=True)

    def run(dataset: Dataset, workers: int) -> dict[str, float]:
        best: dict[str, float] | None = None
        for _ in range(args.repeats):
            seen = 0
            start = time.perf_counter()
            first = None
            for batch in make_loader(dataset, args.batch_size, workers, device=device):
                x, _ref = batch_images(batch, device)
                if first is None:
                    sync(device)
                    first = time.perf_counter()
                    after = -len(x)
                seen += len(x)
            sync(device)
            end = time.perf_counter()
            assert seen == len(dataset), seen
            after += seen
            rec = {
                "first_batch_s": round(first - start, 4),
                "images_per_s": round(seen / (end - start), 1),
                "steady_images_per_s": round(after / (end - first), 1) if end > first else float("nan"),
            }
            if best is None or rec["images_per_s"] > best["images_per_s"]:
                best = rec
        assert best is not None
        best["per_worker"] = round(best["steady_images_per_s"] / workers, 1)
        best["efficiency"] = round(best["per_worker"] / serial, 3)
        return best

    counts = [int(c) for c in args.workers.split(",")]
    states = ["cold", "model"] if device.type == "cuda" else ["cpu"]
    results: dict[str, Any] = {}
    for state in states:
        if state == "model":
            from uae import create_model

            model = create_model(args.model, pretrained=False).to(device).eval()
            with torch.no_grad():
                model(torch.rand(args.batch_size, 3, cfg.img_size, cfg.img_size, device=device))
            sync(device)
        for kind, dataset in (("decode", ds), ("transport", OneSample(ds, n))):
            for workers in counts:
                rec = run(dataset, workers)
                results[f"{state}/{kind}/w{workers}"] = rec
                print(f"{state:5s} {kind:9s} {workers:2d} workers: {rec}", flush=True)

    nvjpeg = None
    if device.type == "cuda":
        nvjpeg = device_decode(ds.files, args.batch_size, cfg.img_size, device, args.repeats)
        print(f"device decode: {nvjpeg}", flush=True)

    result = {
        "settings": {
            **{k: v for k, v in vars(args).items() if k not in ("out", "folder")},
            "input": cfg.img_size,
            "output": cfg.output_size,
            "uint8_transport": uint8,
        },
        "env": device_env(device),
        "serial_images_per_s": round(serial, 1),
        "serial_ms_per_image": round(1e3 / serial, 3),
        "loaders": results,
        "median_efficiency": round(statistics.median(r["efficiency"] for r in results.values()), 3),
        "device_decode": nvjpeg,
    }
    summary = {"serial_ms_per_image": result["serial_ms_per_image"], **results, "device_decode": nvjpeg}
    write_result(args.out, f"loader_pipeline_{device.type}_{args.model}", result, summary)
    if tmp is not None:
        tmp.cleanup()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
