"""Memory of ``uae eval`` / ``uae encode`` / the probe's feature extraction against the number of images.

Run from the repository root::

    python -m benchmarks.eval_memory --images 300 9000

For each mode and image count a fresh Python process (so nothing of one run stays in the next) runs the
library entry point that the command runs on a folder of synthetic JPEG photographs
(:mod:`benchmarks.synthetic_images`, 160x120, one folder per count) with ``uae_demo``, and reports its
peak resident set size (``ru_maxrss``; the loader's worker processes are reported apart):

* ``eval``: :func:`uae.evaluation.reconstruction.evaluate_dataset`, LPIPS and rFID off;
* ``encode``: :func:`uae.evaluation.latents.encode_dataset` of the bands, ``--shard-size`` images per shard
  (on the CPU each shard goes to its file batch by batch, so memory holds a batch, not a shard; before
  that, a shard was held in memory until written and its size bounded the memory);
* ``probe``: :func:`uae.evaluation.features.extract_features` (band 0, mean pool): the features themselves,
  ``N x D`` float32, are the result and are reported apart;
* ``eval_packed``: ``eval`` of the same images packed beforehand (by the parent process) into one uint8
  ``.npy`` at the model's output size (:func:`uae.evaluation.packing.pack_dataset`, ``uae pack``), read in
  the main process as ``uae eval`` reads a pack on the CPU (``num_workers=0``).

Target: the peak for the largest count within 20 MB of the smallest's (eval), and likewise for encode at a
fixed shard size and for the probe beyond its features. Results: ``benchmarks/results/eval_memory.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

from benchmarks.report import write_result
from benchmarks.synthetic_images import write_images

MODES = ("eval", "encode", "probe", "eval_packed")


def child(mode: str, folder: str, args: argparse.Namespace) -> dict:
    """Run one mode in this process, set up as its command sets itself up; its peak RSS in MiB."""
    from uae.commands import prepare_process

    prepare_process(mode)  # before torch is imported, as uae.cli does
    import torch

    torch.set_num_threads(args.threads)
    from uae.evaluation.common import open_dataset, prepare_model
    from uae.evaluation.options import RunOptions

    model, device = prepare_model(args.model, device="cpu")
    opts = RunOptions(batch_size=args.batch_size, num_workers=args.num_workers, progress=False)
    out: dict = {}
    if mode in ("eval", "eval_packed"):
        from uae.evaluation.reconstruction import evaluate_dataset

        if mode == "eval_packed":
            opts = RunOptions(batch_size=args.batch_size, num_workers=0, progress=False)
        res = evaluate_dataset(model, folder, metrics={"lpips": False, "fid": False}, options=opts)
        out["images"] = res["num_images"]
    elif mode == "encode":
        from uae.evaluation.latents import encode_dataset

        with tempfile.TemporaryDirectory() as tmp:
            index = encode_dataset(model, folder, tmp, shard_size=args.shard_size, options=opts)
        out["images"] = index["num_used"]
    else:
        from uae.evaluation.features import extract_features

        ds, _ = open_dataset(folder, model.config.img_size, options=opts, labels=False)
        feats, _ = extract_features(
            model, ds, band=0, batch_size=args.batch_size, num_workers=args.num_workers, progress=False
        )
        out["images"] = len(feats)
        out["features_mib"] = feats.numel() * feats.element_size() / 2**20
    out["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    out["workers_peak_rss_mib"] = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return out


def pack(folder: Path, model: str) -> Path:
    """``folder``'s images packed at ``model``'s output size into ``<folder>.npy`` (made once)."""
    out = folder.parent / f"{folder.name}.npy"
    if not out.is_file():
        import uae
        from uae.evaluation.options import RunOptions
        from uae.evaluation.packing import pack_dataset

        size = uae.create_model(model).config.output_size
        pack_dataset(str(folder), out, size, options=RunOptions(num_workers=2, progress=False, draft=False))
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--images", type=int, nargs="+", default=[300, 9000])
    p.add_argument("--modes", nargs="+", default=list(MODES), choices=MODES)
    p.add_argument("--model", default="uae_demo")
    p.add_argument("--batch-size", type=int, default=32, help="default: uae eval's")
    p.add_argument("--num-workers", type=int, default=2, help="default: uae eval's on 2 cores")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--shard-size", type=int, default=256)
    p.add_argument("--folder", default=None, help="parent folder of the image folders (kept; default: temp)")
    p.add_argument("--out", default="benchmarks/results")
    p.add_argument("--child", nargs=2, metavar=("MODE", "FOLDER"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        print("RESULT " + json.dumps(child(*args.child, args)), flush=True)
        return 0
    tmp = tempfile.TemporaryDirectory() if args.folder is None else None
    parent = Path(args.folder or tmp.name)
    results: dict = {"settings": {k: v for k, v in vars(args).items() if k not in ("child", "out", "folder")}}
    for n in args.images:
        folder = parent / f"images_{n}"
        if len(list(folder.glob("*.jpg"))) != n:
            write_images(folder, n, size=(160, 120))
        for mode in args.modes:
            data = folder
            if mode == "eval_packed":
                data = pack(folder, args.model)
            cmd = [sys.executable, "-m", "benchmarks.eval_memory", "--child", mode, str(data)]
            for k in ("model", "batch_size", "num_workers", "threads", "shard_size"):
                cmd += [f"--{k.replace('_', '-')}", str(getattr(args, k))]
            run = subprocess.run(
                cmd, capture_output=True, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"}
            )
            line = [x for x in run.stdout.splitlines() if x.startswith("RESULT ")]
            if run.returncode != 0 or not line:
                print(run.stdout[-2000:], run.stderr[-4000:], file=sys.stderr)
                return 1
            res = json.loads(line[-1][len("RESULT ") :])
            results.setdefault(mode, {})[str(n)] = res
            print(f"{mode:7s} {n:6d} images: peak RSS {res['peak_rss_mib']:8.1f} MiB", flush=True)
    lo, hi = str(min(args.images)), str(max(args.images))
    summary = {}
    for mode in args.modes:
        growth = results[mode][hi]["peak_rss_mib"] - results[mode][lo]["peak_rss_mib"]
        if mode == "probe":
            growth -= results[mode][hi]["features_mib"] - results[mode][lo]["features_mib"]
        summary[mode] = {
            "growth_mib": round(growth, 1),
            "per_image_kib": round(growth * 1024 / (int(hi) - int(lo)), 2),
            "within_20_mb": growth * 2**20 <= 20e6,
        }
    results["summary"] = summary
    write_result(args.out, "eval_memory", results, summary)
    if tmp is not None:
        tmp.cleanup()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
