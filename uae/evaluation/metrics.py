"""Streaming reconstruction metrics: PSNR, SSIM (torchmetrics), LPIPS (torchmetrics) and rFID (torch-fidelity).

Nothing holds a whole dataset, and the memory does not grow with the number of images: PSNR and SSIM
are computed per image and only their sum (float64) and count are kept (:class:`RunningMean`). The
values are torchmetrics' per-image PSNR and SSIM (:mod:`uae.evaluation.pixel_metrics`: SSIM about 12x
faster than torchmetrics' at 64 px, and ~1e-7 from a float64 computation where torchmetrics' float32
reaches 1e-5 on flat images). LPIPS is torchmetrics' (a sum and a
count), and rFID accumulates the first and second moments of the 2048-d Inception pool features in
float64 and turns them into the Frechet distance with torch-fidelity's own formula. (torchmetrics'
``PeakSignalNoiseRatio(dim=...)`` keeps a list entry per batch: +61 KiB of heap per image measured.)
All of it runs on the accumulator's device (the model's), without a host synchronisation per batch.

rFID uses torch-fidelity's **standard** ``inception-v3-compat`` network (the TF-FID Inception, the one
behind published FID numbers), *not* torchvision's ``inception_v3`` as in the authors' code, so our
numbers compare with torch-fidelity / RAE numbers but not with the authors' own rFID.

Pretrained weights the metrics need (Inception for rFID, the torchvision VGG/AlexNet/SqueezeNet
backbone for LPIPS) are looked up in the torch hub cache first; when they are missing and the machine
is offline (``HF_HUB_OFFLINE=1``, ``UAE_OFFLINE=1`` or no route to the download host, checked with a
2 s connection attempt) the metric is reported as unavailable with the file name and where to put
it, immediately, and the other metrics still run.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from uae import online
from uae.errors import InputError, MissingFileError
from uae.evaluation.pixel_metrics import (  # noqa: F401 - re-exported (uae.evaluation.metrics.<name>)
    CPU_CHUNK_ELEMENTS,
    full_precision,
    psnr_per_image,
    quantize,
    ssim_per_image,
    to_uint8,
)

logger = logging.getLogger(__name__)

#: torch-fidelity's Inception weights (file name in the torch hub cache).
INCEPTION_URL = "https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/weights-inception-2015-12-05-6726825d.pth"
INCEPTION_FILE = "weights-inception-2015-12-05-6726825d.pth"
#: pytorch-fid's file of the same TF-FID network; looked for in the cache too (loaded strictly by torch-fidelity,
#: so a file whose keys differ is reported as unavailable with the reason).
INCEPTION_FILE_ALT = "pt_inception-2015-12-05-6726825d.pth"
#: How every rFID result describes its feature network.
RFID_NOTE = (
    "rFID: torch-fidelity's standard inception-v3-compat (TF-FID Inception, 2048-d pool features), "
    "not torchvision's inception_v3 as in the authors' code"
)
LPIPS_NETS = {"vgg": "VGG16_Weights", "alex": "AlexNet_Weights", "squeeze": "SqueezeNet1_1_Weights"}


class MetricUnavailable(RuntimeError):
    """A metric cannot run (missing pretrained weights offline); the message says how to fix it."""


def hub_checkpoint_dir() -> Path:
    """``$TORCH_HOME/hub/checkpoints`` (where torch and torch-fidelity cache downloaded weights)."""
    return Path(torch.hub.get_dir()) / "checkpoints"


def resolve_inception_weights(path: str | os.PathLike | None = None, allow_download: bool = True) -> Path:
    """Path of the FID Inception weights.

    Args:
        path: An explicit file (the ``inception_weights`` of :class:`ReconstructionMetrics`); must exist.
        allow_download: Download into the torch hub cache when missing and the network is reachable.

    Returns:
        The weights file.

    Raises:
        MissingFileError: ``path`` was given and does not exist.
        MetricUnavailable: Not cached and cannot be downloaded (the reason names the file and folder).
    """
    if path is not None:
        p = Path(path).expanduser()
        if not p.is_file():
            raise MissingFileError(f"inception_weights {str(p)!r} does not exist", param="inception_weights")
        return p
    cache = hub_checkpoint_dir()
    for name in (INCEPTION_FILE, INCEPTION_FILE_ALT):
        if (cache / name).is_file():
            return cache / name
    hint = (
        f"Inception weights for rFID not found: put {INCEPTION_FILE} (torch-fidelity's name; pytorch-fid's "
        f"{INCEPTION_FILE_ALT} is looked for too) into {cache} or pass inception_weights=PATH "
        f"(download: {INCEPTION_URL})"
    )
    if not allow_download:
        raise MetricUnavailable(hint + "; downloads disabled")
    if not online.may_download(INCEPTION_URL):
        raise MetricUnavailable(hint + "; offline")
    cache.mkdir(parents=True, exist_ok=True)
    try:
        torch.hub.download_url_to_file(INCEPTION_URL, str(cache / INCEPTION_FILE), progress=False)
    except Exception as e:  # noqa: BLE001 - any download failure makes the metric unavailable
        raise MetricUnavailable(f"{hint}; download failed: {e}") from e
    return cache / INCEPTION_FILE


def resolve_lpips_backbone(net: str = "vgg", allow_download: bool = True) -> None:
    """Check that torchvision's pretrained backbone for LPIPS is cached (or downloadable).

    The LPIPS linear heads ship inside torchmetrics; only the backbone comes from the network. The file is
    found by :func:`uae.networks.lpips.find_lpips_backbone`, the resolver the training loss uses too.

    Raises:
        ValueError: Unknown ``net`` (an :class:`uae.errors.InputError` naming ``lpips_net``).
        MetricUnavailable: Not cached and cannot be downloaded (the reason names the file and folder).
    """
    from uae.networks.lpips import find_lpips_backbone

    try:
        find_lpips_backbone(net, allow_download=allow_download)
    except MissingFileError as e:
        raise MetricUnavailable(f"{e}; {'offline' if allow_download else 'downloads disabled'}") from e


class InceptionFeatures(nn.Module):
    """torch-fidelity's ``inception-v3-compat`` 2048-d pool features of ``[0, 1]`` images.

    Args:
        weights_path: The Inception weights file (see :func:`resolve_inception_weights`). uae reads it
            with ``torch.load(weights_only=True)`` and hands torch-fidelity only the tensors it read
            (:func:`uae.networks.inception.fidelity_inception`).

    Raises:
        UnsafeFileError: The file holds pickled code (refused; nothing runs).
        MetricUnavailable: The file is damaged or does not fit torch-fidelity's network.
    """

    def __init__(self, weights_path: str | os.PathLike) -> None:
        super().__init__()
        from uae.errors import DamagedFileError, UAELoadError
        from uae.networks.inception import fidelity_inception

        try:
            self.net = fidelity_inception(weights_path, ["2048"])
        except DamagedFileError as e:
            raise MetricUnavailable(f"cannot read Inception weights {str(weights_path)!r}: {e}") from e
        except UAELoadError as e:
            raise MetricUnavailable(str(e)) from e

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, 3, H, W)`` in ``[0, 1]`` -> ``(B, 2048)`` float64 features."""
        (feats,) = self.net(to_uint8(x))
        return feats.double()


def _sum_dtype(device: torch.device) -> torch.dtype:
    """float64 where the device has it (not Apple's MPS)."""
    return torch.float32 if device.type == "mps" else torch.float64


class RunningMean:
    """The mean of per-image values as a running sum and count on one device (constant memory).

    Args:
        device: Where the sum lives (the values' device: no host synchronisation per update).
    """

    def __init__(self, device: str | torch.device = "cpu") -> None:
        self.device = torch.device(device)
        self.reset()

    def reset(self) -> None:
        """Forget every value."""
        self.total = torch.zeros((), dtype=_sum_dtype(self.device), device=self.device)
        self.count = 0

    def update(self, values: torch.Tensor) -> None:
        """Add ``(B,)`` values."""
        self.total += values.detach().to(self.total.dtype).sum()
        self.count += int(values.numel())

    def compute(self) -> float:
        """The mean of every value added (``nan`` when none)."""
        return float(self.total) / self.count if self.count else float("nan")


@dataclass
class GaussianStats:
    """Streaming mean / covariance of feature vectors (float64 sums; constant memory)."""

    dim: int | None = None
    n: int = 0
    total: torch.Tensor | None = None
    outer: torch.Tensor | None = None

    def update(self, feats: torch.Tensor) -> None:
        """Add ``(B, D)`` features (the sums stay on the features' device: no copy to the host per batch)."""
        if feats.ndim != 2:
            raise InputError(f"expected features (B, D), got {tuple(feats.shape)}")
        if self.total is not None and self.total.device != feats.device:
            feats = feats.to(self.total.device)
        f = feats.detach().to(_sum_dtype(feats.device))
        if self.total is None:
            self.dim = f.shape[1]
            self.total = torch.zeros(self.dim, dtype=f.dtype, device=f.device)
            self.outer = torch.zeros(self.dim, self.dim, dtype=f.dtype, device=f.device)
        self.n += f.shape[0]
        self.total += f.sum(0)
        self.outer += f.T @ f

    def statistics(self) -> dict[str, np.ndarray]:
        """``{"mu": (D,), "sigma": (D, D)}`` (unbiased covariance, as ``np.cov``)."""
        if self.n < 2 or self.total is None or self.outer is None:
            raise InputError(f"need at least 2 samples for a covariance, got {self.n}")
        total, outer = self.total.double().cpu(), self.outer.double().cpu()
        mu = total / self.n
        sigma = (outer - self.n * torch.outer(mu, mu)) / (self.n - 1)
        return {"mu": mu.numpy(), "sigma": sigma.numpy()}


def frechet_distance(real: GaussianStats, fake: GaussianStats) -> float:
    """Frechet distance between two feature Gaussians, with torch-fidelity's formula."""
    from torch_fidelity.metric_fid import KEY_METRIC_FID, fid_statistics_to_metric

    return float(
        fid_statistics_to_metric(real.statistics(), fake.statistics(), verbose=False)[KEY_METRIC_FID]
    )


@dataclass
class ReconstructionMetrics:
    """Accumulate PSNR / SSIM / LPIPS / rFID over batches of (reconstruction, reference) pairs.

    Args:
        lpips: Compute LPIPS.
        fid: Compute rFID.
        lpips_net: ``"vgg"`` (default), ``"alex"`` or ``"squeeze"``.
        inception_weights: Explicit Inception weights file.
        allow_download: Allow fetching missing weights when online.
        quantize: Round both images to 8 bits first (the numbers then describe saved PNGs).
        device: Device of the metric networks.
    """

    lpips: bool = True
    fid: bool = True
    lpips_net: str = "vgg"
    inception_weights: str | os.PathLike | None = None
    allow_download: bool = True
    quantize: bool = True
    device: str | torch.device = "cpu"
    unavailable: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        dev = torch.device(self.device)
        # Per-image PSNR (over C, H, W) and SSIM averaged over images, as tokenizer papers report them.
        self._psnr = RunningMean(dev)
        self._ssim = RunningMean(dev)
        self._lpips: RunningMean | None = None
        self._lpips_net: nn.Module | None = None
        self._inception: InceptionFeatures | None = None
        self._real = GaussianStats()
        self._fake = GaussianStats()
        self.num_images = 0
        self._with_nan = torch.zeros((), dtype=torch.int64, device=dev)  # reconstructions holding NaN
        if self.lpips:
            try:
                resolve_lpips_backbone(self.lpips_net, allow_download=self.allow_download)
                from uae.networks.lpips import lpips_network  # reads the backbone with weights_only=True

                self._lpips_net = lpips_network(self.lpips_net, allow_download=self.allow_download).to(dev)
                self._lpips = RunningMean(dev)
            except (MetricUnavailable, MissingFileError) as e:  # not cached, or the download failed
                self.unavailable["lpips"] = str(e)
                logger.warning("LPIPS unavailable: %s", e)
        else:
            self.unavailable["lpips"] = "disabled (lpips=False)"
        if self.fid:
            try:
                path = resolve_inception_weights(self.inception_weights, allow_download=self.allow_download)
                self._inception = InceptionFeatures(path).to(dev)
            except MetricUnavailable as e:
                self.unavailable["rfid"] = str(e)
                logger.warning("rFID unavailable: %s", e)
        else:
            self.unavailable["rfid"] = "disabled (fid=False)"

    def reset(self) -> None:
        """Forget the accumulated images (the metric networks stay loaded)."""
        self._psnr.reset()
        self._ssim.reset()
        if self._lpips is not None:
            self._lpips.reset()
        self._real = GaussianStats()
        self._fake = GaussianStats()
        self.num_images = 0
        self._with_nan.zero_()

    @torch.no_grad()
    def update(self, recon: torch.Tensor, ref: torch.Tensor) -> None:
        """Add a batch.

        Args:
            recon: ``(B, 3, H, W)`` reconstructions in ``[0, 1]``.
            ref: ``(B, 3, H, W)`` references (originals) in ``[0, 1]``, same size.
        """
        if recon.shape != ref.shape:
            raise InputError(
                f"reconstruction {tuple(recon.shape)} and reference {tuple(ref.shape)} differ in shape"
            )
        with full_precision(recon.device):
            self._update_chunks(recon, ref)

    def _update_chunks(self, recon: torch.Tensor, ref: torch.Tensor) -> None:
        b = recon.shape[0]
        # On CPU a few images at a time: faster (cache) and a small, steady working set (no heap growth
        # from large temporaries when the metrics run in their own thread).
        step = max(1, CPU_CHUNK_ELEMENTS // max(1, recon[0].numel())) if recon.device.type == "cpu" else b
        for i in range(0, b, step):
            self._update(recon[i : i + step], ref[i : i + step])
        self.num_images += b

    def _update(self, recon: torch.Tensor, ref: torch.Tensor) -> None:
        # Counted on the device (no host synchronisation per batch); NaN pixels make the image's PSNR and
        # SSIM NaN rather than a number for pixels that were never there.
        self._with_nan += recon.isnan().flatten(1).any(1).sum()
        if self.quantize:  # clamped and rounded to the 8-bit grid
            recon, ref = quantize(recon), quantize(ref)
        else:
            recon, ref = recon.float().clamp(0.0, 1.0), ref.float().clamp(0.0, 1.0)
        self._psnr.update(psnr_per_image(recon, ref))
        self._ssim.update(ssim_per_image(recon, ref))
        if self._lpips is not None and self._lpips_net is not None:
            self._lpips.update(self._lpips_net(recon, ref, normalize=True).flatten())
        if self._inception is not None:
            self._real.update(self._inception(ref))
            self._fake.update(self._inception(recon))

    def compute(self) -> dict[str, Any]:
        """The metrics as a JSON-ready dict (``None`` for unavailable ones, with ``unavailable`` reasons)."""
        if self.num_images == 0:
            raise InputError("no images were evaluated")
        out: dict[str, Any] = {
            "num_images": self.num_images,
            "psnr": self._psnr.compute(),
            "ssim": self._ssim.compute(),
            "lpips": self._lpips.compute() if self._lpips is not None else None,
            "rfid": None,
        }
        if self._inception is not None:
            if self.num_images < 2:
                self.unavailable["rfid"] = "rFID needs at least 2 images"
            else:
                out["rfid"] = frechet_distance(self._real, self._fake)
                if self.num_images < 2048:
                    logger.warning(
                        "rFID on %d images (< 2048, the feature size) is strongly biased", self.num_images
                    )
        out["unavailable"] = dict(self.unavailable)
        with_nan = int(self._with_nan)
        if with_nan:
            logger.warning(
                "%d of %d reconstructions hold NaN pixels: PSNR and SSIM are NaN", with_nan, self.num_images
            )
        out["notes"] = {
            "rfid": RFID_NOTE,
            "psnr": "per-image PSNR (data range 1) averaged over images"
            + (", 8-bit quantised" if self.quantize else ""),
            "ssim": "torchmetrics SSIM (gaussian 11x11, sigma 1.5, data range 1)",
            "lpips": f"torchmetrics LPIPS ({self.lpips_net})",
        }
        if with_nan:
            out["notes"]["nan"] = f"{with_nan} of {self.num_images} reconstructions hold NaN pixels"
        return out


def as_metrics(
    metrics: ReconstructionMetrics | Mapping[str, Any] | None, device: str | torch.device
) -> ReconstructionMetrics:
    """``metrics`` itself, or a :class:`ReconstructionMetrics` on ``device`` built from keyword arguments.

    Args:
        metrics: An accumulator, its keyword arguments (``{"fid": False, "lpips_net": "alex"}``), or
            ``None`` for the defaults.
        device: Device of the metric networks when one is built.
    """
    if isinstance(metrics, ReconstructionMetrics):
        return metrics
    return ReconstructionMetrics(**dict(metrics or {}), device=device)
