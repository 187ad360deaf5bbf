"""``uae eval | probe | spectrum | filtered-eval | encode``: evaluation and analysis commands.

Each ``*_main`` takes ``argv`` (without the command name) and returns an exit code; user errors are
raised as ``FileNotFoundError`` / ``ValueError`` and printed as one line by :mod:`uae.cli`.
"""

from __future__ import annotations

import argparse
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from uae.cliargs import (
    ArgumentParser,
    non_negative_float,
    non_negative_int,
    open_unit_fraction,
    output_dir,
    output_file,
    positive_float,
    positive_int,
)
from uae.data.datasets import SkipLog
from uae.evaluation.common import (
    NAMED_DATASETS,
    build_dataset,
    format_table,
    load_model,
    make_loader,
    resolve_data,
    resolve_device,
    write_json,
)

logger = logging.getLogger(__name__)


# ---------------------------------------------------------------------------------------------- options
def _add_model_data(p: argparse.ArgumentParser, data_help: str = "") -> None:
    p.add_argument(
        "--model", required=True, help="registered name, save_pretrained directory, or Hub repo id"
    )
    p.add_argument(
        "--random-init", action="store_true", help="registered name without trained weights (smoke tests)"
    )
    p.add_argument(
        "--data", required=True, help=data_help or f"image folder or one of {', '.join(NAMED_DATASETS)}"
    )
    p.add_argument(
        "--data-root",
        default=None,
        help="root of ImageNet (train/, val/) or MS-COCO (val2017/) for named --data",
    )
    p.add_argument(
        "--limit", type=positive_int, default=None, help="use only the first N images (sorted paths)"
    )
    p.add_argument("--batch-size", type=positive_int, default=32)
    p.add_argument("--num-workers", type=non_negative_int, default=min(4, os.cpu_count() or 1))
    p.add_argument(
        "--max-pixels",
        type=non_negative_int,
        default=None,
        help="skip images with more pixels than this (checked from the header; default: "
        "UAE_MAX_IMAGE_PIXELS or 67108864; 0: no limit)",
    )
    p.add_argument("--device", default="auto", help="cuda, cpu, cuda:1, ... (default: cuda when available)")
    p.add_argument("--no-amp", action="store_true", help="disable bf16/fp16 autocast on CUDA")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")


def _add_metric_opts(p: argparse.ArgumentParser) -> None:
    p.add_argument("--no-lpips", action="store_true", help="skip LPIPS")
    p.add_argument("--no-fid", action="store_true", help="skip rFID")
    p.add_argument("--lpips-net", default="vgg", choices=["vgg", "alex", "squeeze"])
    p.add_argument(
        "--inception-weights",
        default=None,
        help="torch-fidelity Inception weights file (weights-inception-2015-12-05-6726825d.pth)",
    )
    p.add_argument("--no-download", action="store_true", help="never download metric weights")
    p.add_argument("--no-quantize", action="store_true", help="compare float images instead of 8-bit ones")


def _add_probe_opts(p: argparse.ArgumentParser) -> None:
    p.add_argument("--epochs", type=positive_int, default=90)
    p.add_argument("--head-batch-size", type=positive_int, default=256)
    p.add_argument("--optimizer", default="sgd", choices=["sgd", "lars"])
    p.add_argument(
        "--lr", type=positive_float, default=None, help="peak lr (default: 0.1 for SGD, 0.1*bs/256 for LARS)"
    )
    p.add_argument("--weight-decay", type=non_negative_float, default=0.0)
    p.add_argument("--warmup-epochs", type=non_negative_int, default=0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--val-data",
        default=None,
        help="validation folder (default: ImageNet val for imagenet, else a split)",
    )
    p.add_argument(
        "--val-fraction",
        type=open_unit_fraction,
        default=0.2,
        help="share of --data held out when there is no --val-data",
    )
    p.add_argument("--cache-dir", default=None, help="feature cache folder (default: <output dir>/features)")
    p.add_argument(
        "--pool",
        default="mean",
        help="'mean' (C features; band 0 then equals the raw latent) or a grid side g (avg-pool to g x g, C*g*g features)",
    )


def _max_pixels(args: argparse.Namespace) -> int | None | str:
    """``--max-pixels`` for the datasets: ``"default"`` when not given, ``None`` for 0 (no limit)."""
    return "default" if args.max_pixels is None else (args.max_pixels or None)


def _images_summary(*logs: Any) -> dict[str, Any]:
    """One ``{"used", "skipped", "skipped_files"}`` entry from one or more SkipLogs."""
    skipped: dict[str, str] = {}
    for log in logs:
        skipped.update(log.skipped)
    return {"used": sum(log.used for log in logs), "skipped": len(skipped), "skipped_files": skipped}


def _print_skipped(images: dict[str, Any]) -> None:
    if images["skipped"]:
        print(f"  skipped {images['skipped']} unreadable or too large image(s); see the result file")


def _setup(args: argparse.Namespace) -> tuple[Any, torch.device]:
    device = resolve_device(args.device)
    model = load_model(args.model, pretrained=not args.random_init, device=device)
    return model, device


def _metrics(args: argparse.Namespace, device: torch.device):  # -> ReconstructionMetrics
    from uae.evaluation.metrics import ReconstructionMetrics

    return ReconstructionMetrics(
        lpips=not args.no_lpips,
        fid=not args.no_fid,
        lpips_net=args.lpips_net,
        inception_weights=args.inception_weights,
        allow_download=not args.no_download,
        quantize=not args.no_quantize,
        device=device,
    )


def _print_unavailable(res: dict[str, Any]) -> None:
    for k, why in res.get("unavailable", {}).items():
        print(f"  {k}: unavailable - {why}")


# ---------------------------------------------------------------------------------------------- eval
def eval_main(argv: Sequence[str]) -> int:
    """``uae eval``: PSNR / SSIM / LPIPS / rFID of reconstructions against the originals."""
    from uae.evaluation.reconstruction import evaluate_reconstruction

    p = ArgumentParser(
        prog="uae eval", description="Reconstruction metrics (PSNR, SSIM, LPIPS, rFID) on a dataset."
    )
    _add_model_data(p)
    _add_metric_opts(p)
    p.add_argument(
        "--size",
        type=positive_int,
        default=None,
        help="comparison resolution (default: the model's output size, 256 for the paper models)",
    )
    p.add_argument("--output", default="uae_eval.json", help="result JSON file")
    args = p.parse_args(list(argv))
    output_file(args.output, "--output")
    root = resolve_data(args.data, args.data_root)
    model, device = _setup(args)
    size = args.size or model.config.output_size
    ds = build_dataset(
        root,
        model.config.img_size,
        out_size=size,
        labels=False,
        limit=args.limit,
        max_pixels=_max_pixels(args),
    )
    metrics = _metrics(args, device)
    res = evaluate_reconstruction(
        model,
        make_loader(ds, args.batch_size, args.num_workers),
        metrics,
        size,
        device=device,
        amp=not args.no_amp,
        progress=not args.no_progress,
    )
    res = {
        "model": args.model,
        "data": args.data,
        "data_path": str(root),
        "input_size": model.config.img_size,
        "eval_size": size,
        **res,
    }
    res["num_skipped"] = res["images"]["skipped"]
    write_json(args.output, res)
    skipped = f", {res['num_skipped']} skipped" if res["num_skipped"] else ""
    print(f"uae eval: {args.model} on {args.data} ({res['num_images']} images{skipped}, {size}x{size})")
    rows = [[m.upper(), res[m]] for m in ("psnr", "ssim", "lpips", "rfid")]
    print(format_table(rows, ["metric", "value"]))
    _print_unavailable(res)
    _print_skipped(res["images"])
    print(f"  note: {res['notes']['rfid']}")
    print(f"results written to {args.output}")
    return 0


# ---------------------------------------------------------------------------------------------- probe
def _probe_datasets(args: argparse.Namespace, img_size: int):
    """Train and val datasets of the probe (ImageNet layout, explicit val folder, or a split)."""
    from torch.utils.data import Subset

    if args.data == "imagenet":
        if not args.data_root:
            raise FileNotFoundError("--data imagenet needs --data-root (the folder holding train/ and val/)")
        train_root, val_root = (
            resolve_data("imagenet-train", args.data_root),
            resolve_data("imagenet-val", args.data_root),
        )
    else:
        train_root = resolve_data(args.data, args.data_root)
        val_root = resolve_data(args.val_data, args.data_root) if args.val_data else None
    train = build_dataset(train_root, img_size, labels=True, limit=args.limit, max_pixels=_max_pixels(args))
    if val_root is not None:
        from uae.data.datasets import ImageFolderDataset, find_images, image_transform

        files = find_images(val_root)[: args.limit] if args.limit else val_root
        val = ImageFolderDataset(
            files,
            transform=image_transform(img_size),
            classes=train.classes,
            class_root=val_root,
            on_error="skip",
            max_pixels=_max_pixels(args),
        )
        return train, val, train.classes
    from uae.evaluation.probe import split_indices

    tr, va = split_indices(train.targets, args.val_fraction, seed=args.seed)
    return Subset(train, tr), Subset(train, va), train.classes


def _fit_probe(model, datasets, band, args, device, cache_dir: Path, tag: str, num_classes: int, logs=None):
    """Cached features of ``datasets`` (train, val) for ``band``, then the linear head with the CLI's options.

    ``logs``: optional (train, val) SkipLogs that receive the images used and skipped.
    """
    from uae.evaluation.probe import train_probe

    (xtr, ytr), (xva, yva) = _probe_features(model, datasets, band, args, device, cache_dir, tag, logs=logs)
    return train_probe(
        xtr,
        ytr,
        xva,
        yva,
        num_classes=num_classes,
        epochs=args.epochs,
        batch_size=args.head_batch_size,
        optimizer=args.optimizer,
        lr=args.lr,
        weight_decay=args.weight_decay,
        warmup_epochs=args.warmup_epochs,
        seed=args.seed,
        progress=not args.no_progress,
    )


def _probe_features(
    model,
    datasets,
    band,
    args,
    device,
    cache_dir: Path,
    tag: str,
    input_filter=None,
    filter_tag: str = "",
    logs=None,
):
    from uae.evaluation.probe import extract_features, feature_fingerprint, parse_pool

    out = []
    for split, ds, log in zip(("train", "val"), datasets, logs or (None, None)):
        if ds is None:
            out.append(None)
            continue
        base = ds.dataset if hasattr(ds, "dataset") else ds
        ids = list(ds.indices) if hasattr(ds, "indices") else None
        pool = parse_pool(args.pool)
        fp = feature_fingerprint(
            model=args.model,
            random_init=args.random_init,
            band=band,
            files=[str(f) for f in base.files],
            subset=ids,
            size=model.config.img_size,
            filter=filter_tag,
            pool=pool,
        )
        path = (
            cache_dir
            / f"{tag}_{split}_band-{band}_pool-{pool}{'_' + filter_tag if filter_tag else ''}_{fp}.safetensors"
        )
        out.append(
            extract_features(
                model,
                ds,
                band=band,
                batch_size=args.batch_size,
                num_workers=args.num_workers,
                device=device,
                input_filter=input_filter,
                cache_path=path,
                fingerprint=fp,
                progress=not args.no_progress,
                amp=not args.no_amp,
                pool=pool,
                skip_log=log,
            )
        )
    return out


def probe_main(argv: Sequence[str]) -> int:
    """``uae probe``: linear probe (BN without affine + linear) on frozen band features."""
    from uae.evaluation.probe import parse_band

    p = ArgumentParser(prog="uae probe", description="Linear probe on frozen UAE features (cached once).")
    _add_model_data(
        p,
        data_help="labelled folder (class sub-folders), 'imagenet' (with --data-root: train/ + val/), or a named split",
    )
    _add_probe_opts(p)
    p.add_argument(
        "--band",
        nargs="+",
        default=["0"],
        help="band index, 'all' (bands concatenated), 'latent' (raw encoder); several allowed",
    )
    p.add_argument("--output", default="uae_probe.json", help="result JSON file")
    args = p.parse_args(list(argv))
    bands = [parse_band(b) for b in args.band]
    output_file(args.output, "--output")
    if args.cache_dir:
        output_dir(args.cache_dir, "--cache-dir")
    model, device = _setup(args)
    train_ds, val_ds, classes = _probe_datasets(args, model.config.img_size)
    cache_dir = Path(args.cache_dir) if args.cache_dir else Path(args.output).resolve().parent / "features"
    results: dict[str, Any] = {"model": args.model, "data": args.data, "classes": classes, "bands": {}}
    for band in bands:
        logs = (SkipLog(), SkipLog())
        _, res = _fit_probe(
            model, (train_ds, val_ds), band, args, device, cache_dir, "probe", len(classes), logs=logs
        )
        results["bands"][str(band)] = res
        # The same files for every band: keep one count (of the last band's pass).
        results["images"] = {"train": _images_summary(logs[0]), "val": _images_summary(logs[1])}
    write_json(args.output, results)
    print(f"uae probe: {args.model} on {args.data} ({len(classes)} classes)")
    rows = [
        [
            b,
            r["feature_dim"],
            100 * r["top1"],
            100 * r["top5"],
            100 * r["train_top1"],
            r["num_train"],
            r["num_val"],
        ]
        for b, r in results["bands"].items()
    ]
    print(
        format_table(
            rows, ["band", "dim", "top1 %", f"top{min(5, len(classes))} %", "train top1 %", "train", "val"]
        )
    )
    _print_skipped(_images_summary(*logs))
    print(f"results written to {args.output}")
    return 0


# ---------------------------------------------------------------------------------------------- spectrum
def spectrum_main(argv: Sequence[str]) -> int:
    """``uae spectrum``: radial power spectrum of latents and the energy share per band."""
    from uae.evaluation.spectrum import (
        autoencoderkl_encoder,
        compute_spectra,
        plot_spectra,
        teacher_encoder,
        uae_encoder,
        write_spectrum_csv,
    )

    p = ArgumentParser(
        prog="uae spectrum", description="Radial power spectrum of latent grids and energy per UAE band."
    )
    _add_model_data(p)
    p.add_argument(
        "--encoders",
        nargs="+",
        default=["uae"],
        choices=["uae", "teacher", "vae"],
        help="uae (the unified encoder), teacher (DINOv2 init), vae (diffusers AutoencoderKL, needs --vae)",
    )
    p.add_argument(
        "--teacher-weights", default=None, help="DINOv2 weights for the teacher (default: the config's)"
    )
    p.add_argument(
        "--vae", default=None, help="AutoencoderKL directory or Hub id (e.g. stabilityai/sd-vae-ft-mse)"
    )
    p.add_argument("--vae-size", type=positive_int, default=256, help="input side of the VAE")
    p.add_argument(
        "--out-dir",
        default="uae_spectrum",
        help="folder for spectrum.csv, band_energy.csv, spectrum.png, spectrum.json",
    )
    args = p.parse_args(list(argv))
    output_dir(args.out_dir, "--out-dir")
    root = resolve_data(args.data, args.data_root)
    model, device = _setup(args)
    encoders, skipped = [], {}
    for name in args.encoders:
        if name == "uae":
            encoders.append(uae_encoder(model))
        elif name == "teacher":
            encoders.append(teacher_encoder(model, args.teacher_weights))
        else:
            if not args.vae:
                raise ValueError("--encoders vae needs --vae PATH_OR_REPO (a diffusers AutoencoderKL)")
            try:
                encoders.append(autoencoderkl_encoder(args.vae, size=args.vae_size, device=device))
            except ImportError as e:  # pragma: no cover - defensive
                skipped["vae"] = str(e)
    size = max(e.size for e in encoders)
    ds = build_dataset(root, size, labels=False, limit=args.limit, max_pixels=_max_pixels(args))
    log = SkipLog()
    results = compute_spectra(
        encoders,
        make_loader(ds, args.batch_size, args.num_workers),
        band_energy=model.band_projector.band_energy,
        device=device,
        amp=not args.no_amp,
        progress=not args.no_progress,
        skip_log=log,
    )
    out = Path(args.out_dir)
    spec_csv, band_csv = write_spectrum_csv(results, out)
    png = plot_spectra(results, out / "spectrum.png", title=f"{args.model} on {args.data}")
    write_json(
        out / "spectrum.json",
        {
            "model": args.model,
            "data": args.data,
            "num_bands": model.config.num_bands,
            "encoders": results,
            "skipped": skipped,
            "images": _images_summary(log),
        },
    )
    k = model.config.num_bands
    rows = [
        [r["encoder"], "x".join(map(str, r["latent_shape"])), *(100 * s for s in r["band_share"])]
        for r in results
    ]
    print(f"uae spectrum: energy share per band (%), {results[0]['num_images']} images")
    print(format_table(rows, ["encoder", "latent", *(f"band {i}" for i in range(k))]))
    _print_skipped(_images_summary(log))
    print(f"written: {spec_csv}, {band_csv}, {png}")
    return 0


# ---------------------------------------------------------------------------------------------- filtered
def filtered_main(argv: Sequence[str]) -> int:
    """``uae filtered-eval``: probe accuracy and reconstruction metrics on original / LFC / HFC images."""
    from uae.evaluation.filtered import make_filter
    from uae.evaluation.probe import evaluate_head, parse_band
    from uae.evaluation.reconstruction import evaluate_reconstruction

    p = ArgumentParser(
        prog="uae filtered-eval",
        description="Low-pass (LFC) / high-pass (HFC) filtered evaluation at radius r beside the originals.",
    )
    _add_model_data(
        p,
        data_help="labelled folder (for the probe), 'imagenet' (with --data-root), or any image folder (--no-probe)",
    )
    _add_metric_opts(p)
    _add_probe_opts(p)
    p.add_argument(
        "--radius", type=positive_float, nargs="+", default=[0.25, 0.5], help="cut-off radii (1 = Nyquist)"
    )
    p.add_argument("--band", default="0", help="probe feature band")
    p.add_argument("--no-probe", action="store_true", help="only reconstruction metrics")
    p.add_argument("--no-recon", action="store_true", help="only probe accuracy")
    p.add_argument(
        "--size",
        type=positive_int,
        default=None,
        help="reconstruction comparison resolution (default: model output size)",
    )
    p.add_argument("--output", default="uae_filtered.json", help="result JSON file")
    args = p.parse_args(list(argv))
    if args.no_probe and args.no_recon:
        raise ValueError("--no-probe and --no-recon leave nothing to evaluate")
    output_file(args.output, "--output")
    if args.cache_dir:
        output_dir(args.cache_dir, "--cache-dir")
    model, device = _setup(args)
    variants = [("original", 0.0)] + [(k, r) for r in args.radius for k in ("lfc", "hfc")]
    results: dict[str, Any] = {"model": args.model, "data": args.data, "variants": {}}
    head = None
    if not args.no_probe:
        band = parse_band(args.band)
        train_ds, val_ds, classes = _probe_datasets(args, model.config.img_size)
        cache_dir = (
            Path(args.cache_dir) if args.cache_dir else Path(args.output).resolve().parent / "features"
        )
        logs = (SkipLog(), SkipLog())
        head, res = _fit_probe(
            model, (train_ds, val_ds), band, args, device, cache_dir, "filtered", len(classes), logs=logs
        )
        images = {"train": _images_summary(logs[0]), "val": _images_summary(logs[1])}
        results["probe"] = {"band": str(band), "trained_on": "original images", **res, "images": images}
    rec_metrics = None
    for kind, radius in variants:
        name = kind if kind == "original" else f"{kind}@{radius:g}"
        flt = make_filter(kind, radius)
        entry: dict[str, Any] = {"kind": kind, "radius": radius if kind != "original" else None}
        if head is not None:
            if kind == "original":
                entry.update({"top1": results["probe"]["top1"], "top5": results["probe"]["top5"]})
            else:
                _, (fva, lva) = _probe_features(
                    model,
                    (None, val_ds),
                    band,
                    args,
                    device,
                    cache_dir,
                    "filtered",
                    input_filter=flt,
                    filter_tag=f"{kind}{radius:g}",
                )
                keep = lva >= 0
                entry.update(evaluate_head(head, fva[keep], lva[keep]))
        if not args.no_recon:
            root = (
                resolve_data("imagenet-val", args.data_root)
                if args.data == "imagenet"
                else resolve_data(args.val_data or args.data, args.data_root)
            )
            size = args.size or model.config.output_size
            ds = build_dataset(
                root,
                model.config.img_size,
                out_size=size,
                labels=False,
                limit=args.limit,
                max_pixels=_max_pixels(args),
            )
            if rec_metrics is None:
                rec_metrics = _metrics(args, device)  # weights resolved and loaded once for all variants
            rec_metrics.reset()
            rec = evaluate_reconstruction(
                model,
                make_loader(ds, args.batch_size, args.num_workers),
                rec_metrics,
                size,
                input_filter=flt,
                device=device,
                amp=not args.no_amp,
                progress=not args.no_progress,
                desc=f"eval {name}",
            )
            entry.update({k: rec[k] for k in ("psnr", "ssim", "lpips", "rfid", "num_images")})
            entry["num_skipped"] = rec["images"]["skipped"]
            entry["unavailable"] = rec["unavailable"]
            results.setdefault("notes", rec["notes"])
            results.setdefault("images", rec["images"])  # the same files for every variant
        results["variants"][name] = entry
    write_json(args.output, results)
    print(f"uae filtered-eval: {args.model} on {args.data}")
    cols = (["top1"] if head is not None else []) + (
        [] if args.no_recon else ["psnr", "ssim", "lpips", "rfid"]
    )
    rows = [
        [n, *((100 * e[c]) if c == "top1" else e.get(c) for c in cols)]
        for n, e in results["variants"].items()
    ]
    print(format_table(rows, ["images", *(c + (" %" if c == "top1" else "") for c in cols)]))
    if not args.no_recon:
        _print_unavailable(next(iter(results["variants"].values())))
        _print_skipped(results["images"])
    elif "probe" in results:
        _print_skipped(_images_summary(*logs))
    print(f"results written to {args.output}")
    return 0


# ---------------------------------------------------------------------------------------------- encode
def encode_main(argv: Sequence[str]) -> int:
    """``uae encode``: band latents of a dataset as sharded safetensors (resumable), with latent stats."""
    from uae.evaluation.export import EXPORTABLE, export_latents

    p = ArgumentParser(
        prog="uae encode", description="Export band / fused latents of a dataset as sharded safetensors."
    )
    _add_model_data(p)
    p.add_argument("--out", required=True, help="output folder (re-run the same command to resume)")
    p.add_argument("--what", nargs="+", default=["bands"], choices=list(EXPORTABLE), help="tensors to store")
    p.add_argument(
        "--shard-size",
        type=positive_int,
        default=None,
        help="images per shard (default: about 1 GiB per shard)",
    )
    p.add_argument(
        "--dtype", default="float32", choices=["float32", "float16", "bfloat16"], help="storage dtype"
    )
    args = p.parse_args(list(argv))
    output_dir(args.out, "--out")
    root = resolve_data(args.data, args.data_root)
    model, device = _setup(args)
    ds = build_dataset(
        root, model.config.img_size, labels=None, limit=args.limit, max_pixels=_max_pixels(args)
    )
    index = export_latents(
        model,
        ds,
        args.out,
        what=args.what,
        shard_size=args.shard_size,
        batch_size=args.batch_size,
        num_workers=args.num_workers,
        dtype=args.dtype,
        device=device,
        amp=not args.no_amp,
        progress=not args.no_progress,
        metadata={"model": args.model, "data": args.data, "data_path": str(root)},
    )
    print(
        f"uae encode: {len(index['shards'])}/{index['num_shards']} shards, {index.get('num_used', 0)} images "
        f"({index.get('num_skipped', 0)} skipped of {index['num_images']}) -> {args.out}"
    )
    for k, s in index.get("stats", {}).items():
        mean = torch.tensor(s["mean"])
        std = torch.tensor(s["std"])
        print(
            f"  {k}: shape {index['shapes'][k]}, mean of channel means {mean.mean():.4f}, mean channel std {std.mean():.4f}"
        )
    return 0
