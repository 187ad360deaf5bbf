"""Radial power spectra of latent grids and the share of energy per UAE band (the Prism Hypothesis as a tool).

For each encoder (the UAE's unified encoder, its semantic teacher, a pixel autoencoder such as
diffusers' ``AutoencoderKL``) the latent grids of a folder of images are Fourier transformed
(orthonormal 2-D FFT over ``(h, w)``), the power ``|Z|^2`` is averaged over channels and images in
radial bins of normalised frequency ``rho`` (1 = Nyquist along an axis, corners up to sqrt(2)), and the
energy is split with the UAE's band masks (``BandProjector.band_energy``), giving one share per band
that sums to 1. Results go to a CSV and a PNG plot.
"""

from __future__ import annotations

import csv
import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from uae.evaluation.common import batch_images, iterate, match_size
from uae.utils import maybe_autocast

logger = logging.getLogger(__name__)


def radial_bins(
    height: int, width: int, device: torch.device | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Integer radial bin of every full-FFT coefficient of an ``H x W`` grid and the bins' ``rho``.

    Bin ``i`` holds coefficients with normalised radius in ``[(i - 0.5) d, (i + 0.5) d)`` where
    ``d = 2 / max(H, W)`` is one frequency step (in units of the Nyquist frequency).

    Returns:
        ``(bin_index (H, W) long, rho_centers (R,))``.
    """
    fy = torch.fft.fftfreq(height, device=device) * 2.0
    fx = torch.fft.fftfreq(width, device=device) * 2.0
    rho = torch.sqrt(fy[:, None] ** 2 + fx[None, :] ** 2)
    step = 2.0 / max(height, width)
    idx = torch.round(rho / step).long()
    centers = torch.arange(int(idx.max()) + 1, device=device, dtype=torch.float32) * step
    return idx, centers


def radial_power(z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-image radial power spectrum of latent grids.

    Args:
        z: ``(B, C, H, W)``.

    Returns:
        ``(bin_power (B, R), bin_count (R,), rho (R,))``: summed power ``|Z|^2`` (orthonormal FFT,
        summed over channels) of the coefficients in each radial bin, the number of coefficients per
        bin, and the bins' normalised frequency. ``bin_power.sum(1)`` equals ``(z ** 2).sum((1, 2, 3))``
        (Parseval).
    """
    if z.ndim != 4:
        raise ValueError(f"expected a latent grid (B, C, H, W), got {tuple(z.shape)}")
    z = z.float()
    power = torch.fft.fft2(z, norm="ortho").abs().pow(2).sum(1)  # (B, H, W)
    idx, rho = radial_bins(z.shape[-2], z.shape[-1], z.device)
    r = len(rho)
    flat = idx.flatten()
    bin_power = torch.zeros(z.shape[0], r, device=z.device).index_add_(1, flat, power.flatten(1))
    count = torch.bincount(flat, minlength=r).float()
    return bin_power, count, rho


@dataclass
class SpectrumAccumulator:
    """Average radial spectra and band-energy shares over batches of one encoder's latents.

    Args:
        name: Encoder label.
        band_energy: ``z (B, C, h, w) -> (B, K)`` energy shares (e.g. ``model.band_projector.band_energy``).
    """

    name: str
    band_energy: Callable[[torch.Tensor], torch.Tensor] | None = None
    n: int = 0
    latent_shape: tuple[int, ...] = ()
    _share_sum: torch.Tensor | None = None  # sum over images of per-image bin energy shares (R,)
    _power_sum: torch.Tensor | None = None  # sum over images of per-coefficient mean power (R,)
    _band_sum: torch.Tensor | None = None  # (K,)
    _rho: torch.Tensor | None = None
    _count: torch.Tensor | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @torch.no_grad()
    def update(self, z: torch.Tensor) -> None:
        """Add latents ``(B, C, h, w)``."""
        bin_power, count, rho = radial_power(z)
        total = bin_power.sum(1, keepdim=True).clamp_min(1e-30)
        share = (bin_power / total).double().sum(0).cpu()
        # Mean power per coefficient, relative to the image's mean power per coefficient (white noise = 1).
        rel = (bin_power / count / (total / count.sum())).double().sum(0).cpu()
        if self._share_sum is None:
            self._share_sum, self._power_sum = share, rel
            self._rho, self._count = rho.cpu(), count.cpu()
            self.latent_shape = tuple(z.shape[1:])
        else:
            if tuple(z.shape[1:]) != self.latent_shape:
                from uae.errors import InputError

                raise InputError(
                    f"{self.name}: latent shape changed from {self.latent_shape} to {tuple(z.shape[1:])}"
                )
            self._share_sum += share
            self._power_sum += rel
        if self.band_energy is not None:
            b = self.band_energy(z.float()).double().sum(0).cpu()
            self._band_sum = b if self._band_sum is None else self._band_sum + b
        self.n += z.shape[0]

    def result(self) -> dict[str, Any]:
        """``rho``, ``energy_share`` (per radial bin, sums to 1), ``relative_power`` (white noise = 1),
        ``band_share`` (per UAE band, sums to 1), ``num_images`` and ``latent_shape``."""
        if self.n == 0 or self._share_sum is None or self._power_sum is None or self._rho is None:
            from uae.errors import InputError

            raise InputError(f"{self.name}: no latents were accumulated")
        out: dict[str, Any] = {
            "encoder": self.name,
            "num_images": self.n,
            "latent_shape": list(self.latent_shape),
            "rho": self._rho.tolist(),
            "energy_share": (self._share_sum / self.n).tolist(),
            "relative_power": (self._power_sum / self.n).tolist(),
            "coefficients": self._count.tolist() if self._count is not None else [],
        }
        if self._band_sum is not None:
            out["band_share"] = (self._band_sum / self.n).tolist()
        out.update(self.extra)
        return out


@dataclass
class LatentEncoder:
    """A named function from ``[0, 1]`` images to a latent grid, with its input side.

    Attributes:
        name: Label in the CSV / plot.
        fn: ``(B, 3, size, size) in [0, 1] -> (B, C, h, w)``.
        size: Input side the images are resized to.
    """

    name: str
    fn: Callable[[torch.Tensor], torch.Tensor]
    size: int


def uae_encoder(model: nn.Module, name: str = "uae") -> LatentEncoder:
    """The UAE's unified encoder latent (``model.encode(x).latent``)."""
    return LatentEncoder(name, lambda x: model.encode(x).latent, model.config.img_size)


def teacher_encoder(
    model: nn.Module, weights: str | os.PathLike | None = None, name: str = "teacher"
) -> LatentEncoder:
    """The semantic teacher: a copy of the UAE encoder re-initialised from the DINOv2 weights.

    Args:
        model: The UAE (gives the encoder architecture and pixel normalisation).
        weights: DINOv2 weights (file or timm Hub id); default ``model.config.encoder_weights``.

    Raises:
        MissingFileError: The DINOv2 weights are not available (message names the file).
    """
    from uae.errors import MissingFileError
    from uae.layers.encoder import read_state_dict
    from uae.models.dinov2 import resolve_dinov2_weights

    source = weights if weights is not None else model.config.encoder_weights
    if not source:
        raise MissingFileError(
            "the teacher needs DINOv2 weights: pass teacher_weights", param="teacher_weights"
        )
    teacher = model.encoder.frozen_copy()
    teacher.load_dinov2_state_dict(read_state_dict(resolve_dinov2_weights(str(source))))
    return LatentEncoder(name, lambda x: teacher(model.normalize(x)), model.config.img_size)


def autoencoderkl_encoder(
    source: str, size: int = 256, device: str | torch.device = "cpu", name: str | None = None
) -> LatentEncoder:
    """A diffusers ``AutoencoderKL`` (SD-VAE, FLUX-VAE, ...): the posterior mean of ``encode(2x - 1)``.

    Raises:
        InputError: diffusers is not installed (``pip install diffusers`` / the ``peers`` extra).
    """
    from uae.errors import InputError

    try:
        from diffusers import AutoencoderKL
    except ImportError as e:
        raise InputError(
            "the AutoencoderKL encoder needs diffusers: pip install 'uae[peers]' (or diffusers)"
        ) from e
    vae = AutoencoderKL.from_pretrained(source).eval().to(device)
    vae.requires_grad_(False)
    return LatentEncoder(
        name or f"autoencoderkl:{Path(source).name}",
        lambda x: vae.encode(x * 2.0 - 1.0).latent_dist.mean,
        size,
    )


@torch.no_grad()
def compute_spectra(
    encoders: list[LatentEncoder],
    loader: DataLoader,
    band_energy: Callable[[torch.Tensor], torch.Tensor] | None = None,
    device: str | torch.device = "cpu",
    amp: bool = True,
    progress: bool = True,
    skip_log: Any = None,
) -> list[dict[str, Any]]:
    """Average radial spectra and band shares of several encoders over one pass of a loader.

    Args:
        encoders: The encoders to compare.
        loader: Dict batches with ``"image"``.
        band_energy: The UAE band split's energy function (applied to every encoder's latents).
        device: Device.
        amp: Autocast on CUDA (the FFT always runs in float32).
        progress: tqdm bar.
        skip_log: A :class:`uae.data.datasets.SkipLog` that counts the images used and skipped
            (batches of unreadable files only are passed over).

    Returns:
        One :meth:`SpectrumAccumulator.result` per encoder.
    """
    from uae.data.datasets import SkipLog

    device = torch.device(device)
    skip_log = skip_log if skip_log is not None else SkipLog()
    accs = [SpectrumAccumulator(e.name, band_energy=band_energy) for e in encoders]
    for batch in iterate(loader, "spectrum", progress):
        if not skip_log.update(batch):
            continue
        x, _ = batch_images(batch, device)
        for enc, acc in zip(encoders, accs):
            with maybe_autocast(device, enabled=amp):
                z = enc.fn(match_size(x, enc.size))
            acc.update(z.float())
    if skip_log.used == 0:
        from uae.errors import InputError

        raise InputError(f"none of the images could be read ({len(skip_log.skipped)} skipped)")
    return [a.result() for a in accs]


def latent_spectra(
    model: nn.Module,
    data: str,
    *,
    encoders: Sequence[str] = ("uae",),
    teacher_weights: str | os.PathLike | None = None,
    vae: str | None = None,
    vae_size: int = 256,
    options: Any = None,  # RunOptions (imported in the body)
) -> dict[str, Any]:
    """Radial power spectra of the latents of a dataset and each band's share of their energy.

    Args:
        model: A :class:`uae.UAE` (its band split measures every encoder's latents).
        data: An image folder or a named dataset (``options.data_root``).
        encoders: Any of ``"uae"`` (the unified encoder), ``"teacher"`` (the DINOv2 initialisation),
            ``"vae"`` (a diffusers ``AutoencoderKL``, needs ``vae``).
        teacher_weights: DINOv2 weights of the teacher (default: the config's).
        vae: ``AutoencoderKL`` directory or Hub id (e.g. ``stabilityai/sd-vae-ft-mse``).
        vae_size: Input side of the VAE.
        options: A :class:`uae.evaluation.options.RunOptions` (default: its defaults).

    Returns:
        ``{"data", "num_bands", "encoders": [one SpectrumAccumulator.result per encoder], "images"}``.

    Raises:
        InputError: ``"vae"`` without ``vae``, or an unknown encoder name.
    """
    from uae.data.datasets import SkipLog
    from uae.errors import InputError
    from uae.evaluation.common import images_summary, make_loader, model_device, open_dataset
    from uae.evaluation.options import RunOptions

    options = options or RunOptions()
    device = model_device(model)
    built = []
    for name in encoders:
        if name == "uae":
            built.append(uae_encoder(model))
        elif name == "teacher":
            built.append(teacher_encoder(model, teacher_weights))
        elif name == "vae":
            if not vae:
                raise InputError(
                    "encoders 'vae' needs vae, a diffusers AutoencoderKL directory or Hub id", param="vae"
                )
            built.append(autoencoderkl_encoder(vae, size=vae_size, device=device))
        else:
            raise InputError(f"encoders: unknown {name!r}; choose from uae, teacher, vae", param="encoders")
    size = max(e.size for e in built)
    ds, _ = open_dataset(data, size, options=options, labels=False)
    log = SkipLog()
    results = compute_spectra(
        built,
        make_loader(ds, options.batch_size, options.num_workers),
        band_energy=model.band_projector.band_energy,
        device=device,
        amp=options.amp,
        progress=options.progress,
        skip_log=log,
    )
    return {
        "data": data,
        "num_bands": model.config.num_bands,
        "encoders": results,
        "images": images_summary(log),
    }


def write_spectrum_csv(results: list[dict[str, Any]], out_dir: str | os.PathLike) -> tuple[Path, Path]:
    """``spectrum.csv`` (encoder, bin, rho, coefficients, energy_share, relative_power) and
    ``band_energy.csv`` (encoder, band, share)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    spec_path, band_path = out / "spectrum.csv", out / "band_energy.csv"
    with spec_path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["encoder", "bin", "rho", "coefficients", "energy_share", "relative_power"])
        for r in results:
            for i, (rho, c, s, p) in enumerate(
                zip(r["rho"], r["coefficients"], r["energy_share"], r["relative_power"])
            ):
                w.writerow([r["encoder"], i, f"{rho:.6f}", int(c), f"{s:.8f}", f"{p:.8f}"])
    with band_path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["encoder", "band", "share"])
        for r in results:
            for k, s in enumerate(r.get("band_share", [])):
                w.writerow([r["encoder"], k, f"{s:.8f}"])
    return spec_path, band_path


def plot_spectra(results: list[dict[str, Any]], path: str | os.PathLike, title: str = "") -> Path:
    """Plot the radial spectra (log scale) and the per-band energy shares side by side as a PNG."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    for r in results:
        ax1.semilogy(r["rho"], np.maximum(r["relative_power"], 1e-12), marker="o", ms=3, label=r["encoder"])
    ax1.axhline(1.0, color="gray", lw=0.8, ls="--", label="white noise")
    ax1.set_xlabel("radial frequency (1 = Nyquist)")
    ax1.set_ylabel("mean power per coefficient (relative)")
    ax1.set_title("radial power spectrum of the latent")
    ax1.legend(fontsize=8)
    with_bands = [r for r in results if "band_share" in r]
    if with_bands:
        from uae.visualize import draw_band_energy

        draw_band_energy(ax2, {r["encoder"]: r["band_share"] for r in with_bands}, fontsize=10)
        ax2.set_title("energy per band")
    else:
        ax2.axis("off")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
