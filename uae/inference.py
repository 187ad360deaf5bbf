"""Inference helpers: reading images as the model's input, batched reconstruction, PSNR, bicubic
baselines, and reconstructing image files (``uae reconstruct``).

Images are read with PIL, converted to RGB and prepared the way the model is evaluated: its data
config (``model.pretrained_cfg``, :func:`uae.data.resolve_data_config`) says how (uae's centre crop and
antialiased bicubic resize, or a converted release's own crop and resize); this pre-processing is
explicit here, the model itself never resizes. Reconstructions come out at the model's output size. The band explorer (``uae bands``,
``uae app``) is in :mod:`uae.explorer`.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from uae.data.transforms import resolve_data_config
from uae.errors import InputError, MissingFileError
from uae.factory import load_model
from uae.paths import is_one_of, output_dir
from uae.utils import check_device

if TYPE_CHECKING:  # pragma: no cover
    from uae.models.uae import UAE

logger = logging.getLogger(__name__)


def load_image(
    path: str | os.PathLike,
    size: int | None = None,
    out_size: int | None = None,
    *,
    data_config: Mapping[str, Any] | None = None,
) -> dict[str, torch.Tensor]:
    """Read one image as a model's input, the way the model is evaluated.

    Args:
        path: Image file (any format PIL reads).
        size: Model input side (uae's centre crop and bicubic resize); with ``data_config``, an
            override of its input side.
        out_size: Also return the same crop at this side as ``"target"`` (defaults to the input side,
            or the data config's ``target_size``).
        data_config: The model's data config (``uae.data.resolve_data_config(model)``): a converted
            release is read with its own evaluation crop and resize (:mod:`uae.data.transforms`).

    Returns:
        ``{"image": (3, size, size), "target": (3, out_size, out_size)}`` floats in ``[0, 1]`` (the
        image may overshoot ``[0, 1]`` slightly after a release's bicubic resize, as theirs does).

    Raises:
        MissingFileError: The file does not exist.
        InputError: PIL cannot read it, it exceeds the pixel budget (naming the file; see
            :mod:`uae.data.image_io`: 16-bit and float images are scaled to 8 bits, never clipped), or
            neither ``size`` nor ``data_config`` is given.
    """
    from uae.data.image_io import read_image
    from uae.data.transforms import create_transform, image_transform

    if data_config is None and size is None:
        raise InputError("load_image needs size or data_config (e.g. the model's)", param="size")
    im = read_image(path)
    if data_config is not None:
        res = create_transform(data_config, img_size=size, target_size=out_size)(im)
    else:
        res = image_transform(size, train=False, out_size=out_size or size)(im)
    if isinstance(res, dict):
        return res
    return {"image": res, "target": res}


def load_images(
    paths: Sequence[str | os.PathLike],
    size: int | None = None,
    out_size: int | None = None,
    *,
    data_config: Mapping[str, Any] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Several images as a batch: ``(images (N, 3, size, size), targets (N, 3, out, out))`` (see :func:`load_image`).

    All files are checked before any work is done, so a bad file fails fast with its name.
    """
    items = [load_image(p, size, out_size, data_config=data_config) for p in paths]
    return torch.stack([i["image"] for i in items]), torch.stack([i["target"] for i in items])


#: Highest PSNR reported (dB): identical images give this instead of infinity (an MSE floor of 1e-12).
MAX_PSNR = 120.0


def psnr(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-image PSNR in dB of ``(N, 3, H, W)`` tensors in ``[0, 1]`` -> ``(N,)``: ``-10 log10(MSE)``.

    torchmetrics' ``peak_signal_noise_ratio(data_range=1, reduction="none", dim=(1, 2, 3))``, computed
    here because importing torchmetrics takes seconds (it imports matplotlib and scipy). Identical
    images give :data:`MAX_PSNR` rather than infinity.
    """
    diff = a.float() - b.float()
    mse = (diff * diff).sum(dim=(1, 2, 3)) / diff[0].numel()
    return (-10.0 * torch.log10(mse)).clamp(max=MAX_PSNR)


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
        InputError: Output and input sizes differ (the baselines would not be comparable).
    """
    from torchmetrics.functional import structural_similarity_index_measure as ssim

    c = model.config
    if c.output_size != images.shape[-1]:
        raise InputError(
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


def check_image_files(paths: Sequence[str | os.PathLike]) -> None:
    """Fail fast, naming the file, when one of ``paths`` does not exist.

    Raises:
        MissingFileError: A path is not a file.
    """
    for p in paths:
        if not Path(p).is_file():
            raise MissingFileError(f"image not found: {p}")


def as_model(model: str | os.PathLike | UAE, device: str | torch.device = "cpu") -> UAE:
    """``model`` itself (moved to ``device``, eval mode), or :func:`uae.factory.load_model` of a name, folder
    or repo id.

    Raises:
        InputError: ``device`` is not a device of this machine.
    """
    dev = check_device(device)
    if isinstance(model, str | os.PathLike):
        return load_model(str(model), device=dev)
    return model.to(dev).eval()


def _free_name(out: Path, stem: str, used: set[str], inputs: Sequence[str | os.PathLike]) -> str:
    """``stem``, or ``stem_2``, ``stem_3``...: a ``.png`` name in ``out`` not used yet and not an input file."""
    name, n = stem, 1
    while name in used or is_one_of(out / f"{name}.png", inputs):
        n += 1
        name = f"{stem}_{n}"
    used.add(name)
    return name


@dataclass
class SavedReconstruction:
    """One reconstructed file: the input as given, the PNG written, its PSNR against the input crop."""

    source: str
    path: Path
    psnr: float


@dataclass
class ReconstructedFiles:
    """What :func:`reconstruct_files` wrote.

    Attributes:
        images: One entry per input, in order.
        band_picture: The band picture, when asked for.
        mean_psnr: Mean PSNR (dB) over the images.
        model_name: The model's config name.
        num_bands: ``K``.
        output_size: Side of the reconstructions (the PSNR reference is the input crop at this side).
    """

    images: list[SavedReconstruction]
    band_picture: Path | None
    mean_psnr: float
    model_name: str
    num_bands: int
    output_size: int


def reconstruct_files(
    paths: Sequence[str | os.PathLike],
    *,
    model: str | UAE = "uae_demo",
    out_dir: str | os.PathLike = "reconstructions",
    band_picture: bool = True,
    max_band_rows: int = 6,
    batch_size: int = 16,
    device: str | torch.device = "cpu",
) -> ReconstructedFiles:
    """Reconstruct image files into ``out_dir/<name>.png`` and draw their progressive band decodes.

    Inputs are never overwritten: a name already used (or an input file) gets ``_2``, ``_3``, ...

    Args:
        paths: Image files.
        model: A :class:`uae.UAE`, or a registered name, model directory or Hub repo id.
        out_dir: Output folder (created).
        band_picture: Also write ``bands.png`` (progressive decodes from bands 0..k and band energies,
            drawn with PIL: :func:`uae.visualize.band_strip`; ``uae bands`` draws the matplotlib chart).
        max_band_rows: Images shown in the band picture.
        batch_size: Reconstruction batch size.
        device: Torch device.

    Returns:
        The files written and their PSNRs.

    Raises:
        MissingFileError: An input does not exist.
        InputError: ``out_dir`` is a file, an input is not a readable image, or ``device`` does not exist.
    """
    from uae.visualize import save_band_figure, save_image

    for name, value in (("batch_size", batch_size), ("max_band_rows", max_band_rows)):
        if value < 1:
            raise InputError(f"{name} must be >= 1, got {value}", param=name)
    paths = [str(p) for p in paths]
    check_image_files(paths)
    out = output_dir(out_dir, param="out_dir")
    net = as_model(model, device)
    c = net.config
    images, targets = load_images(paths, data_config=resolve_data_config(net))
    recon = reconstruct(net, images, batch_size)
    scores = psnr(recon, targets)
    out.mkdir(parents=True, exist_ok=True)
    used: set[str] = set()
    saved = []
    for path, img, score in zip(paths, recon, scores):
        name = _free_name(out, Path(path).stem, used, paths)
        saved.append(SavedReconstruction(path, save_image(img, out / f"{name}.png"), float(score)))
    picture = None
    if band_picture:
        titles = [Path(p).name for p in paths[:max_band_rows]]
        name = _free_name(out, "bands", used, paths)
        dev = next(net.parameters()).device
        picture = save_band_figure(
            net, images[:max_band_rows].to(dev), out / f"{name}.png", titles=titles, chart=False
        )
    return ReconstructedFiles(saved, picture, float(scores.mean()), c.name, c.num_bands, c.output_size)
