"""uae: Unified Autoencoding (The Prism Hypothesis) on PyTorch Lightning.

>>> import uae
>>> model = uae.create_model("uae_test")
>>> out = model(images)  # images: (B, 3, 32, 32) in [0, 1]

The public names are imported on first use (PEP 562), so ``import uae`` and the ``uae`` command's
``--help`` do not pay for importing torch, timm and Lightning.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from uae._version import __version__

# public name -> module that defines it
_LAZY = {
    "UAE": "uae.models.uae",
    "DecoderOutput": "uae.models.outputs",
    "EncoderOutput": "uae.models.outputs",
    "UAEOutput": "uae.models.outputs",
    "UAEConfig": "uae.models.config",
    "UAELoadError": "uae.models.hub",
    "create_model": "uae.factory",
    "get_config": "uae.models.registry",
    "list_models": "uae.models.registry",
    "register_model": "uae.models.registry",
    "autocast_dtype": "uae.utils",
}

if TYPE_CHECKING:  # pragma: no cover
    from uae.factory import create_model
    from uae.models import (
        UAE,
        DecoderOutput,
        EncoderOutput,
        UAEConfig,
        UAELoadError,
        UAEOutput,
        get_config,
        list_models,
        register_model,
    )
    from uae.utils import autocast_dtype


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        if _LAZY[name] == "uae.models.registry":
            importlib.import_module("uae.models.zoo")  # registers the named configs
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'uae' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


def load_image(path: str, size: int):  # -> torch.Tensor
    """Read an image file as a model input ``(3, size, size)`` in ``[0, 1]`` (centre crop, bicubic resize).

    16-bit and float images are scaled to 8 bits (never clipped); see :func:`uae.data.read_image`.

    Raises:
        FileNotFoundError: The file does not exist.
        ValueError: The file is not a readable image, or exceeds the pixel budget
            (``UAE_MAX_IMAGE_PIXELS``, default 2**26 pixels).
    """
    from uae.inference import load_image as _load

    return _load(path, size)["image"]


__all__ = [
    "UAE",
    "DecoderOutput",
    "EncoderOutput",
    "UAEConfig",
    "UAELoadError",
    "UAEOutput",
    "__version__",
    "autocast_dtype",
    "create_model",
    "get_config",
    "load_image",
    "list_models",
    "register_model",
]
