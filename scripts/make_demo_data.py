"""Build the offline photo folder the embedded demo checkpoint (``checkpoints/uae_demo``) is trained on.

Every photograph ships with scikit-image or scikit-learn (no network)::

    python scripts/make_demo_data.py --out outputs/demo_data

writes ``OUT/train/*.bmp`` (the photos, longer side at most 512 px, uncompressed so the loader decodes them
fast; the recipe takes random-resized crops) and
``OUT/val/*.png`` (square crops of the held-out photo ``chelsea``, never seen in training) plus
``OUT/ATTRIBUTION.md``. Needs the ``dev`` extras (``scikit-image``, ``scikit-learn``).
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import numpy as np
from PIL import Image

logger = logging.getLogger("make_demo_data")

#: Training photos: name -> (loader, licence). Greyscale photos are replicated to RGB.
TRAIN_SKIMAGE = {
    "astronaut": "public domain (NASA)",
    "coffee": "CC0 (Rachel Michetti)",
    "rocket": "public domain (SpaceX)",
    "hubble_deep_field": "public domain (NASA)",
    "retina": "CC0 (Häggström, Wikimedia)",
    "immunohistochemistry": "no known copyright restrictions",
    "camera": "CC0 (Lav Varshney)",
    "coins": "no known copyright restrictions",
    "grass": "CC0 (CC0Textures)",
    "gravel": "CC0 (CC0Textures)",
    "brick": "CC0 (CC0Textures)",
    "clock": "public domain (Stefan van der Walt)",
}
TRAIN_SKLEARN = {
    "china": "CC BY 2.0, danielbuechele on Flickr (https://www.flickr.com/photos/danielbuechele/6061409035)",
    "flower": "CC BY 2.0, vultilion on Flickr (https://www.flickr.com/photos/vultilion/6056698931)",
}
#: The held-out photograph (evaluation only).
HELDOUT = ("chelsea", "CC0 (Stefan van der Walt)")
#: Held-out crops: (side as a fraction of the shorter side, grid positions per axis).
HELDOUT_CROPS = ((1.0, 1), (0.6, 3), (0.4, 4))


#: Training photos are stored with their longer side at most this many pixels (fast decoding in the loader).
MAX_SIDE = 512


def _rgb(arr: np.ndarray, max_side: int | None = None) -> Image.Image:
    if arr.dtype == bool:
        arr = arr.astype(np.uint8) * 255
    if arr.ndim == 2:
        arr = np.stack([arr] * 3, axis=-1)
    im = Image.fromarray(np.ascontiguousarray(arr[..., :3]).astype(np.uint8))
    if max_side and max(im.size) > max_side:
        scale = max_side / max(im.size)
        im = im.resize((round(im.width * scale), round(im.height * scale)), Image.LANCZOS)
    return im


def heldout_crops(im: Image.Image) -> list[tuple[str, Image.Image]]:
    """Deterministic square crops of the held-out photo at three scales (1 + 9 + 16 = 26 crops)."""
    w, h = im.size
    out = []
    for frac, n in HELDOUT_CROPS:
        side = int(round(min(w, h) * frac))
        xs = np.linspace(0, w - side, n).round().astype(int) if n > 1 else [(w - side) // 2]
        ys = np.linspace(0, h - side, n).round().astype(int) if n > 1 else [(h - side) // 2]
        for y in ys:
            for x in xs:
                out.append((f"{HELDOUT[0]}_s{side}_y{y}_x{x}", im.crop((x, y, x + side, y + side))))
    return out


def build(out: Path) -> dict[str, int]:
    """Write the folder; returns counts ``{"train": n, "val": m}``."""
    import skimage.data
    from sklearn.datasets import load_sample_image

    (out / "train").mkdir(parents=True, exist_ok=True)
    (out / "val").mkdir(parents=True, exist_ok=True)
    lines = ["# uae_demo training data", "", "| file | source | licence |", "|---|---|---|"]
    n_train = 0
    for name, lic in TRAIN_SKIMAGE.items():
        _rgb(getattr(skimage.data, name)(), MAX_SIDE).save(out / "train" / f"{name}.bmp")
        lines.append(f"| train/{name}.bmp | `skimage.data.{name}()` | {lic} |")
        n_train += 1
    for name, lic in TRAIN_SKLEARN.items():
        _rgb(load_sample_image(f"{name}.jpg"), MAX_SIDE).save(out / "train" / f"{name}.bmp")
        lines.append(f"| train/{name}.bmp | `sklearn.datasets.load_sample_image('{name}.jpg')` | {lic} |")
        n_train += 1
    held = _rgb(getattr(skimage.data, HELDOUT[0])())
    crops = heldout_crops(held)
    for name, crop in crops:
        crop.save(out / "val" / f"{name}.png")
    lines.append(f"| val/{HELDOUT[0]}_*.png ({len(crops)} crops) | `skimage.data.{HELDOUT[0]}()` (held out) | {HELDOUT[1]} |")
    (out / "ATTRIBUTION.md").write_text("\n".join(lines) + "\n")
    return {"train": n_train, "val": len(crops)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="outputs/demo_data", help="output folder (default: outputs/demo_data)")
    args = parser.parse_args()
    counts = build(Path(args.out))
    print(f"wrote {counts['train']} training photos and {counts['val']} held-out crops to {args.out}")


if __name__ == "__main__":
    main()
