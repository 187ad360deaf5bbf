"""``uae generate`` as library functions: a few labelled images, or a whole sample folder (across ranks).

Both take the generator as a ``--model``-style spec (a registered generator name or ``arch.tag``, a
``save_pretrained`` directory or a Hub repo id) and build the :class:`~uae.generation.pipeline.GenerationPipeline`
on the resolved device: ``"auto"`` is ``cuda:<LOCAL_RANK>`` under ``torchrun`` (``cuda`` alone), else the CPU.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from uae.errors import InputError
from uae.generation.images import GeneratedFiles, write_generated
from uae.generation.pipeline import GenerationPipeline
from uae.generation.sample_folder import SampleFolderResult, distributed_context, write_sample_folder
from uae.paths import output_dir
from uae.utils import check_device


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    """``"auto"``: ``cuda:<LOCAL_RANK>`` when CUDA is available (``LOCAL_RANK`` from torchrun, default 0),
    else the CPU; anything else is checked (:func:`uae.utils.check_device`).

    Raises:
        InputError: Not a device, or not available here (``param="device"``).
    """
    if device in (None, "auto"):
        if torch.cuda.is_available():
            return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")) % torch.cuda.device_count())
        return torch.device("cpu")
    return check_device(device)


def build_pipeline(
    model: str,
    *,
    tokenizer: str | None = None,
    guide_model: str | bool | None = None,
    random_init: bool = False,
    device: str | torch.device | None = "auto",
) -> GenerationPipeline:
    """The pipeline of a generator spec on a resolved device (see :meth:`GenerationPipeline.from_pretrained`)."""
    dev = resolve_device(device)
    return GenerationPipeline.from_pretrained(
        model, tokenizer=tokenizer, guide_model=guide_model, pretrained=not random_init, device=dev
    )


def generate_files(
    model: str,
    *,
    class_labels: list[int],
    out_dir: str | os.PathLike,
    num: int = 1,
    tokenizer: str | None = None,
    guide_model: str | bool | None = None,
    random_init: bool = False,
    device: str | torch.device | None = "auto",
    grid: bool = True,
    **call: Any,
) -> GeneratedFiles:
    """``uae generate --class ...``: ``num`` images per class as PNGs and a labelled grid in ``out_dir``.

    Args:
        model: The generator spec.
        class_labels: Class indices.
        out_dir: Output folder.
        num: Images per class.
        tokenizer, guide_model, random_init, device: See :func:`build_pipeline`.
        grid: Write ``grid.png``.
        **call: ``steps``, ``guidance``, ``guidance_method``, ``t_min``, ``t_max``, ``method``, ``seed``,
            ``batch_size``, ``amp``, ``progress`` (:meth:`GenerationPipeline.__call__`).

    Raises:
        InputError: Bad labels, counts or settings (naming the parameter), or an unusable ``out_dir``.
    """
    out = output_dir(out_dir, param="out_dir")
    pipe = build_pipeline(
        model, tokenizer=tokenizer, guide_model=guide_model, random_init=random_init, device=device
    )
    pipe.settings(
        **{
            k: call[k]
            for k in ("steps", "guidance", "guidance_method", "t_min", "t_max", "method")
            if k in call
        }
    )
    pipe.check_labels(class_labels)
    return write_generated(pipe, class_labels, out, num=num, grid=grid, **call)


def generate_sample_folder(
    model: str,
    *,
    out_dir: str | os.PathLike,
    num_samples: int,
    tokenizer: str | None = None,
    guide_model: str | bool | None = None,
    random_init: bool = False,
    device: str | torch.device | None = "auto",
    **options: Any,
) -> SampleFolderResult:
    """``uae generate --num-samples N``: this process's part of a resumable sample folder.

    Under ``torchrun`` every process writes its own batches (:mod:`uae.generation.sample_folder`);
    alone, one process writes them all. Re-running the same command resumes.

    Args:
        model: The generator spec.
        out_dir: The sample folder.
        num_samples: Images in the run.
        tokenizer, guide_model, random_init, device: See :func:`build_pipeline`.
        **options: ``seed``, ``label_sampling``, ``batch_size``, ``steps``, ``guidance``,
            ``guidance_method``, ``t_min``, ``t_max``, ``method``, ``amp``, ``progress``
            (:func:`~uae.generation.sample_folder.write_sample_folder`).

    Raises:
        InputError: Bad settings, or ``out_dir`` holds another run.
    """
    out = output_dir(out_dir, param="out_dir")
    if isinstance(num_samples, bool) or not isinstance(num_samples, int) or num_samples < 1:
        raise InputError(f"num_samples must be a positive integer, got {num_samples!r}", param="num_samples")
    dev = resolve_device(device)
    with distributed_context(dev) as (rank, world, barrier):
        pipe = build_pipeline(
            model, tokenizer=tokenizer, guide_model=guide_model, random_init=random_init, device=dev
        )
        return write_sample_folder(
            pipe, Path(out), num_samples=num_samples, rank=rank, world_size=world, barrier=barrier, **options
        )


__all__ = ["build_pipeline", "generate_files", "generate_sample_folder", "resolve_device"]
