"""A registry of named UAE architectures (configs), like timm's ``_registry.py``.

Architectures only: the weights that exist for them are the ``arch.tag`` entries of
:mod:`uae.models.pretrained`; building a model with its weights is :func:`uae.factory.create_model`.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from uae.errors import InputError
from uae.models.config import UAEConfig
from uae.models.pretrained import list_pretrained, pretrained_tags


@dataclass(frozen=True)
class ModelEntry:
    """One registered architecture.

    Attributes:
        name: Registry name.
        config_fn: Returns the architecture's :class:`UAEConfig`.
        description: One line for listings.
        recipe: The uae recipe that trains it (empty when none).
        notes: Free text for the zoo index.

    Weights are not part of an architecture: see :mod:`uae.models.pretrained` (``arch.tag`` entries).
    """

    name: str
    config_fn: Callable[[], UAEConfig]
    description: str
    recipe: str = ""
    notes: str = ""

    @property
    def pretrained_tags(self) -> list[str]:
        """Tags of the weights registered for this architecture (default first)."""
        return pretrained_tags(self.name)


_REGISTRY: dict[str, ModelEntry] = {}
_ALIASES: dict[str, str] = {}


def register_model(
    name: str | None = None, *, description: str = "", recipe: str = "", notes: str = ""
) -> Callable[[Callable[[], UAEConfig]], Callable[[], UAEConfig]]:
    """Decorator registering a function that returns a :class:`UAEConfig` under ``name``.

    Raises:
        InputError: The name is already registered, or contains a dot (reserved for ``arch.tag``).
    """

    def wrap(fn: Callable[[], UAEConfig]) -> Callable[[], UAEConfig]:
        key = name or fn.__name__
        if key in _REGISTRY or key in _ALIASES:
            raise InputError(f"model name {key!r} is already registered")
        if "." in key:
            raise InputError(f"model names cannot contain '.', got {key!r} (the dot separates a weights tag)")
        _REGISTRY[key] = ModelEntry(key, fn, description or (fn.__doc__ or "").strip(), recipe, notes)
        return fn

    return wrap


def register_alias(alias: str, name: str) -> None:
    """Make ``alias`` resolve to the registered ``name`` (old names of renamed architectures; not listed)."""
    if alias in _REGISTRY or alias in _ALIASES:
        raise InputError(f"model name {alias!r} is already registered")
    _ALIASES[alias] = name


def list_models(pattern: str | None = None, pretrained: bool = False) -> list[str]:
    """Registered architecture names, or (``pretrained=True``) the ``arch.tag`` names of weights, sorted.

    Args:
        pattern: Optional shell-style filter, e.g. ``"*dinov2*"`` (with ``pretrained``, matched against
            the full ``arch.tag`` or the architecture).
        pretrained: List the weights that exist (converted releases and uae's own) instead of architectures.
    """
    if pretrained:
        return list_pretrained(pattern)
    names = sorted(_REGISTRY)
    if pattern:
        names = fnmatch.filter(names, pattern)
    return names


def get_entry(name: str) -> ModelEntry:
    """The registry entry of ``name`` (an alias, or ``arch.tag``, resolves to its architecture).

    Raises:
        InputError: Unknown name, listing the known names.
    """
    arch = name.partition(".")[0]
    arch = _ALIASES.get(arch, arch)
    if arch not in _REGISTRY:
        raise InputError(f"unknown model name {name!r}; known models: {', '.join(list_models())}")
    return _REGISTRY[arch]


def get_config(name: str, **overrides: Any) -> UAEConfig:
    """The config of a registered architecture (``arch.tag`` and aliases resolve) with ``overrides`` applied."""
    cfg = get_entry(name).config_fn()
    return cfg.replace(**overrides) if overrides else cfg
