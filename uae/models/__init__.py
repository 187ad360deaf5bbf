"""UAE model, config, registry and the named zoo.

The registry and the zoo's configs import without torch; the model classes are imported on first use
(PEP 562, with :func:`lazy_loader.attach`: the one lazy-import mechanism of the package).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import lazy_loader

from uae.models import zoo as _zoo  # noqa: F401  (registers the named configs)
from uae.models.config import UAEConfig
from uae.models.registry import get_config, list_models, register_model

if TYPE_CHECKING:  # pragma: no cover
    from uae.errors import UAELoadError
    from uae.models.outputs import DecoderOutput, EncoderOutput, UAEOutput
    from uae.models.uae import UAE

__getattr__, _, _ = lazy_loader.attach(
    __name__,
    submod_attrs={
        "uae": ["UAE"],
        "outputs": ["DecoderOutput", "EncoderOutput", "UAEOutput"],
        "hub": ["UAELoadError"],
    },
)

__all__ = [
    "UAE",
    "DecoderOutput",
    "EncoderOutput",
    "UAEConfig",
    "UAELoadError",
    "UAEOutput",
    "get_config",
    "list_models",
    "register_model",
]


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
