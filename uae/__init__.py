"""uae: Unified Autoencoding (The Prism Hypothesis) on PyTorch Lightning.

>>> import uae
>>> model = uae.create_model("uae_test")
>>> out = model(images)  # images: (B, 3, 32, 32) in [0, 1]

The public names are imported on first use (PEP 562, with :func:`lazy_loader.attach`, as in
:mod:`uae.models`), so ``import uae`` and the ``uae`` command's ``--help`` do not pay for importing
torch, timm and Lightning. Nothing inside the package imports this module: library code imports the
module that defines a name.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import lazy_loader

from uae._version import __version__

if TYPE_CHECKING:  # pragma: no cover
    from uae.errors import UAELoadError
    from uae.factory import create_model
    from uae.generation.pipeline import GenerationPipeline
    from uae.models import (
        UAE,
        DecoderOutput,
        EncoderOutput,
        UAEConfig,
        UAEOutput,
        get_config,
        list_models,
        register_model,
    )
    from uae.utils import autocast_dtype

# public name -> the module that defines it (uae.models registers the zoo on import)
__getattr__, _, _ = lazy_loader.attach(
    __name__,
    submod_attrs={
        "models": [
            "UAE",
            "DecoderOutput",
            "EncoderOutput",
            "UAEConfig",
            "UAEOutput",
            "get_config",
            "list_models",
            "register_model",
        ],
        "errors": ["UAELoadError"],
        "factory": ["create_model"],
        "generation.pipeline": ["GenerationPipeline"],
        "utils": ["autocast_dtype"],
    },
)


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


def load_image(path: str, size: int | None = None, *, model=None):  # -> torch.Tensor
    """Read an image file as a model input ``(3, S, S)`` in ``[0, 1]``.

    With ``model`` (a :class:`uae.UAE`), the image is read the way that model is evaluated: its
    ``pretrained_cfg`` (a converted release's own crop and resize, e.g. the authors' 256 px ADM crop
    resized to 224 px; uae's centre crop for uae's models). With ``size`` only, uae's centre crop and
    antialiased bicubic resize to ``size``.

    16-bit and float images are scaled to 8 bits (never clipped); see :func:`uae.data.read_image`.

    Raises:
        FileNotFoundError: The file does not exist.
        ValueError: The file is not a readable image, exceeds the pixel budget
            (``UAE_MAX_IMAGE_PIXELS``, default 2**26 pixels), or neither ``size`` nor ``model`` is given.
    """
    from uae.data.transforms import resolve_data_config
    from uae.inference import load_image as _load

    config = resolve_data_config(model) if model is not None else None
    return _load(path, size, data_config=config)["image"]


__all__ = [
    "UAE",
    "DecoderOutput",
    "EncoderOutput",
    "GenerationPipeline",
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
