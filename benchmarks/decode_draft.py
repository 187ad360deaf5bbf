"""Draft JPEG decoding: how close to a full decode, and how much faster.

Run from the repository root (needs scikit-image for its sample photographs)::

    python -m benchmarks.decode_draft

For every scikit-image sample photograph (:data:`benchmarks.synthetic_images.SAMPLES`) written as JPEG
(quality 90) at its own size, at 4x its size ("written at large size") and as an ImageNet-like 500x375
crop, and every target side (64, 224, 256), the evaluation transform (centre crop, bicubic antialiased
resize, :func:`uae.data.image_transform`) is applied to

* a full decode (``read_image(path)``), and
* a draft decode (``read_image(path, draft_size=side)``: 1/2, 1/4 or 1/8 scale, at least 2x the side left),

and the two ``[0, 1]`` outputs are compared (max and mean absolute difference). The same table gives, as
the yardsticks of "the resize's own tolerance" on the same photographs:

* **crop +1 px**: the full-decode output against itself with the centre crop moved by one source pixel
  (the centre crop rounds ``(w - s) / 2`` down, so the transform already makes this choice);
* **Pillow reducing_gap=2**: Pillow's own optimised resize (``Image.resize(..., reducing_gap=2.0)``:
  reduce by an integer factor, then resample; Pillow documents it as indistinguishable in most cases)
  against the exact resize of the same crop.

Times are the median of ``--repeats`` decode + transform runs per file. Results:
``benchmarks/results/decode_draft.json``.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from benchmarks.report import write_result
from benchmarks.synthetic_images import source_photos

SIDES = (64, 224, 256)


def _photos(folder: Path) -> list[Path]:
    paths = []
    for i, a in enumerate(source_photos()):
        im = Image.fromarray(a)
        for tag, size in (("1x", im.size), ("4x", (im.width * 4, im.height * 4))):
            p = folder / f"photo{i}_{tag}.jpg"
            im.resize(size, Image.LANCZOS).save(p, quality=90)
            paths.append(p)
        if im.width >= 500 and im.height >= 375:
            p = folder / f"photo{i}_500x375.jpg"
            im.crop((0, 0, 500, 375)).save(p, quality=90)
            paths.append(p)
    return paths


def _crop_resize(im: Image.Image, side: int, shift: int = 0, gap: float | None = None) -> torch.Tensor:
    """The evaluation transform by hand: centre crop (moved by ``shift`` px), bicubic resize."""
    w, h = im.size
    s = min(w, h)
    top, left = (h - s) // 2, (w - s) // 2 + (shift if w > h else 0)
    top += shift if h > w else 0
    crop = im.crop((left, top, left + s, top + s))
    out = crop.resize((side, side), Image.BICUBIC, reducing_gap=gap)
    return torch.from_numpy(np.asarray(out).copy()).permute(2, 0, 1).float() / 255.0


def _time(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--out", default="benchmarks/results")
    args = p.parse_args(argv)
    from uae.data import image_transform, read_image

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for path in _photos(Path(tmp)):
            full_im = read_image(path)
            for side in SIDES:
                draft_im = read_image(path, draft_size=side)
                if draft_im.size == full_im.size:
                    continue  # no reduction applies: identical by construction
                t = image_transform(side)
                full, draft = t(full_im), t(draft_im)
                diff = (full - draft).abs()
                exact = _crop_resize(full_im, side)
                shifted = (_crop_resize(full_im, side, shift=1) - exact).abs()
                gap = (_crop_resize(full_im, side, gap=2.0) - exact).abs()
                rows.append(
                    {
                        "file": path.name,
                        "size": list(full_im.size),
                        "side": side,
                        "draft_size": list(draft_im.size),
                        "max_abs": round(float(diff.max()), 4),
                        "mean_abs": round(float(diff.mean()), 5),
                        "crop_shift_1px_max_abs": round(float(shifted.max()), 4),
                        "pillow_reducing_gap2_max_abs": round(float(gap.max()), 4),
                        "full_ms": round(_time(lambda t=t, p=path: t(read_image(p)), args.repeats), 2),
                        "draft_ms": round(
                            _time(lambda t=t, p=path, s=side: t(read_image(p, draft_size=s)), args.repeats), 2
                        ),
                    }
                )
                r = rows[-1]
                print(
                    f"{r['file']:22s} {str(r['size']):14s} side {side:3d} -> {str(r['draft_size']):12s} "
                    f"max {r['max_abs']:.4f} mean {r['mean_abs']:.5f} | crop+1px {r['crop_shift_1px_max_abs']:.4f} "
                    f"reducing_gap2 {r['pillow_reducing_gap2_max_abs']:.4f} | {r['full_ms']:.2f} -> "
                    f"{r['draft_ms']:.2f} ms",
                    flush=True,
                )
    summary = {
        "cases": len(rows),
        "max_abs": max(r["max_abs"] for r in rows),
        "max_mean_abs": max(r["mean_abs"] for r in rows),
        "crop_shift_1px_max_abs": max(r["crop_shift_1px_max_abs"] for r in rows),
        "pillow_reducing_gap2_max_abs": max(r["pillow_reducing_gap2_max_abs"] for r in rows),
        "cases_within_crop_shift": sum(r["max_abs"] <= r["crop_shift_1px_max_abs"] for r in rows),
        "median_speedup": round(statistics.median(r["full_ms"] / r["draft_ms"] for r in rows), 2),
    }
    write_result(args.out, "decode_draft", {"summary": summary, "rows": rows}, summary)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
