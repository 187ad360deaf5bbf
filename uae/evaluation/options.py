"""Command-line options shared by the evaluation commands (``uae eval | probe | spectrum | filtered-eval | encode``).

Light on purpose: only the standard library and :mod:`uae.cliargs`, so that building a parser (and
``--help``) does not import torch.
"""

from __future__ import annotations

import argparse
import os

from uae.cliargs import (
    non_negative_float,
    non_negative_int,
    open_unit_fraction,
    positive_float,
    positive_int,
)

#: Dataset names accepted by ``--data`` besides a folder path.
NAMED_DATASETS = ("imagenet-val", "imagenet-train", "coco-val", "coco-train")
#: Tensors ``uae encode --what`` can store (see :mod:`uae.evaluation.export`).
EXPORTABLE = ("bands", "latent", "fused")


def add_model_data(p: argparse.ArgumentParser, data_help: str = "") -> None:
    """``--model``, ``--data`` and the loader / device options of every evaluation command."""
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


def add_metric_opts(p: argparse.ArgumentParser) -> None:
    """Options of the reconstruction metrics (LPIPS, rFID, quantisation)."""
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
    p.add_argument(
        "--size",
        type=positive_int,
        default=None,
        help="reconstruction comparison resolution (default: the model's output size, 256 for the paper models)",
    )


def add_probe_opts(p: argparse.ArgumentParser) -> None:
    """Options of the linear probe (head training, validation split, feature cache, pooling)."""
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
