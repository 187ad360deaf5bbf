"""Generation metrics of a sample folder: FID, Inception Score, precision and recall (``uae eval-gen``).

Everything is torch-fidelity's, on its standard ``inception-v3-compat`` network (the TF-FID Inception behind
published gFID numbers; the same weights rules as ``uae eval``:
:func:`uae.evaluation.metrics.resolve_inception_weights`, read with ``weights_only=True``):

* **FID**: the Frechet distance of the 2048-d pool features (``fid_statistics_to_metric``) against the
  reference's statistics: computed from reference images, or taken from an ADM-style reference ``.npz``
  (``mu``, ``sigma``; e.g. ``VIRTUAL_imagenet256_labeled.npz``).
* **IS**: ``isc_features_to_metric`` on the unbiased logits (10 splits, torch-fidelity's shuffle seed).
* **Precision / recall**: the improved precision and recall of Kynkaanniemi et al. (2019), k = 3 nearest
  neighbours on the pool features, torch-fidelity's ``prc_features_to_metric`` (generated = input 1,
  reference = input 2); needs reference *images* (a folder, or the ``arr_0`` images of an ``.npz``).

The samples are the images of a sample folder (:mod:`uae.generation.sample_folder`; the first
``num_samples`` indices, all of which must exist) or any folder of images. Reference images are
centre-cropped and resized to the samples' size (bicubic, antialiased), as ADM's reference batches are.
ADM's own evaluator runs TensorFlow's Inception: numbers agree with it closely but are not identical.
"""

from __future__ import annotations

import logging
import os
import zipfile
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from uae.errors import DamagedFileError, InputError, MissingFileError, UnsafeFileError
from uae.evaluation.metrics import MetricUnavailable, resolve_inception_weights
from uae.generation.sample_folder import missing_indices, read_manifest, sample_name

if TYPE_CHECKING:
    from uae.data.arrays import ImageArray

logger = logging.getLogger(__name__)

METRICS = ("fid", "is", "pr")
#: How every result describes its feature network.
FEATURE_NOTE = (
    "torch-fidelity's inception-v3-compat (TF-FID Inception): FID on 2048-d pool features, IS on the unbiased "
    "logits (10 splits), precision/recall k=3 (Kynkaanniemi et al. 2019) on the pool features"
)


class GenerationInception(nn.Module):
    """torch-fidelity's ``inception-v3-compat``: 2048-d pool features and 1008 unbiased logits.

    Args:
        weights_path: The Inception weights file (:func:`resolve_inception_weights`); read by uae with
            ``torch.load(weights_only=True)`` (:func:`uae.networks.inception.fidelity_inception`).

    Raises:
        UnsafeFileError: The file holds pickled code (refused; nothing runs).
        MetricUnavailable: The file is damaged or does not fit the network.
    """

    def __init__(self, weights_path: str | os.PathLike) -> None:
        super().__init__()
        from uae.errors import UAELoadError
        from uae.networks.inception import fidelity_inception

        try:
            self.net = fidelity_inception(weights_path, ["2048", "logits_unbiased"])
        except DamagedFileError as e:
            raise MetricUnavailable(f"cannot read Inception weights {str(weights_path)!r}: {e}") from e
        except UAELoadError as e:
            raise MetricUnavailable(str(e)) from e

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(B, 3, H, W)`` uint8 -> ``(B, 2048)`` pool features and ``(B, 1008)`` logits (float64, CPU)."""
        feats, logits = self.net(images)
        return feats.double().cpu(), logits.double().cpu()


# ---------------------------------------------------------------------------------------------- inputs
def sample_files(
    samples: str | os.PathLike, num_samples: int | None = None
) -> tuple[list[Path], dict[str, Any]]:
    """The image files of a sample folder (its first ``num_samples`` indices) or of any image folder.

    Returns:
        ``(files, info)``; ``info`` holds the folder's manifest (``{}`` for a plain folder) and, for a sample
        folder, the number of images per class.

    Raises:
        MissingFileError: No such folder, or a sample folder misses images (naming how many and the first).
        InputError: ``num_samples`` exceeds the run.
    """
    from uae.data import find_images

    root = Path(samples).expanduser()
    if not root.is_dir():
        raise MissingFileError(f"samples folder {str(root)!r} does not exist", param="samples")
    manifest = read_manifest(root)
    if manifest is None:
        files = sorted(find_images(root))
        if num_samples is not None:
            files = files[:num_samples]
        if not files:
            raise MissingFileError(f"no images in {root}", param="samples")
        return files, {"manifest": {}}
    total = int(manifest["num_samples"])
    n = total if num_samples is None else num_samples
    if n > total:
        raise InputError(
            f"num_samples {n} exceeds the {total} images of the run in {root}", param="num_samples"
        )
    missing = missing_indices(root, n)
    if missing:
        raise MissingFileError(
            f"{root} misses {len(missing)} of its {n} images (first: {sample_name(missing[0], total)}); re-run the "
            "uae generate command that wrote it to resume",
            param="samples",
        )
    from uae.generation.seeds import image_labels

    labels = image_labels(
        range(n),
        num_classes=int(manifest["num_classes"]),
        label_sampling=manifest["label_sampling"],
        seed=int(manifest["seed"]),
    )
    counts = Counter(labels.tolist())
    info = {
        "manifest": manifest,
        "images_per_class": {
            "min": min(counts.values()),
            "max": max(counts.values()),
            "classes": len(counts),
        },
    }
    return [root / sample_name(i, total) for i in range(n)], info


def _reference_images(path: Path) -> ImageArray:
    """:class:`~uae.data.arrays.ImageArray` of a reference file, its errors naming ``reference``."""
    from uae.data.arrays import ImageArray

    try:
        return ImageArray(path)
    except UnsafeFileError as e:
        raise UnsafeFileError(str(e), param="reference") from e
    except InputError as e:  # not images, or a damaged file
        raise DamagedFileError(f"reference {e}", param="reference") from e


def read_reference_npz(path: str | os.PathLike) -> dict[str, Any]:
    """An ADM-style reference batch: ``mu`` + ``sigma`` (2048-d statistics) and/or ``arr_0`` images; or an
    ``.npy`` of images (``uae pack``), read as ``arr_0``.

    Returns:
        What is present among ``mu``, ``sigma`` (arrays) and ``arr_0`` (a
        :class:`uae.data.arrays.ImageArray` of ``(N, H, W, 3)`` uint8 images, read a batch at a time: ADM's
        10k-image ImageNet batch is never held whole).

    Raises:
        MissingFileError: No such file.
        DamagedFileError: Not an ``.npz``, neither statistics nor images, images that are not
            ``(N, H, W, 3)`` uint8 or a size that disagrees with their header.
        UnsafeFileError: Pickled objects.
    """
    p = Path(path).expanduser()
    if not p.is_file():
        raise MissingFileError(f"reference {str(p)!r} does not exist", param="reference")
    if p.suffix.lower() == ".npy":
        return {"arr_0": _reference_images(p)}
    try:
        with np.load(p, allow_pickle=False) as data:
            out: dict[str, Any] = {k: data[k] for k in ("mu", "sigma") if k in data.files}
            has_images = "arr_0" in data.files
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as e:
        raise DamagedFileError(f"cannot read reference {p}: {e}", param="reference") from e
    has_stats = "mu" in out and "sigma" in out
    if not has_stats and not has_images:
        raise DamagedFileError(f"{p} holds neither 'mu' and 'sigma' nor 'arr_0' images", param="reference")
    if has_images:
        out["arr_0"] = _reference_images(p)
    if has_stats and (out["mu"].ndim != 1 or out["sigma"].shape != (out["mu"].shape[0],) * 2):
        raise DamagedFileError(f"{p}: mu must be (D,) and sigma (D, D)", param="reference")
    return out


def _image_batches(files: list[Path], size: int, batch_size: int) -> Iterator[torch.Tensor]:
    """uint8 ``(B, 3, size, size)`` batches of files (centre crop + resize when another size)."""
    from uae.data import image_transform, read_image

    tf = image_transform(size)
    for start in range(0, len(files), batch_size):
        batch = [tf(read_image(f)) for f in files[start : start + batch_size]]
        yield (torch.stack(batch) * 255.0).round().to(torch.uint8)  # type: ignore[arg-type]


def _array_batches(images: ImageArray, size: int, batch_size: int) -> Iterator[torch.Tensor]:
    """uint8 batches of ``(N, H, W, 3)`` images (resized like files when another size)."""
    from PIL import Image

    from uae.data import image_transform

    tf = image_transform(size)
    for start in range(0, len(images), batch_size):
        chunk = images.read_run(start, min(start + batch_size, len(images)))
        if chunk.shape[1:3] == (size, size):
            yield torch.from_numpy(chunk).permute(0, 3, 1, 2).contiguous()  # a new array of its own
        else:
            batch = [tf(Image.fromarray(a)) for a in chunk]
            yield (torch.stack(batch) * 255.0).round().to(torch.uint8)  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------- metrics
@dataclass
class FeatureSet:
    """Inception outputs of a set of images (float64, CPU)."""

    features: torch.Tensor
    logits: torch.Tensor
    count: int = field(init=False)

    def __post_init__(self) -> None:
        self.count = self.features.shape[0]

    def statistics(self) -> dict[str, np.ndarray]:
        """``{"mu", "sigma"}`` of the pool features (torch-fidelity's own computation)."""
        from torch_fidelity.metric_fid import fid_features_to_statistics

        return fid_features_to_statistics(self.features)


def extract(
    net: nn.Module,
    batches: Iterable[torch.Tensor],
    *,
    device: torch.device,
    progress: bool,
    total: int,
    desc: str,
) -> FeatureSet:
    """Run ``net`` over uint8 batches."""
    from tqdm.auto import tqdm

    feats, logits = [], []
    with tqdm(total=total, desc=desc, unit="img", disable=not progress, dynamic_ncols=True) as bar:
        for b in batches:
            f, lg = net(b.to(device))
            feats.append(f)
            logits.append(lg)
            bar.update(b.shape[0])
    return FeatureSet(torch.cat(feats), torch.cat(logits))


def compute_metrics(
    fake: FeatureSet,
    *,
    real: FeatureSet | None,
    real_stats: dict[str, np.ndarray] | None,
    metrics: tuple[str, ...] = METRICS,
    prc_neighborhood: int = 3,
) -> tuple[dict[str, Any], dict[str, str]]:
    """The metrics from features: ``({"fid", "is", "is_std", "precision", "recall", "f_score"}, unavailable)``."""
    from torch_fidelity.metric_fid import fid_statistics_to_metric
    from torch_fidelity.metric_isc import isc_features_to_metric
    from torch_fidelity.metric_prc import prc_features_to_metric

    out: dict[str, Any] = {}
    unavailable: dict[str, str] = {}
    if "fid" in metrics:
        stats = real_stats if real_stats is not None else (real.statistics() if real is not None else None)
        if fake.count < 2:
            unavailable["fid"] = "FID needs at least 2 samples"
        elif stats is None:
            unavailable["fid"] = "no reference statistics"
        else:
            out["fid"] = float(
                fid_statistics_to_metric(stats, fake.statistics(), verbose=False)[
                    "frechet_inception_distance"
                ]
            )
            if fake.count < 2048:
                logger.warning("FID on %d samples (< 2048, the feature size) is strongly biased", fake.count)
    if "is" in metrics:
        if fake.count < 10:
            unavailable["is"] = "IS needs at least 10 samples (10 splits)"
        else:
            isc = isc_features_to_metric(fake.logits, splits=10, shuffle=True, rng_seed=2020)
            out["is"], out["is_std"] = isc["inception_score_mean"], isc["inception_score_std"]
    if "pr" in metrics:
        if real is None:
            unavailable["pr"] = "precision/recall need reference images (a folder or an .npz with arr_0)"
        elif min(real.count, fake.count) <= prc_neighborhood:
            unavailable["pr"] = f"precision/recall need more than {prc_neighborhood} images on each side"
        else:
            prc = prc_features_to_metric(
                fake.features.float(),
                real.features.float(),
                prc_neighborhood=prc_neighborhood,
                prc_batch_size=10000,
                save_cpu_ram=max(real.count, fake.count) > 20000,
                verbose=False,
            )
            out.update(precision=prc["precision"], recall=prc["recall"], f_score=prc["f_score"])
    return out, unavailable


def evaluate_samples(
    samples: str | os.PathLike,
    reference: str | os.PathLike,
    *,
    num_samples: int | None = None,
    metrics: Iterable[str] = METRICS,
    batch_size: int = 64,
    inception_weights: str | os.PathLike | None = None,
    allow_download: bool = True,
    device: str | torch.device = "cpu",
    progress: bool = True,
    prc_neighborhood: int = 3,
) -> dict[str, Any]:
    """FID / IS / precision / recall of a sample folder against reference images or an ADM ``.npz``.

    Args:
        samples: A sample folder (``uae generate --num-samples``) or any folder of images.
        reference: A folder of reference images, or an ``.npz`` with ``mu``/``sigma`` and/or ``arr_0``.
        num_samples: Use the first N samples (default: all of the run).
        metrics: Some of ``"fid"``, ``"is"``, ``"pr"``.
        batch_size: Images per Inception batch.
        inception_weights: An explicit Inception weights file.
        allow_download: Download the weights when missing and online.
        device: Device of the Inception network.
        progress: tqdm bars.
        prc_neighborhood: k of precision/recall (3, as Kynkaanniemi et al.).

    Returns:
        A JSON-ready dict: the metric values (``None`` when unavailable), ``num_samples``,
        ``num_reference``, ``unavailable`` reasons, ``samples_info`` (manifest, images per class) and ``notes``.

    Raises:
        InputError: Unknown metrics, bad counts.
        MissingFileError: Missing folders/files, an incomplete sample folder.
        DamagedFileError: An unreadable reference ``.npz``.
    """
    wanted = tuple(dict.fromkeys(metrics))
    bad = [m for m in wanted if m not in METRICS]
    if bad or not wanted:
        raise InputError(f"metrics must be some of {METRICS}, got {list(metrics)}", param="metrics")
    for name, value in (("batch_size", batch_size), ("prc_neighborhood", prc_neighborhood)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise InputError(f"{name} must be a positive integer, got {value!r}", param=name)
    ref_path = Path(reference).expanduser()
    ref_npz = read_reference_npz(ref_path) if ref_path.suffix == ".npz" or ref_path.is_file() else None
    ref_files: list[Path] = []
    if ref_npz is None:
        from uae.data import find_images

        if not ref_path.is_dir():
            raise MissingFileError(f"reference {str(ref_path)!r} does not exist", param="reference")
        ref_files = sorted(find_images(ref_path))
        if not ref_files:
            raise MissingFileError(f"no images in the reference folder {ref_path}", param="reference")
    files, info = sample_files(samples, num_samples)
    result: dict[str, Any] = {
        "fid": None,
        "is": None,
        "is_std": None,
        "precision": None,
        "recall": None,
        "f_score": None,
        "num_samples": len(files),
    }
    unavailable: dict[str, str] = {}
    try:
        net: nn.Module = GenerationInception(resolve_inception_weights(inception_weights, allow_download))
    except MetricUnavailable as e:
        for m in wanted:
            unavailable[m] = str(e)
        result.update(num_reference=None, unavailable=unavailable, samples_info=info, notes=FEATURE_NOTE)
        return result
    dev = torch.device(device)
    net = net.to(dev).eval()
    from uae.data import read_image

    size = read_image(files[0]).size[0]
    fake = extract(
        net,
        _image_batches(files, size, batch_size),
        device=dev,
        progress=progress,
        total=len(files),
        desc="samples",
    )
    real: FeatureSet | None = None
    real_stats = None
    needs_real = "pr" in wanted or ("fid" in wanted and not (ref_npz and "mu" in ref_npz))
    if ref_npz is not None:
        if "mu" in ref_npz:
            real_stats = {
                "mu": ref_npz["mu"].astype(np.float64),
                "sigma": ref_npz["sigma"].astype(np.float64),
            }
        if needs_real and "arr_0" in ref_npz:
            arr = ref_npz["arr_0"]
            real = extract(
                net,
                _array_batches(arr, size, batch_size),
                device=dev,
                progress=progress,
                total=len(arr),
                desc="reference",
            )
    elif needs_real:
        real = extract(
            net,
            _image_batches(ref_files, size, batch_size),
            device=dev,
            progress=progress,
            total=len(ref_files),
            desc="reference",
        )
    values, why = compute_metrics(
        fake, real=real, real_stats=real_stats, metrics=wanted, prc_neighborhood=prc_neighborhood
    )
    result.update(values)
    unavailable.update(why)
    num_ref = (
        real.count
        if real is not None
        else (len(ref_npz["arr_0"]) if ref_npz is not None and "arr_0" in ref_npz else None)
    )
    result.update(
        num_reference=num_ref,
        reference_statistics="npz mu/sigma" if real_stats is not None else "reference images",
        unavailable=unavailable,
        samples_info=info,
        notes=FEATURE_NOTE,
    )
    return result


__all__ = [
    "FEATURE_NOTE",
    "METRICS",
    "FeatureSet",
    "GenerationInception",
    "compute_metrics",
    "evaluate_samples",
    "extract",
    "read_reference_npz",
    "sample_files",
]
