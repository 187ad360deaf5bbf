"""uae: Unified Autoencoding (The Prism Hypothesis) on PyTorch Lightning.

>>> import uae
>>> model = uae.create_model("uae_test")
>>> out = model(images)  # images: (B, 3, 32, 32) in [0, 1]
"""

__version__ = "0.1.0"

from uae.models import (  # noqa: E402
    UAE,
    DecoderOutput,
    EncoderOutput,
    UAEConfig,
    UAELoadError,
    UAEOutput,
    create_model,
    get_config,
    list_models,
    register_model,
)
from uae.utils import autocast_dtype  # noqa: E402


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
