"""Where every generated image's randomness comes from: one seed per image, derived from a run seed and its index.

An image is a function of ``(run seed, image index)`` only: its initial noise is drawn on the CPU from its
own generator, seeded with :func:`image_seed`, and (for sample folders) its class label is
:func:`image_labels`. Splitting a batch, changing the batch size or the number of processes (ranks)
therefore does not change which noise an image starts from.

:func:`image_seed` mixes the two numbers with NumPy's ``SeedSequence`` (not ``seed + index``, under which
image 1 of seed 0 would be image 0 of seed 1).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
import torch

from uae.errors import InputError

LabelSampling = Literal["equal", "random"]
LABEL_SAMPLINGS = ("equal", "random")
#: Seeds are kept below 2**63 (``torch.Generator.manual_seed`` takes them as they are).
_SEED_MASK = (1 << 63) - 1


def _check_int(value: int, name: str, minimum: int = 0) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise InputError(f"{name} must be an integer >= {minimum}, got {value!r}", param=name)


def image_seed(seed: int, index: int, stream: int = 0) -> int:
    """The seed of image ``index`` of a run with seed ``seed`` (``stream`` separates independent uses).

    Args:
        seed: The run seed (``>= 0``).
        index: The image's index in the run (``>= 0``).
        stream: 0 for the initial noise, 1 for a random class label.

    Returns:
        An int in ``[0, 2**63)``.
    """
    _check_int(seed, "seed")
    _check_int(index, "index")
    state = np.random.SeedSequence([int(seed), int(index), int(stream)]).generate_state(2, np.uint32)
    return ((int(state[0]) << 32) | int(state[1])) & _SEED_MASK


def image_noise(seeds: Sequence[int], shape: Sequence[int]) -> torch.Tensor:
    """Standard normal initial latents, one row per seed, each drawn from its own CPU generator.

    Args:
        seeds: One seed per image (:func:`image_seed`).
        shape: ``(C, H, W)`` of one latent.

    Returns:
        ``(len(seeds), C, H, W)`` float32 on the CPU.
    """
    rows = [torch.randn(tuple(shape), generator=torch.Generator().manual_seed(int(s))) for s in seeds]
    if not rows:
        return torch.empty(0, *shape)
    return torch.stack(rows)


def image_labels(
    indices: Sequence[int] | torch.Tensor,
    *,
    num_classes: int,
    label_sampling: LabelSampling = "equal",
    seed: int = 0,
) -> torch.Tensor:
    """Class labels of sample-folder images by index.

    Args:
        indices: Image indices.
        num_classes: Number of classes.
        label_sampling: ``"equal"``: image ``i`` has class ``i % num_classes``, so ``N`` images hold
            ``N / num_classes`` per class when ``num_classes`` divides ``N`` (RAE's and the authors'
            ``--label-sampling equal``, 50 per class for FID-50k), and any prefix is balanced to within one;
            ``"random"``: uniform, from :func:`image_seed` (stream 1).
        seed: The run seed (``"random"`` only).

    Returns:
        ``(len(indices),)`` int64 labels.

    Raises:
        InputError: Unknown ``label_sampling`` or ``num_classes < 1``.
    """
    if label_sampling not in LABEL_SAMPLINGS:
        raise InputError(
            f"label_sampling must be one of {LABEL_SAMPLINGS}, got {label_sampling!r}", param="label_sampling"
        )
    _check_int(num_classes, "num_classes", 1)
    idx = [int(i) for i in indices]
    if label_sampling == "equal":
        return torch.tensor([i % num_classes for i in idx], dtype=torch.long)
    return torch.tensor([image_seed(seed, i, stream=1) % num_classes for i in idx], dtype=torch.long)


__all__ = ["LABEL_SAMPLINGS", "LabelSampling", "image_labels", "image_noise", "image_seed"]
