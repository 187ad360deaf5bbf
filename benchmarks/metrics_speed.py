"""CPU time of ``uae eval``'s PSNR + SSIM per image against torchmetrics' (A/B in one process).

Run from the repository root::

    python -m benchmarks.metrics_speed --sizes 64,128,256 --rounds 5

On pairs of images (a real photograph resized to each size, and the same plus Gaussian noise, so SSIM
is neither 1 nor 0), in interleaved rounds on ``--threads`` threads (default 1: CPU time equals wall
time), the variants are:

* **uae**: :meth:`uae.evaluation.metrics.ReconstructionMetrics.update` with LPIPS and rFID off: 8-bit
  rounding, per-image PSNR and SSIM (the Gaussian window as one matrix product per axis), running sums.
* **uae_ssim**: :func:`uae.evaluation.metrics.ssim_per_image` alone (the window as matrix products up
  to 128 px, two depthwise convolutions above).
* **uae_ssim_convolutions**: the same with the window as two depthwise convolutions at every size (the
  crossover of ``uae.evaluation.pixel_metrics._MATRIX_BLUR_MAX_SIDE``).
* **torchmetrics_ssim**: ``torchmetrics.functional.image.structural_similarity_index_measure`` with
  ``reduction="none"`` (the same values: an 11x11 Gaussian window as a 2-D convolution).

Each figure is milliseconds of CPU per image (``time.process_time``), median over the rounds; the figures
of merit are torchmetrics_ssim / uae_ssim (how many times faster uae's SSIM is) and the agreement of the
two SSIMs in float64. Results: ``benchmarks/results/metrics_speed_cpu.json``.
"""

from __future__ import annotations

import argparse
import statistics
import time
from functools import partial

import torch

from benchmarks.report import device_env, write_result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", default="64,128,256", help="comma-separated image sides")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default="benchmarks/results")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    from torchmetrics.functional.image import structural_similarity_index_measure as tm_ssim

    import uae.evaluation.pixel_metrics as metrics_module
    from uae.data.image_io import read_image
    from uae.data.transforms import image_transform
    from uae.evaluation.metrics import ReconstructionMetrics, ssim_per_image
    from uae.models.bundled import bundled_photos

    photo = read_image(bundled_photos()[0])

    result: dict = {"settings": vars(args), "env": device_env(torch.device("cpu")), "sizes": {}}
    for side in (int(s) for s in args.sizes.split(",")):
        ref = image_transform(side)(photo).unsqueeze(0).expand(args.batch_size, -1, -1, -1).contiguous()
        noise = torch.randn(ref.shape, generator=torch.Generator().manual_seed(0))
        recon = (ref + 0.05 * noise).clamp(0, 1)
        metrics = ReconstructionMetrics(lpips=False, fid=False)

        def convolutions(recon: torch.Tensor = recon, ref: torch.Tensor = ref) -> torch.Tensor:
            saved, metrics_module._MATRIX_BLUR_MAX_SIDE = metrics_module._MATRIX_BLUR_MAX_SIDE, 0
            try:
                return ssim_per_image(recon, ref)
            finally:
                metrics_module._MATRIX_BLUR_MAX_SIDE = saved

        variants = {
            "uae": partial(metrics.update, recon, ref),
            "uae_ssim": partial(ssim_per_image, recon, ref),
            "uae_ssim_convolutions": convolutions,
            "torchmetrics_ssim": partial(tm_ssim, recon, ref, data_range=1.0, reduction="none"),
        }
        reps = max(1, 2**20 // ref[0].numel())  # about the same work per measurement at each size
        ms: dict[str, list[float]] = {k: [] for k in variants}
        for f in variants.values():  # warm-up
            f()
        for _ in range(args.rounds):
            for name, f in variants.items():
                start = time.process_time()
                for _ in range(reps):
                    f()
                ms[name].append((time.process_time() - start) * 1e3 / (reps * args.batch_size))
        exact = tm_ssim(recon.double(), ref.double(), data_range=1.0, reduction="none")
        entry = {
            "ms_per_image": {k: [round(v, 4) for v in vals] for k, vals in ms.items()},
            "median_ms_per_image": {k: round(statistics.median(v), 4) for k, v in ms.items()},
            "torchmetrics_over_uae_ssim": round(
                statistics.median(a / b for a, b in zip(ms["torchmetrics_ssim"], ms["uae_ssim"])), 2
            ),
            "convolutions_over_uae_ssim": round(
                statistics.median(a / b for a, b in zip(ms["uae_ssim_convolutions"], ms["uae_ssim"])), 2
            ),
            "ssim_max_abs_diff_float64": float((ssim_per_image(recon, ref).double() - exact).abs().max()),
        }
        result["sizes"][str(side)] = entry
    summary = {
        side: {
            k: e[k]
            for k in ("median_ms_per_image", "torchmetrics_over_uae_ssim", "convolutions_over_uae_ssim")
        }
        for side, e in result["sizes"].items()
    }
    write_result(args.out, "metrics_speed_cpu", result, summary)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
