"""``uae pack``: decode an image set once into one uint8 array file the evaluation commands read."""

from __future__ import annotations

from collections.abc import Sequence

from uae.commands._options import ArgumentParser, non_negative_int, positive_int
from uae.evaluation.options import NAMED_DATASETS


def build_parser() -> ArgumentParser:
    """Options of ``uae pack``."""
    p = ArgumentParser(
        prog="uae pack",
        description="Crop and resize the images of a dataset once and store them as one (N, size, size, 3) "
        "uint8 array (.npy, or an ADM-style .npz with class labels) that --data of uae eval, encode, probe, "
        "spectrum and filtered-eval accept: the set is then never decoded again.",
    )
    p.add_argument("--data", required=True, help=f"image folder or one of {', '.join(NAMED_DATASETS)}")
    p.add_argument(
        "--data-root",
        default=None,
        help="root of ImageNet (train/, val/) or MS-COCO (val2017/) for named --data",
    )
    p.add_argument("--output", required=True, help=".npy (images) or .npz (images + labels, ADM's layout)")
    p.add_argument("--size", type=positive_int, required=True, help="side of the square crops (e.g. 256)")
    p.add_argument(
        "--crop",
        choices=["uae", "adm"],
        default="uae",
        help="uae: centre square + PIL bicubic resize (uae eval's crop of a folder); adm: ADM's center_crop_arr "
        "(ADM's reference batches, the releases' evaluation)",
    )
    p.add_argument("--no-labels", action="store_true", help="leave class labels out of an .npz")
    p.add_argument("--limit", type=positive_int, default=None, help="only the first N images (sorted paths)")
    p.add_argument("--batch-size", type=positive_int, default=64)
    p.add_argument(
        "--num-workers",
        type=non_negative_int,
        default=None,
        help="image decoding processes (default: the cores)",
    )
    p.add_argument(
        "--max-pixels",
        type=non_negative_int,
        default=None,
        help="skip images with more pixels than this (default: UAE_MAX_IMAGE_PIXELS or 67108864; 0: no limit)",
    )
    p.add_argument(
        "--draft",
        action="store_true",
        help="decode large JPEGs at a reduced scale (faster; not the pixels of a full decode, which is the default)",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def main(argv: Sequence[str]) -> int:
    """``uae pack``: parse, pack (:func:`uae.evaluation.packing.pack_dataset`) and print what was written."""
    args = build_parser().parse_args(list(argv))
    from uae.evaluation.options import RunOptions
    from uae.evaluation.packing import pack_dataset
    from uae.hardware import available_cpus
    from uae.paths import output_file

    output_file(args.output, param="output")
    options = RunOptions(
        data_root=args.data_root,
        limit=args.limit,
        max_pixels="default" if args.max_pixels is None else (args.max_pixels or None),
        batch_size=args.batch_size,
        num_workers=available_cpus() if args.num_workers is None else args.num_workers,
        progress=not args.no_progress,
        draft=args.draft,
    )
    res = pack_dataset(
        args.data,
        args.output,
        args.size,
        crop=args.crop,
        labels=False if args.no_labels else None,
        options=options,
    )
    n, h, w, _ = res["shape"]
    labels = f", {len(res['classes'])} classes" if res["labels"] else ""
    print(
        f"uae pack: {n} images of {args.data} -> {res['path']} ({h}x{w}, {args.crop} crop{labels}, "
        f"{res['bytes'] / 1e6:.1f} MB)"
    )
    skipped = res["images"]["skipped_files"]
    if skipped:
        print(f"  skipped {len(skipped)} unreadable or too large image(s):")
        for reason in list(skipped.values())[:10]:  # each reason names its file
            print(f"    {reason}")
        if len(skipped) > 10:
            print(f"    ... and {len(skipped) - 10} more")
    return 0
