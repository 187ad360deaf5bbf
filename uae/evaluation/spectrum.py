"""Radial power spectra of latent grids and the share of energy per UAE band (the Prism Hypothesis as a tool).

For each encoder (the UAE's unified encoder, its semantic teacher, a pixel autoencoder such as
diffusers' ``AutoencoderKL``) the latent grids of a folder of images are Fourier transformed
(orthonormal 2-D FFT over ``(h, w)``), the power ``|Z|^2`` is averaged over channels and images in
radial bins of normalised frequency ``rho`` (1 = Nyquist along an axis, corners up to sqrt(2)), and the
energy is split with the UAE's band masks (``model.band_projector.band_energy``), giving one share per band
that sums to 1. Results go to a CSV and a PNG plot.
"""

from __future__ import annotations

import csv
import importlib.util
import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader

from uae.errors import InputError, MissingFileError
from uae.evaluation.common import batch_images, iterate, match_size
from uae.layers.spectral import radial_bins, radial_power, relative_power
from uae.utils import maybe_autocast
from uae.visualize import draw_band_energy, draw_radial_spectrum, figure_to_pil, new_figure, save_image

logger = logging.getLogger(__name__)


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
        share = (bin_power / bin_power.sum(1, keepdim=True).clamp_min(1e-30)).double().sum(0).cpu()
        rel = relative_power(bin_power, count).double().sum(0).cpu()  # white noise = 1
        if self._share_sum is None:
            self._share_sum, self._power_sum = share, rel
            self._rho, self._count = rho.cpu(), count.cpu()
            self.latent_shape = tuple(z.shape[1:])
        else:
            if tuple(z.shape[1:]) != self.latent_shape:
                raise InputError(
                    f"{self.name}: latent shape changed from {self.latent_shape} to {tuple(z.shape[1:])}",
                    param="z",
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
            raise InputError(f"{self.name}: no latents were accumulated (call update first)")
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
    from uae.layers.encoder import read_state_dict
    from uae.models.dinov2 import resolve_dinov2_weights

    source = weights if weights is not None else model.config.encoder_weights
    if not source:
        raise MissingFileError(
            "the teacher needs a DINOv2 checkpoint: pass teacher_weights=PATH (a file or a timm Hub id)",
            param="teacher_weights",
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
    try:
        vae = AutoencoderKL.from_pretrained(source).eval().to(device)
    except OSError as e:  # not a folder with config.json, and not in the Hub cache (or no network)
        raise MissingFileError(
            f"the AutoencoderKL {source!r} is not available here (a folder with config.json, or a Hub repo "
            f"in the Hub cache or reachable): {str(e).splitlines()[0]}",
            param="vae",
        ) from e
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
        raise InputError(
            f"none of the images could be read ({len(skip_log.skipped)} skipped)", param="loader"
        )
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
    skip_unavailable: bool = False,
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
        skip_unavailable: Leave out an encoder whose weights or library are not available here (the
            teacher without DINOv2 weights, the VAE without diffusers or its files) and say why in
            ``"skipped"``, instead of raising; the others are still measured.

    Returns:
        ``{"data", "num_bands", "encoders": [one SpectrumAccumulator.result per encoder], "images",
        "skipped": {encoder: reason}}``.

    Raises:
        InputError: ``"vae"`` without ``vae``, or an unknown encoder name.
        MissingFileError: An encoder's weights or library are missing (without ``skip_unavailable``, or
            when every encoder is missing).
    """
    from uae.data.datasets import SkipLog
    from uae.evaluation.common import images_summary, make_loader, model_device, open_dataset
    from uae.evaluation.options import RunOptions

    options = options or RunOptions()
    device = model_device(model)
    built = []
    skipped: dict[str, str] = {}
    for name in encoders:
        if name not in ("uae", "teacher", "vae"):
            raise InputError(f"encoders: unknown {name!r}; choose from uae, teacher, vae", param="encoders")
        if name == "vae" and not vae:
            raise InputError(
                "encoders 'vae' needs vae, a diffusers AutoencoderKL directory or Hub id", param="vae"
            )
        try:
            if name == "uae":
                built.append(uae_encoder(model))
            elif name == "teacher":
                built.append(teacher_encoder(model, teacher_weights))
            else:
                if skip_unavailable and importlib.util.find_spec("diffusers") is None:
                    raise MissingFileError("the AutoencoderKL needs diffusers: pip install 'uae[peers]'")
                built.append(autoencoderkl_encoder(vae, size=vae_size, device=device))
        except MissingFileError as e:
            if not skip_unavailable:
                raise
            skipped[name] = str(e).splitlines()[0]
            logger.debug("spectrum: %s skipped: %s", name, skipped[name])  # the caller reports it
    if not built:
        raise MissingFileError(f"no encoder could be built: {skipped}", param="encoders")
    size = max(e.size for e in built)
    ds, _ = open_dataset(data, size, options=options, labels=False, uint8=device.type == "cuda")
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
        "skipped": skipped,
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
    """Plot the radial spectra (log scale) and the per-band energy shares side by side as a PNG.

    Args:
        results: :func:`compute_spectra`'s results.
        path: Output file.
        title: Title over both charts.

    Returns:
        The written path.
    """
    fig = new_figure(11, 4, dpi=120)
    ax1, ax2 = fig.subplots(1, 2)
    draw_radial_spectrum(ax1, {r["encoder"]: (r["rho"], r["relative_power"]) for r in results}, fontsize=10)
    ax1.set_title("radial power spectrum of the latent")
    with_bands = [r for r in results if "band_share" in r]
    if with_bands:
        draw_band_energy(ax2, {r["encoder"]: r["band_share"] for r in with_bands}, fontsize=10)
        ax2.set_title("energy per band")
    else:
        ax2.axis("off")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return save_image(figure_to_pil(fig), path)


__all__ = [
    "LatentEncoder",
    "SpectrumAccumulator",
    "autoencoderkl_encoder",
    "compute_spectra",
    "plot_spectra",
    "radial_bins",
    "radial_power",
    "teacher_encoder",
    "uae_encoder",
    "write_spectrum_csv",
]
