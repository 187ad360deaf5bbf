"""UAE model, config, registry and the named zoo."""

from uae.models import zoo as _zoo  # noqa: F401  (registers the named configs)
from uae.models.config import UAEConfig
from uae.models.hub import UAELoadError
from uae.models.outputs import DecoderOutput, EncoderOutput, UAEOutput
from uae.models.registry import create_model, get_config, list_models, register_model
from uae.models.uae import UAE

__all__ = [
    "UAE",
    "DecoderOutput",
    "EncoderOutput",
    "UAEConfig",
    "UAELoadError",
    "UAEOutput",
    "create_model",
    "get_config",
    "list_models",
    "register_model",
]
