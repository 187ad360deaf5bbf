"""UAE model, config, registry and the named zoo.

The registry and the zoo's configs import without torch; the model classes are imported on first use.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from uae.models import zoo as _zoo  # noqa: F401  (registers the named configs)
from uae.models.config import UAEConfig
from uae.models.registry import get_config, list_models, register_model

_LAZY = {
    "UAE": "uae.models.uae",
    "UAELoadError": "uae.models.hub",
    "DecoderOutput": "uae.models.outputs",
    "EncoderOutput": "uae.models.outputs",
    "UAEOutput": "uae.models.outputs",
}

if TYPE_CHECKING:  # pragma: no cover
    from uae.models.hub import UAELoadError
    from uae.models.outputs import DecoderOutput, EncoderOutput, UAEOutput
    from uae.models.uae import UAE


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'uae.models' has no attribute {name!r}")


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
