"""Does ``uae eval`` keep up with the model? End-to-end images/s against the model's compute-only images/s.

Run from the repository root::

    python -m benchmarks.eval_throughput --model uae_demo --images 2048 --device cpu
    python -m benchmarks.eval_throughput --model uae_demo --images 4096 --device cuda

In one process and on the same synthetic JPEG folder (:mod:`benchmarks.synthetic_images`,
500x375 photographs), interleaved ``--repeats`` times (ABAB...):

* **compute**: the model alone (:func:`uae.evaluation.reconstruction.reconstruct_batch`, what the
  evaluation calls) on batches already decoded and in memory;
* **eval**: :func:`uae.evaluation.reconstruction.evaluate_dataset` (what ``uae eval`` runs) with LPIPS and
  rFID off: decoding in the loader's workers, the model, then PSNR and SSIM: between the model's batches
  for a model on the CPU (whose cores a thread would take), in a background thread for a GPU model;
* **eval, metrics in a thread**: the same with the metrics in the background thread on any device
  (``background=True``);
* **eval, metrics inline**: the same with the metrics between the model's batches (``background=False``);
* **eval, no draft**: the same as **eval** with full-size JPEG decoding (``RunOptions(draft=False)``);
* **eval, workers not niced**: the same as **eval** with the loader's workers at the main process's
  priority (``RunOptions(worker_niceness=0)``; by default they yield the CPU to the model's threads);
* **eval, float transport**: the same as **eval** with the workers sending float32 pixels (4 bytes per
  channel); **eval** sends ``uint8`` ones to a GPU, scaled there (on the CPU both send float32);
* **eval, as before**: the same loop with the previous metric code (torchmetrics' ``PeakSignalNoiseRatio``
  with a per-batch list state and its 2-D ``StructuralSimilarityIndexMeasure``, :class:`LegacyMetrics`) on
  the main thread, full-size decoding, float transport and workers at the main process's priority: what ``uae eval`` did before, measured in the
  same run;
* **eval, packed**: :func:`uae.evaluation.reconstruction.evaluate_dataset` over the same images packed once
  (:func:`uae.evaluation.packing.pack_dataset`, ``uae pack``: the eval crops at the model's output size as
  one uint8 ``.npy``, decoded at full size) instead of the JPEG folder, with ``--num-workers`` workers;
  **eval, packed, no workers**: the same read in the main process (``num_workers=0``); the packing's own
  time is recorded once (``pack_seconds``);
* **eval, preloaded**: :func:`uae.evaluation.reconstruction.evaluate_reconstruction` over the decoded
  batches in memory (host tensors, as a loader yields them): the model and the metrics without the
  decoding, i.e. what the metrics cost the model (on a GPU the decoding, not the metrics, bounds **eval**).

The ratio eval / compute is the figure of merit (target: >= 0.8). Results go to
``benchmarks/results/eval_throughput_<device>.json``.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import torch

from benchmarks.report import device_env, rate_fields, ratio_fields, sync, write_result
from benchmarks.synthetic_images import add_folder_args, jpeg_folder


class LegacyMetrics:
    """PSNR / SSIM as ``uae eval`` computed them before (torchmetrics' classes, 8-bit quantised inputs)."""

    def __init__(self, device: torch.device) -> None:
        from torchmetrics.image import PeakSignalNoiseRatio, StructuralSimilarityIndexMeasure

        self.psnr = PeakSignalNoiseRatio(data_range=1.0, dim=(1, 2, 3), reduction="elementwise_mean").to(
            device
        )
        self.ssim = StructuralSimilarityIndexMeasure(data_range=1.0).to(device)
        self.n = 0

    @torch.no_grad()
    def update(self, recon: torch.Tensor, ref: torch.Tensor) -> None:
        from uae.evaluation.metrics import quantize

        recon, ref = quantize(recon.float().clamp(0, 1)), quantize(ref.float().clamp(0, 1))
        self.psnr.update(recon, ref)
        self.ssim.update(recon, ref)
        self.n += len(recon)

    def compute(self) -> dict:
        return {"num_images": self.n, "psnr": float(self.psnr.compute()), "ssim": float(self.ssim.compute())}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="uae_demo")
    p.add_argument(
        "--random-init",
        action="store_true",
        help="a registered architecture without trained weights (size only)",
    )
    p.add_argument("--images", type=int, default=2048)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--num-workers", type=int, default=min(4, os.cpu_count() or 1))
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    p.add_argument("--repeats", type=int, default=3)
    add_folder_args(p)
    p.add_argument(
        "--variants",
        default=None,
        help="comma-separated variants to run besides compute (default: all; see the module docstring)",
    )
    p.add_argument("--out", default="benchmarks/results")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    from uae.commands import prepare_process

    prepare_process("eval")  # as `uae eval` sets itself up

    from uae.data.transforms import scale_uint8
    from uae.evaluation.common import make_loader, open_dataset, prepare_model
    from uae.evaluation.metrics import ReconstructionMetrics
    from uae.evaluation.options import RunOptions
    from uae.evaluation.reconstruction import evaluate_dataset, evaluate_reconstruction, reconstruct_batch

    folder, tmp = jpeg_folder(args.folder, args.images, args.size)
    model, device = prepare_model(args.model, random_init=args.random_init, device=args.device)
    model.eval()
    size = model.config.output_size
    options = RunOptions(batch_size=args.batch_size, num_workers=args.num_workers, progress=False)
    metrics = {"lpips": False, "fid": False}

    ds, _ = open_dataset(str(folder), model.config.img_size, options=options, out_size=size, labels=False)
    batches = [
        scale_uint8(b["image"]) for b in make_loader(ds, args.batch_size, args.num_workers, device=device)
    ]
    n = sum(len(b) for b in batches)
    from uae.evaluation.packing import pack_dataset

    pack_dir = tempfile.TemporaryDirectory()
    packed = Path(pack_dir.name) / f"packed-{size}.npy"
    start = time.perf_counter()
    pack_dataset(
        str(folder),
        packed,
        size,
        options=RunOptions(
            batch_size=args.batch_size, num_workers=args.num_workers, progress=False, draft=False
        ),
    )
    pack_seconds = time.perf_counter() - start

    def compute() -> float:
        xs = [b.to(device) for b in batches]
        sync(device)
        start = time.perf_counter()
        for x in xs:
            reconstruct_batch(model, x, size)
        sync(device)
        return n / (time.perf_counter() - start)

    def run_eval(
        background: bool | None = None,
        draft: bool = True,
        legacy: bool = False,
        uint8: bool | None = None,
        niceness: int | None = None,
        data: str | None = None,
        workers: int | None = None,
    ) -> float:
        as_runner = uint8 is None  # the runners send uint8 pixels to a GPU only
        uint8 = device.type == "cuda" if uint8 is None else uint8
        if niceness is None:  # the runners' default; the previous code left the workers' priority alone
            niceness = 0 if legacy else RunOptions().worker_niceness
        opts = RunOptions(
            batch_size=args.batch_size,
            num_workers=args.num_workers if workers is None else workers,
            progress=False,
            draft=draft,
            worker_niceness=niceness,
        )
        start = time.perf_counter()
        if background is None and draft and as_runner and not legacy:
            res = evaluate_dataset(model, data or str(folder), metrics=metrics, options=opts)
        else:
            d, _ = open_dataset(
                str(folder),
                model.config.img_size,
                options=opts,
                out_size=size,
                labels=False,
                uint8=uint8 and not legacy,
            )
            res = evaluate_reconstruction(
                model,
                make_loader(d, args.batch_size, args.num_workers, device=device, worker_niceness=niceness),
                LegacyMetrics(device) if legacy else ReconstructionMetrics(**metrics, device=device),
                size,
                device=device,
                progress=False,
                background=background,
            )
        sync(device)
        assert res["num_images"] == n, res["num_images"]
        return n / (time.perf_counter() - start)

    def run_preloaded() -> float:
        host = [{"image": b, "unreadable": []} for b in batches]
        start = time.perf_counter()
        res = evaluate_reconstruction(
            model, host, ReconstructionMetrics(**metrics, device=device), size, device=device, progress=False
        )
        sync(device)
        assert res["num_images"] == n, res["num_images"]
        return n / (time.perf_counter() - start)

    variants = {
        "compute": compute,
        "eval_preloaded": run_preloaded,
        "eval": run_eval,
        "eval_metrics_in_thread": lambda: run_eval(background=True),
        "eval_metrics_inline": lambda: run_eval(background=False),
        "eval_packed": lambda: run_eval(data=str(packed)),
        "eval_packed_no_workers": lambda: run_eval(data=str(packed), workers=0),
        "eval_no_draft": lambda: run_eval(draft=False),
        "eval_float_transport": lambda: run_eval(uint8=False),
        "eval_workers_not_niced": lambda: run_eval(niceness=0),
        "eval_as_before": lambda: run_eval(background=False, draft=False, legacy=True),
    }
    if args.variants:
        wanted = {"compute", *args.variants.split(",")}
        unknown = wanted - set(variants)
        if unknown:
            p.error(f"unknown variants {sorted(unknown)}; known: {sorted(variants)}")
        variants = {k: v for k, v in variants.items() if k in wanted}
    compute()  # warm-up (first-call allocations, autotuning)
    run_eval()
    rates: dict[str, list[float]] = {k: [] for k in variants}
    for _ in range(args.repeats):
        for name, fn in variants.items():
            rates[name].append(fn())
            print(f"{name:22s} {rates[name][-1]:9.1f} images/s", flush=True)
    ratios = {k: ratio_fields(rates[k], rates["compute"]) for k in variants if k != "compute"}
    result = {
        "settings": {
            **{k: v for k, v in vars(args).items() if k not in ("out", "folder")},
            "torch_threads": torch.get_num_threads(),
            "images_used": n,
            "output_size": size,
            "pack_seconds": round(pack_seconds, 3),
        },
        "env": device_env(device),
        **rate_fields(rates),
        "ratio_to_compute": ratios,
    }
    summary = {"median_images_per_s": result["median_images_per_s"], "ratios": ratios}
    write_result(args.out, f"eval_throughput_{device.type}", result, summary)
    pack_dir.cleanup()
    if tmp is not None:
        tmp.cleanup()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
