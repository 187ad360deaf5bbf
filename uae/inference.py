"""Inference helpers and the ``uae reconstruct`` / ``uae bands`` commands.

Images are read with PIL, converted to RGB, centre-cropped to a square and resized (bicubic,
antialiased) to the model's input size; this pre-processing is explicit here, the model itself never
resizes. Reconstructions come out at the model's output size.
"""

from __future__ import annotations

import argparse
import logging
import os
from collections.abc import Sequence
from pathlib import Path

import torch

from uae.cliargs import ArgumentParser, is_one_of, output_dir, output_file, positive_int
from uae.utils import check_device

logger = logging.getLogger(__name__)

DEFAULT_MODEL = "uae_demo"


def load_model(spec: str = DEFAULT_MODEL, device: str | torch.device = "cpu"):  # -> UAE
    """A model from a registered name (its trained weights), a local directory or a Hub repo id.

    Args:
        spec: ``uae models`` name (``create_model(name, pretrained=True)``), a directory written by
            ``save_pretrained``, or ``org/name`` on the Hub (the Hub cache when offline).
        device: Where to put the model.

    Returns:
        The model in eval mode.

    Raises:
        FileNotFoundError: Registered but not trained yet, or the directory / repo files are missing.
        ValueError: ``spec`` is none of the three.
    """
    import uae
    from uae.models.hub import is_repo_id
    from uae.models.registry import list_models

    if spec in list_models():
        model = uae.create_model(spec, pretrained=True)
    elif Path(spec).expanduser().is_dir() or is_repo_id(spec):
        model = uae.UAE.from_pretrained(spec)
    else:
        raise ValueError(
            f"unknown model {spec!r}: not a registered name (see `uae models`), an existing model directory, "
            "or a Hub repo id 'org/name'"
        )
    return model.to(device).eval()


def load_image(path: str | os.PathLike, size: int, out_size: int | None = None) -> dict[str, torch.Tensor]:
    """Read one image as the model's input (centre crop, bicubic resize).

    Args:
        path: Image file (any format PIL reads).
        size: Model input side.
        out_size: Also return the same crop at this side as ``"target"`` (defaults to ``size``).

    Returns:
        ``{"image": (3, size, size), "target": (3, out_size, out_size)}`` floats in ``[0, 1]``.

    Raises:
        FileNotFoundError: The file does not exist.
        ValueError: PIL cannot read it, or it exceeds the pixel budget (naming the file; see
            :mod:`uae.data.image_io`: 16-bit and float images are scaled to 8 bits, never clipped).
    """
    from uae.data.datasets import image_transform
    from uae.data.image_io import read_image

    im = read_image(path)
    out_size = out_size or size
    res = image_transform(size, train=False, out_size=out_size)(im)
    if isinstance(res, dict):
        return res
    return {"image": res, "target": res}


def load_images(
    paths: Sequence[str | os.PathLike], size: int, out_size: int | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Several images as a batch: ``(images (N, 3, size, size), targets (N, 3, out, out))``.

    All files are checked before any work is done, so a bad file fails fast with its name.
    """
    items = [load_image(p, size, out_size) for p in paths]
    return torch.stack([i["image"] for i in items]), torch.stack([i["target"] for i in items])


def psnr(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-image PSNR in dB of ``(N, 3, H, W)`` tensors in ``[0, 1]`` -> ``(N,)``."""
    mse = (a.float() - b.float()).pow(2).flatten(1).mean(1).clamp_min(1e-12)
    return 10.0 * torch.log10(1.0 / mse)


@torch.no_grad()
def reconstruct(model, images: torch.Tensor, batch_size: int = 16) -> torch.Tensor:
    """Reconstruct ``(N, 3, H, W)`` images in batches -> ``(N, 3, H', W')`` in ``[0, 1]``."""
    device = next(model.parameters()).device
    outs = [
        model(images[i : i + batch_size].to(device)).sample.cpu() for i in range(0, len(images), batch_size)
    ]
    return torch.cat(outs)


def bicubic_round_trip(images: torch.Tensor, side: int) -> torch.Tensor:
    """Bicubic down-sampling to ``side x side`` (antialiased) and back up to the input size, clamped to ``[0, 1]``."""
    h, w = images.shape[-2:]
    small = torch.nn.functional.interpolate(
        images.float(), size=(side, side), mode="bicubic", antialias=True, align_corners=False
    )
    return torch.nn.functional.interpolate(small, size=(h, w), mode="bicubic", align_corners=False).clamp(
        0, 1
    )


@torch.no_grad()
def compare_with_bicubic(model, images: torch.Tensor, batch_size: int = 16) -> dict[str, dict[str, float]]:
    """PSNR / SSIM of the model's reconstructions and of two bicubic baselines of the same "latent size".

    * ``"bicubic_grid"``: down to the latent grid side ``h`` (``3*h*w`` values: as many pixels as
      latent positions);
    * ``"bicubic_equal_values"``: down to the side ``s = floor(sqrt(C*h*w / 3))`` whose RGB image holds
      about as many values as the latent ``C*h*w`` (floats vs 8-bit pixels are not counted).

    Args:
        model: A :class:`uae.UAE` in eval mode whose output size equals its input size.
        images: ``(N, 3, H, W)`` in ``[0, 1]`` at the model's input size.
        batch_size: Reconstruction batch size.

    Returns:
        ``{name: {"psnr": dB, "ssim": value, "side": s}}`` averaged over the images (``side`` only for
        the baselines), plus ``"uae"``.

    Raises:
        ValueError: Output and input sizes differ (the baselines would not be comparable).
    """
    from torchmetrics.functional import structural_similarity_index_measure as ssim

    c = model.config
    if c.output_size != images.shape[-1]:
        raise ValueError(
            f"compare_with_bicubic needs output size == input size, got {c.output_size} vs {images.shape[-1]}"
        )
    images = images.float()
    recon = reconstruct(model, images, batch_size)
    sides = {
        "bicubic_grid": c.grid_size,
        "bicubic_equal_values": int((c.latent_dim * c.grid_size**2 / 3) ** 0.5),
    }
    out: dict[str, dict[str, float]] = {}
    for name, pred, side in [("uae", recon, None)] + [
        (k, bicubic_round_trip(images, s), s) for k, s in sides.items()
    ]:
        row = {"psnr": float(psnr(pred, images).mean()), "ssim": float(ssim(pred, images, data_range=1.0))}
        if side is not None:
            row["side"] = side
        out[name] = row
    return out


def _common_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("images", nargs="+", metavar="IMG", help="image files")
    parser.add_argument(
        "--model",
        default=DEFAULT_MODEL,
        help=f"registered name, model directory or Hub repo id (default: {DEFAULT_MODEL}, the embedded demo)",
    )
    parser.add_argument("--device", default="cpu", help="torch device (default: cpu)")


def _check_paths(paths: Sequence[str]) -> None:
    for p in paths:
        if not Path(p).is_file():
            raise FileNotFoundError(f"image not found: {p}")


def _free_name(out: Path, stem: str, used: set[str], inputs: Sequence[str]) -> str:
    """``stem``, or ``stem_2``, ``stem_3``...: a ``.png`` name in ``out`` not used yet and not an input file."""
    name, n = stem, 1
    while name in used or is_one_of(out / f"{name}.png", inputs):
        n += 1
        name = f"{stem}_{n}"
    used.add(name)
    return name


def reconstruct_main(argv: Sequence[str]) -> int:
    """``uae reconstruct IMG... [--model M] [--out DIR]``: write reconstructions and a band picture."""
    parser = ArgumentParser(
        prog="uae reconstruct",
        description="Reconstruct images with a UAE: writes DIR/<name>.png per input (at the model's output size) "
        "and DIR/bands.png (progressive decodes from bands 0..k and band energies).",
    )
    _common_args(parser)
    parser.add_argument(
        "--out", default="reconstructions", help="output directory (default: ./reconstructions)"
    )
    parser.add_argument("--no-bands", action="store_true", help="do not write the band picture")
    parser.add_argument(
        "--max-band-rows", type=positive_int, default=6, help="images shown in the band picture (default 6)"
    )
    parser.add_argument("--batch-size", type=positive_int, default=16)
    args = parser.parse_args(list(argv))

    from uae.visualize import save_band_figure, save_image

    _check_paths(args.images)
    out = output_dir(args.out)
    check_device(args.device)
    model = load_model(args.model, args.device)
    c = model.config
    images, targets = load_images(args.images, c.img_size, c.output_size)
    recon = reconstruct(model, images, args.batch_size)
    scores = psnr(recon, targets)
    out.mkdir(parents=True, exist_ok=True)
    used: set[str] = set()
    for path, img, score in zip(args.images, recon, scores):
        name = _free_name(out, Path(path).stem, used, args.images)
        dest = save_image(img, out / f"{name}.png")
        print(f"{path} -> {dest}  (PSNR {float(score):.2f} dB vs the {c.output_size}px input crop)")
    if not args.no_bands:
        rows = args.max_band_rows
        titles = [Path(p).name for p in args.images[:rows]]
        name = _free_name(out, "bands", used, args.images)
        dest = save_band_figure(model, images[:rows].to(args.device), out / f"{name}.png", titles=titles)
        print(f"band picture -> {dest}")
    print(
        f"mean PSNR {float(scores.mean()):.2f} dB over {len(scores)} image(s) with {c.name} (K={c.num_bands})"
    )
    return 0


def bands_main(argv: Sequence[str]) -> int:
    """``uae bands IMG... [--model M] [--out FILE.png]``: one picture of progressive band decodes and band energies."""
    parser = ArgumentParser(
        prog="uae bands",
        description="Picture of progressive decodes from bands 0..k (band 0 = the semantic, lowest-frequency band) "
        "and each band's share of the latent energy, one row per image.",
    )
    _common_args(parser)
    parser.add_argument(
        "--out", default="bands.png", help="output PNG (default: ./bands.png; never one of the inputs)"
    )
    args = parser.parse_args(list(argv))

    from uae.files import atomic_write
    from uae.visualize import band_figure, pil_format, progressive_decodes

    _check_paths(args.images)
    dest = output_file(args.out, "--out", inputs=args.images)
    check_device(args.device)
    model = load_model(args.model, args.device)
    images, _ = load_images(args.images, model.config.img_size)
    images = images.to(args.device)
    decodes, energy = progressive_decodes(model, images)
    figure = band_figure(images, decodes, energy, titles=[Path(p).name for p in args.images])
    with atomic_write(dest) as tmp:
        figure.save(tmp, format=pil_format(dest))
    for path, e in zip(args.images, energy):
        print(f"{path}: band energy " + " ".join(f"{float(v):.3f}" for v in e))
    print(f"band picture -> {dest}")
    return 0
