"""Generating latents with the released generators: flow matching, samplers, guidance, decoding.

* :mod:`uae.generation.flow`: the linear flow-matching path, the time shift, training times and loss.
* :mod:`uae.generation.guidance`: classifier-free guidance and autoguidance with a ``t_min/t_max`` interval.
* :mod:`uae.generation.samplers`: ODE (Euler, RK4) and SDE (Euler-Maruyama, Heun) samplers and
  :func:`~uae.generation.samplers.sample`.
* :mod:`uae.generation.decode`: generated latents to images with a uae tokenizer.
* :mod:`uae.generation.pipeline`: :class:`~uae.generation.pipeline.GenerationPipeline` (``uae.GenerationPipeline``):
  tokenizer + generator + guidance model + the release's settings, class labels in, images out.
* :mod:`uae.generation.seeds`: one seed per image (noise and sample-folder labels by index).
* :mod:`uae.generation.images`: PNGs and the labelled grid of ``uae generate``.
* :mod:`uae.generation.sample_folder`: resumable, rank-independent sample folders (FID-50k, ``torchrun``).
* :mod:`uae.generation.metrics`: FID / IS / precision-recall of a sample folder (``uae eval-gen``).
* :mod:`uae.generation.run`: ``uae generate`` as library functions.

The generator architecture is :class:`uae.models.dit.DiTDH`; the released checkpoints convert with
:mod:`uae.convert.dit`.
"""

from uae.generation.decode import decode_latents
from uae.generation.flow import (
    drop_labels,
    flow_matching_loss,
    sample_training_times,
    shift_times,
    time_shift,
)
from uae.generation.guidance import Guidance, guided_model
from uae.generation.samplers import SamplerConfig, sample, sample_ode, sample_sde

__all__ = [
    "Guidance",
    "SamplerConfig",
    "decode_latents",
    "drop_labels",
    "flow_matching_loss",
    "guided_model",
    "sample",
    "sample_ode",
    "sample_sde",
    "sample_training_times",
    "shift_times",
    "time_shift",
]
