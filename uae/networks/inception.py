"""torch-fidelity's FID Inception (``inception-v3-compat``), with its weights file read by uae.

torch-fidelity unpickles a weights file without ``weights_only``: a planted or swapped file would run
code. :func:`fidelity_inception` reads the file itself with ``torch.load(weights_only=True)``
(:func:`uae.files.read_state_dict`: a pickle with code is refused in one line, nothing runs), checks the
tensors, and hands torch-fidelity a serialisation of exactly those tensors, never the file, so what
torch-fidelity unpickles is only what uae read. Both the reconstruction rFID (:mod:`uae.evaluation.metrics`)
and the generation metrics (:mod:`uae.generation.metrics`) build their network here.
"""

from __future__ import annotations

import io
import logging
import os
from collections.abc import Sequence

import torch
from torch import nn

from uae.errors import DamagedFileError, UAELoadError

logger = logging.getLogger(__name__)


def read_inception_weights(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """The FID Inception's state dict, read with ``weights_only=True`` and checked for NaN and inf.

    Raises:
        MissingFileError: No such file.
        UnsafeFileError: A pickle with code (refused, nothing runs).
        DamagedFileError: Not a state dict, or NaN / inf values (naming the tensors).
    """
    from uae.files import read_state_dict
    from uae.utils import non_finite_tensors

    state = read_state_dict(path, entries=(), what="Inception weights")
    if bad := non_finite_tensors(state):
        raise DamagedFileError(f"Inception weights {path} hold NaN or inf values: {bad}")
    return state


def fidelity_inception(weights_path: str | os.PathLike, features: Sequence[str] = ("2048",)) -> nn.Module:
    """torch-fidelity's ``FeatureExtractorInceptionV3("inception-v3-compat", features)`` with checked weights.

    Args:
        weights_path: The weights file (torch-fidelity's ``weights-inception-2015-12-05-6726825d.pth`` or
            pytorch-fid's file of the same network).
        features: The outputs wanted (``"2048"``: pool features, ``"logits_unbiased"``, ...).

    Returns:
        The network in eval mode (``(B, 3, H, W)`` uint8 in, a tuple of the requested features out).

    Raises:
        MissingFileError, UnsafeFileError, DamagedFileError: As :func:`read_inception_weights`.
        UAELoadError: The tensors do not fit torch-fidelity's network (its strict load's first line).
    """
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

    state = read_inception_weights(weights_path)
    buffer = io.BytesIO()
    torch.save(state, buffer)  # only the tensors uae read: what torch-fidelity unpickles is ours
    buffer.seek(0)
    del state
    try:
        return FeatureExtractorInceptionV3(
            "inception-v3-compat", list(features), feature_extractor_weights_path=buffer
        )
    except RuntimeError as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise UAELoadError(
            f"Inception weights {str(weights_path)!r} do not fit torch-fidelity's network: {first}",
            param="inception_weights",
        ) from e


__all__ = ["fidelity_inception", "read_inception_weights"]
