"""Low-pass / high-pass filtered evaluation (Wang et al., "High-frequency Component Helps Explain the
Generalization of CNNs"): probe accuracy and reconstruction metrics on LFC-only and HFC-only images.

An image ``x`` is split at radius ``r`` (in units of the Nyquist frequency, ideal radial mask on the
2-D FFT, :func:`uae.layers.band_projector.lowpass_filter`) into ``LFC = lowpass(x, r)`` and
``HFC = x - LFC``, so ``LFC + HFC == x`` exactly (to float error). The high-pass image has zero mean
and negative values; before it is fed to a model it is shown on a mid-gray background
(``HFC + 0.5``, clamped to ``[0, 1]``), the usual way to view and test on HFC images.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from functools import partial
from typing import TYPE_CHECKING, Any

import torch

from uae.errors import InputError
from uae.evaluation.options import ProbeOptions, RunOptions
from uae.layers.spectral import lowpass_filter

if TYPE_CHECKING:  # pragma: no cover
    from uae.evaluation.metrics import ReconstructionMetrics

#: Gray level added to high-pass images before they are fed to a model.
HFC_OFFSET = 0.5


def split_frequencies(x: torch.Tensor, radius: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Low- and high-frequency components of images.

    Args:
        x: ``(..., H, W)`` images (any range).
        radius: Cut-off in units of the Nyquist frequency (``0..sqrt(2)``; ``>= sqrt(2)`` keeps everything).

    Returns:
        ``(lfc, hfc)`` with ``lfc + hfc == x``; both float tensors of ``x``'s shape.
    """
    if radius < 0:
        raise InputError(f"radius must be >= 0, got {radius}", param="radius")
    lfc = lowpass_filter(x.float(), radius)
    return lfc, x.float() - lfc


def lfc_image(x: torch.Tensor, radius: float) -> torch.Tensor:
    """Low-pass image, clamped to ``[0, 1]``."""
    return split_frequencies(x, radius)[0].clamp(0.0, 1.0)


def hfc_image(x: torch.Tensor, radius: float, offset: float = HFC_OFFSET) -> torch.Tensor:
    """High-pass image on a gray background (``HFC + offset``), clamped to ``[0, 1]``."""
    return (split_frequencies(x, radius)[1] + offset).clamp(0.0, 1.0)


def make_filter(kind: str, radius: float) -> Callable[[torch.Tensor], torch.Tensor] | None:
    """``"original"`` -> ``None``; ``"lfc"`` / ``"hfc"`` -> the image filter at ``radius``."""
    if kind == "original":
        return None
    if kind == "lfc":
        return partial(lfc_image, radius=radius)
    if kind == "hfc":
        return partial(hfc_image, radius=radius)
    raise InputError(f"filter kind must be 'original', 'lfc' or 'hfc', got {kind!r}", param="kind")


def filtered_evaluation(
    model: torch.nn.Module,
    data: str,
    *,
    radii: Sequence[float] = (0.25, 0.5),
    band: int | str = 0,
    with_probe: bool = True,
    with_reconstruction: bool = True,
    probe: ProbeOptions | None = None,
    metrics: ReconstructionMetrics | Mapping[str, Any] | None = None,
    size: int | None = None,
    options: RunOptions | None = None,
) -> dict[str, Any]:
    """Probe accuracy and reconstruction metrics on the original images and their LFC / HFC versions.

    The linear probe is trained once, on features of the original images; each filtered variant of the
    validation images is then classified by that head. Reconstructions of each variant are compared
    with the same variant of the reference.

    Args:
        model: A :class:`uae.UAE` (e.g. from :func:`uae.evaluation.common.prepare_model`).
        data: A labelled folder (for the probe), ``"imagenet"`` (with ``options.data_root``), or any
            image folder (``with_probe=False``).
        radii: Cut-off radii in units of the Nyquist frequency; each gives an ``lfc@r`` and an ``hfc@r``.
        band: The probe's feature band (index, ``"all"`` or ``"latent"``).
        with_probe: Train and evaluate the probe.
        with_reconstruction: Compute the reconstruction metrics (on ``probe.val_data`` when given).
        probe: The probe's protocol (default: :class:`~uae.evaluation.options.ProbeOptions`'s); its
            ``val_data`` also chooses the reconstruction images.
        metrics: The reconstruction metrics, or keyword arguments of a
            :class:`~uae.evaluation.metrics.ReconstructionMetrics` built on the model's device after the
            probe (weights resolved and loaded once for all variants); reset before each variant.
        size: Comparison side of the reconstructions (default: the model's output size).
        options: How images are read and run (default: :class:`~uae.evaluation.options.RunOptions`'s).

    Returns:
        ``{"data", "variants": {name: {"kind", "radius", "top1", "top5", "psnr", ...}}, "probe", "notes",
        "images"}`` (``"probe"`` with the probe, ``"notes"`` / ``"images"`` with the reconstructions).

    Raises:
        InputError: Neither the probe nor the reconstructions asked for.
    """
    from uae.data.datasets import SkipLog
    from uae.data.transforms import resolve_data_config
    from uae.evaluation.common import images_summary, make_loader, model_device, open_dataset
    from uae.evaluation.features import cached_features
    from uae.evaluation.metrics import as_metrics
    from uae.evaluation.probe import evaluate_head, fit_probe, parse_band, probe_datasets
    from uae.evaluation.reconstruction import evaluate_reconstruction

    if not with_probe and not with_reconstruction:
        raise InputError("with_probe=False and with_reconstruction=False leave nothing to evaluate")
    probe = probe or ProbeOptions()
    options = options or RunOptions()
    variants = [("original", 0.0)] + [(k, r) for r in radii for k in ("lfc", "hfc")]
    results: dict[str, Any] = {"data": data, "variants": {}}
    head = val_ds = None
    if with_probe:
        band = parse_band(band)
        train_ds, val_ds, classes = probe_datasets(
            data, model.config.img_size, probe=probe, options=options, data_config=resolve_data_config(model)
        )
        logs = (SkipLog(), SkipLog())
        head, res = fit_probe(
            model,
            (train_ds, val_ds),
            band,
            num_classes=len(classes),
            probe=probe,
            options=options,
            tag="filtered",
            logs=logs,
        )
        images = {"train": images_summary(logs[0]), "val": images_summary(logs[1])}
        results["probe"] = {"band": str(band), "trained_on": "original images", **res, "images": images}
    rec_ds = None
    if with_reconstruction:
        size = size or model.config.output_size
        rec_data = "imagenet-val" if data == "imagenet" else (probe.val_data or data)
        rec_ds, _ = open_dataset(
            rec_data,
            model.config.img_size,
            options=options,
            out_size=size,
            labels=False,
            data_config=resolve_data_config(model),
            uint8=model_device(model).type == "cuda",
        )
    for kind, radius in variants:
        name = kind if kind == "original" else f"{kind}@{radius:g}"
        flt = make_filter(kind, radius)
        entry: dict[str, Any] = {"kind": kind, "radius": radius if kind != "original" else None}
        if head is not None:
            if kind == "original":
                entry.update({"top1": results["probe"]["top1"], "top5": results["probe"]["top5"]})
            else:
                _, (fva, lva) = cached_features(
                    model,
                    (None, val_ds),
                    band,
                    options=options,
                    cache_dir=probe.cache_dir,
                    tag="filtered",
                    pool=probe.pool,
                    input_filter=flt,
                    filter_tag=f"{kind}{radius:g}",
                )
                keep = lva >= 0
                entry.update(evaluate_head(head, fva[keep], lva[keep]))
        if rec_ds is not None:
            metrics = as_metrics(metrics, model_device(model))
            metrics.reset()
            rec = evaluate_reconstruction(
                model,
                make_loader(
                    rec_ds,
                    options.batch_size,
                    options.num_workers,
                    device=model_device(model),
                    worker_niceness=options.worker_niceness,
                ),
                metrics,
                size,
                input_filter=flt,
                device=model_device(model),
                amp=options.amp,
                progress=options.progress,
                desc=f"eval {name}",
            )
            entry.update({k: rec[k] for k in ("psnr", "ssim", "lpips", "rfid", "num_images")})
            entry["num_skipped"] = rec["images"]["skipped"]
            entry["unavailable"] = rec["unavailable"]
            results.setdefault("notes", rec["notes"])
            results.setdefault("images", rec["images"])  # the same files for every variant
        results["variants"][name] = entry
    return results
