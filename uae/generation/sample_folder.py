"""Sample folders for FID-50k-style evaluation: many images, deterministic per index, resumable, over ranks.

Layout of a sample folder::

    samples.json        # the run: model, tokenizer, seed, labels rule, sampler, guidance, batch size
    000000.png          # image i: class image_labels([i])[0], initial noise from image_seed(seed, i)
    000001.png
    ...

What makes the folder independent of how it was produced:

* **Per-index randomness.** Image ``i``'s class label and initial noise depend only on the run seed and
  ``i`` (:mod:`uae.generation.seeds`; ``label_sampling="equal"`` gives class ``i % num_classes``, i.e.
  ``N / num_classes`` images per class, RAE's and the authors' ``--label-sampling equal``).
* **Fixed batches.** Batch ``k`` always holds images ``[k * batch_size, (k + 1) * batch_size)``, and rank
  ``r`` of ``world_size`` computes the batches ``k`` with ``k % world_size == r``. A batch is computed the
  same way whichever rank runs it, so 1, 2 or 64 processes write identical files (float32 results depend
  on the batch size, which the manifest fixes).
* **Resuming.** Images are written atomically (:func:`uae.visualize.save_image`); a batch whose images all
  exist is skipped, a partly written one is computed again (the same batch, the same images) and only the
  missing files are written. A second run with other settings (seed, model, sampler, guidance, batch
  size, labels) is refused; changing ``num_samples`` extends or shortens the run.

Distributed runs use ``torchrun`` (:func:`distributed_context`): each process reads ``RANK`` /
``WORLD_SIZE`` / ``LOCAL_RANK``, joins a process group (``nccl`` on CUDA, ``gloo`` on the CPU) only to wait
for the others at the start and at the end, and writes its own batches.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from uae._version import __version__
from uae.errors import InputError, OutputError
from uae.files import atomic_write
from uae.generation.guidance import Guidance
from uae.generation.pipeline import GenerationPipeline
from uae.generation.samplers import SamplerConfig
from uae.generation.seeds import LABEL_SAMPLINGS, image_labels, image_noise, image_seed
from uae.visualize import save_image

logger = logging.getLogger(__name__)

MANIFEST_NAME = "samples.json"
FORMAT_VERSION = 1
#: Manifest keys that must match for a run to continue a folder (``num_samples`` may change).
_MUST_MATCH = (
    "format",
    "model",
    "tokenizer",
    "guide_model",
    "seed",
    "label_sampling",
    "num_classes",
    "batch_size",
    "sampler",
    "guidance",
    "image_size",
)


def sample_name(index: int, num_samples: int) -> str:
    """``000042.png``: the index with at least 6 digits (enough for ``num_samples``)."""
    return f"{index:0{max(6, len(str(max(num_samples - 1, 0))))}d}.png"


@dataclass(frozen=True)
class SampleFolderResult:
    """What :func:`write_sample_folder` did on this rank.

    Attributes:
        out_dir: The folder.
        num_samples: Images the run holds.
        written: Images this rank wrote now.
        skipped: Images of this rank's batches that already existed.
        rank, world_size: This process and the number of processes.
        complete: Every image of the run exists (checked after all ranks finished; rank 0's view).
    """

    out_dir: Path
    num_samples: int
    written: int
    skipped: int
    rank: int
    world_size: int
    complete: bool


def run_manifest(
    pipeline: GenerationPipeline,
    *,
    num_samples: int,
    seed: int,
    label_sampling: str,
    batch_size: int,
    sampler: SamplerConfig,
    guidance: Guidance,
) -> dict[str, Any]:
    """The ``samples.json`` of a run (JSON-ready)."""
    size = pipeline.tokenizer.config.output_size
    return {
        "format": FORMAT_VERSION,
        "model": pipeline.name,
        "tokenizer": pipeline.tokenizer_name,
        "guide_model": pipeline.guide_model.config.name if pipeline.guide_model is not None else None,
        "num_samples": num_samples,
        "seed": seed,
        "label_sampling": label_sampling,
        "num_classes": pipeline.num_classes,
        "batch_size": batch_size,
        "sampler": dataclasses.asdict(sampler),
        "guidance": dataclasses.asdict(guidance),
        "image_size": [size, size],
        "files": f"{{index:0{len(sample_name(0, num_samples)) - 4}d}}.png",
        "labels": "class of image i: i % num_classes (equal) or image_seed(seed, i, 1) % num_classes (random)",
        "noise": "image i starts from randn(C, H, W) of a CPU generator seeded with image_seed(seed, i)",
        "uae_version": __version__,
    }


def read_manifest(out_dir: str | os.PathLike) -> dict[str, Any] | None:
    """The folder's ``samples.json``, or ``None`` when there is none."""
    path = Path(out_dir) / MANIFEST_NAME
    if not path.is_file():
        return None
    return json.loads(path.read_text())


def _check_resume(old: dict[str, Any], new: dict[str, Any], out_dir: Path) -> None:
    differ = [k for k in _MUST_MATCH if old.get(k) != new.get(k)]
    if differ:
        shown = "; ".join(f"{k}: {old.get(k)!r} there, {new.get(k)!r} now" for k in differ)
        raise InputError(
            f"out_dir {str(out_dir)!r} holds samples of another run ({shown}); continue it with the same "
            "settings or use another folder",
            param="out_dir",
        )


def missing_indices(out_dir: str | os.PathLike, num_samples: int) -> list[int]:
    """Indices ``0 .. num_samples - 1`` whose image file is not in the folder."""
    out = Path(out_dir)
    return [i for i in range(num_samples) if not (out / sample_name(i, num_samples)).is_file()]


@contextlib.contextmanager
def distributed_context(
    device: str | torch.device | None = None,
) -> Iterator[tuple[int, int, Callable[[], None]]]:
    """The rank, world size and a barrier of this process under ``torchrun`` (or ``(0, 1, no-op)`` alone).

    With ``WORLD_SIZE > 1`` in the environment, joins the default process group (``nccl`` for a CUDA
    ``device``, else ``gloo``) unless one is already initialised, and leaves it at the end.

    Yields:
        ``(rank, world_size, barrier)``.
    """
    import torch.distributed as dist

    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        yield 0, 1, lambda: None
        return
    created = False
    if not dist.is_initialized():
        backend = "nccl" if device is not None and torch.device(device).type == "cuda" else "gloo"
        dist.init_process_group(backend=backend)
        created = True
    try:
        yield dist.get_rank(), dist.get_world_size(), dist.barrier
    finally:
        if created:
            dist.destroy_process_group()


@torch.no_grad()
def write_sample_folder(
    pipeline: GenerationPipeline,
    out_dir: str | os.PathLike,
    *,
    num_samples: int,
    seed: int = 0,
    label_sampling: str = "equal",
    batch_size: int = 32,
    steps: int | None = None,
    guidance: float | Guidance | None = None,
    guidance_method: str | None = None,
    t_min: float | None = None,
    t_max: float | None = None,
    method: str | None = None,
    rank: int = 0,
    world_size: int = 1,
    barrier: Callable[[], None] | None = None,
    amp: bool = True,
    progress: bool = True,
) -> SampleFolderResult:
    """Write this rank's part of a sample folder (see the module docs), resuming what exists.

    Args:
        pipeline: The models and default settings.
        out_dir: The folder (created).
        num_samples: Images in the run (50000 for FID-50k).
        seed: Run seed.
        label_sampling: ``"equal"`` (class ``i % num_classes``) or ``"random"``.
        batch_size: Images per batch (part of the run's identity: it fixes the float32 results).
        steps, guidance, guidance_method, t_min, t_max, method: As :meth:`GenerationPipeline.__call__`.
        rank, world_size: This process among ``world_size`` (:func:`distributed_context` under torchrun).
        barrier: Waits for every rank (``None``: no other process).
        amp: bf16 autocast on CUDA.
        progress: A tqdm bar over this rank's images.

    Returns:
        :class:`SampleFolderResult`.

    Raises:
        InputError: Bad counts or settings, or the folder holds another run (``param="out_dir"``).
        OutputError: The folder cannot be written.
    """
    for name, value, low in (
        ("num_samples", num_samples, 1),
        ("batch_size", batch_size, 1),
        ("seed", seed, 0),
    ):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise InputError(f"{name} must be an integer >= {low}, got {value!r}", param=name)
    if label_sampling not in LABEL_SAMPLINGS:
        raise InputError(
            f"label_sampling must be one of {LABEL_SAMPLINGS}, got {label_sampling!r}", param="label_sampling"
        )
    if not 0 <= rank < world_size:
        raise InputError(f"rank {rank} is not in 0..{world_size - 1}", param="rank")
    sampler, guide = pipeline.settings(
        steps=steps,
        guidance=guidance,
        guidance_method=guidance_method,
        t_min=t_min,
        t_max=t_max,
        method=method,
    )
    if label_sampling == "equal" and num_samples % pipeline.num_classes:
        logger.warning(
            "num_samples %d is not a multiple of the %d classes: 'equal' labels differ by one image per class",
            num_samples,
            pipeline.num_classes,
        )
    out = Path(out_dir).expanduser()
    manifest = run_manifest(
        pipeline,
        num_samples=num_samples,
        seed=seed,
        label_sampling=label_sampling,
        batch_size=batch_size,
        sampler=sampler,
        guidance=guide,
    )
    wait = barrier or (lambda: None)
    if rank == 0:
        old = read_manifest(out)
        if old is not None:
            _check_resume(old, manifest, out)
        try:
            with atomic_write(out / MANIFEST_NAME) as tmp:
                tmp.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
        except OSError as e:
            raise OutputError(f"cannot write the sample folder {out}: {e}", param="out_dir") from e
    wait()
    if rank != 0:
        old = read_manifest(out)
        if old is None:
            raise OutputError(
                f"rank {rank}: {out / MANIFEST_NAME} is missing (is {out} shared by every rank?)"
            )
        _check_resume(old, manifest, out)

    batches = [range(s, min(s + batch_size, num_samples)) for s in range(0, num_samples, batch_size)]
    mine = [b for k, b in enumerate(batches) if k % world_size == rank]
    todo = [b for b in mine if any(not (out / sample_name(i, num_samples)).is_file() for i in b)]
    skipped = sum(len(b) for b in mine) - sum(len(b) for b in todo)
    written = 0
    shape = tuple(pipeline.generator.config.latent_shape)
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(
            total=sum(len(b) for b in todo), desc=f"samples (rank {rank})", unit="img", dynamic_ncols=True
        )
    try:
        for b in todo:
            idx = list(b)
            labels = image_labels(
                idx, num_classes=pipeline.num_classes, label_sampling=label_sampling, seed=seed
            )
            noise = image_noise([image_seed(seed, i) for i in idx], shape)
            sde_gen = torch.Generator().manual_seed(image_seed(seed, idx[0], stream=2))
            z = pipeline.sample_latents(
                noise, labels, sampler=sampler, guidance=guide, generator=sde_gen, amp=amp
            )
            images = pipeline.decode(z, amp=amp)
            for i, img in zip(idx, images):
                path = out / sample_name(i, num_samples)
                if not path.is_file():
                    try:
                        save_image(img, path)
                    except OSError as e:
                        raise OutputError(f"cannot write {path}: {e}", param="out_dir") from e
                    written += 1
            if bar is not None:
                bar.update(len(idx))
    finally:
        if bar is not None:
            bar.close()
    wait()
    complete = not missing_indices(out, num_samples) if rank == 0 else False
    return SampleFolderResult(out, num_samples, written, skipped, rank, world_size, complete)


__all__ = [
    "FORMAT_VERSION",
    "MANIFEST_NAME",
    "SampleFolderResult",
    "distributed_context",
    "missing_indices",
    "read_manifest",
    "run_manifest",
    "sample_name",
    "write_sample_folder",
]
