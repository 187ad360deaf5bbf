"""A registry of named architectures (configs) of every model family, like timm's ``_registry.py``.

One registry over several model families (:data:`FAMILIES`): the tokenizers (:class:`uae.UAE`, built from
a :class:`~uae.models.config.UAEConfig`) and the latent generators (:class:`uae.models.dit.DiTDH`, built
from a :class:`~uae.models.dit_config.DiTDHConfig`). An entry's family says which class its config builds.

Architectures only: the weights that exist for them are the ``arch.tag`` entries of
:mod:`uae.models.pretrained`; building a model with its weights is :func:`uae.factory.create_model`.
"""

from __future__ import annotations

import fnmatch
import importlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from uae.errors import InputError
from uae.models.config import ARCHITECTURE as UAE_ARCHITECTURE
from uae.models.config import UAEConfig
from uae.models.dit_config import ARCHITECTURE as DIT_ARCHITECTURE
from uae.models.dit_config import DiTDHConfig
from uae.models.pretrained import list_pretrained, pretrained_tags

#: A config of any family.
ModelConfig = UAEConfig | DiTDHConfig


@dataclass(frozen=True)
class ModelFamily:
    """One kind of model the registry builds.

    Attributes:
        name: ``"tokenizer"`` or ``"generator"``.
        architecture: The ``architecture`` stamped into its ``config.json``.
        config_class: Its flat config dataclass.
        model_class_path: ``"module:Class"`` of the model (imported on first use, so the registry and the
            zoo stay importable without torch).
        description: One line for listings.
    """

    name: str
    architecture: str
    config_class: type
    model_class_path: str
    description: str = ""

    def model_class(self) -> type:
        """The model class (``uae.UAE``, ``uae.models.dit.DiTDH``)."""
        module, _, cls = self.model_class_path.partition(":")
        return getattr(importlib.import_module(module), cls)


#: The model families, by name.
FAMILIES: dict[str, ModelFamily] = {
    "tokenizer": ModelFamily(
        "tokenizer", UAE_ARCHITECTURE, UAEConfig, "uae.models.uae:UAE", "image tokenizers (UAE, RAE)"
    ),
    "generator": ModelFamily(
        "generator",
        DIT_ARCHITECTURE,
        DiTDHConfig,
        "uae.models.dit:DiTDH",
        "class-conditional latent generators (DiT-DH)",
    ),
}


def get_family(name: str) -> ModelFamily:
    """A family by name.

    Raises:
        InputError: Unknown family, listing the known ones (``param="family"``).
    """
    if name not in FAMILIES:
        raise InputError(f"unknown model family {name!r}; known: {', '.join(FAMILIES)}", param="family")
    return FAMILIES[name]


def family_of_architecture(architecture: str) -> ModelFamily:
    """The family whose ``config.json`` carries ``"architecture": architecture``.

    Raises:
        InputError: No family has that architecture.
    """
    for fam in FAMILIES.values():
        if fam.architecture == architecture:
            return fam
    known = ", ".join(f.architecture for f in FAMILIES.values())
    raise InputError(f"unknown architecture {architecture!r} in config.json; known: {known}")


@dataclass(frozen=True)
class ModelEntry:
    """One registered architecture.

    Attributes:
        name: Registry name.
        config_fn: Returns the architecture's config (a :class:`UAEConfig` for tokenizers, a
            :class:`DiTDHConfig` for generators).
        description: One line for listings.
        recipe: The uae recipe that trains it (empty when none).
        notes: Free text for the zoo index.
        family: The model family (:data:`FAMILIES`): ``"tokenizer"`` or ``"generator"``.

    Weights are not part of an architecture: see :mod:`uae.models.pretrained` (``arch.tag`` entries).
    """

    name: str
    config_fn: Callable[[], ModelConfig]
    description: str
    recipe: str = ""
    notes: str = ""
    family: str = "tokenizer"

    @property
    def pretrained_tags(self) -> list[str]:
        """Tags of the weights registered for this architecture (default first)."""
        return pretrained_tags(self.name)

    def model_class(self) -> type:
        """The class its config builds (its family's)."""
        return FAMILIES[self.family].model_class()


_REGISTRY: dict[str, ModelEntry] = {}
_ALIASES: dict[str, str] = {}


def register_model(
    name: str | None = None,
    *,
    description: str = "",
    recipe: str = "",
    notes: str = "",
    family: str = "tokenizer",
) -> Callable[[Callable[[], ModelConfig]], Callable[[], ModelConfig]]:
    """Decorator registering a function that returns a config under ``name``.

    Args:
        name: Registry name (default: the function's name).
        description, recipe, notes: See :class:`ModelEntry`.
        family: ``"tokenizer"`` (the function returns a :class:`UAEConfig`) or ``"generator"``
            (a :class:`DiTDHConfig`).

    Raises:
        InputError: The name is already registered, contains a dot (reserved for ``arch.tag``), or the
            family is unknown.
    """
    get_family(family)

    def wrap(fn: Callable[[], ModelConfig]) -> Callable[[], ModelConfig]:
        key = name or fn.__name__
        if key in _REGISTRY or key in _ALIASES:
            raise InputError(f"model name {key!r} is already registered")
        if "." in key:
            raise InputError(f"model names cannot contain '.', got {key!r} (the dot separates a weights tag)")
        doc = description or (fn.__doc__ or "").strip()
        _REGISTRY[key] = ModelEntry(key, fn, doc, recipe, notes, family)
        return fn

    return wrap


def register_alias(alias: str, name: str) -> None:
    """Make ``alias`` resolve to the registered ``name`` (old names of renamed architectures; not listed)."""
    if alias in _REGISTRY or alias in _ALIASES:
        raise InputError(f"model name {alias!r} is already registered")
    _ALIASES[alias] = name


def unregister_model(name: str) -> None:
    """Remove a registered architecture (for tests and plugins; its weights entries stay)."""
    _REGISTRY.pop(name, None)


def is_registered_name(spec: str) -> bool:
    """``spec`` is ``arch`` or ``arch.tag`` of a registered model and no file or folder of that name exists
    (a local path of the same name wins): how ``--model.pretrained`` and its model card read a name."""
    return spec.partition(".")[0] in list_models() and not Path(spec).expanduser().exists()


def list_models(pattern: str | None = None, pretrained: bool = False, family: str | None = None) -> list[str]:
    """Registered architecture names, or (``pretrained=True``) the ``arch.tag`` names of weights, sorted.

    Args:
        pattern: Optional shell-style filter, e.g. ``"*dinov2*"`` (with ``pretrained``, matched against
            the full ``arch.tag`` or the architecture).
        pretrained: List the weights that exist (converted releases and uae's own) instead of architectures.
        family: Only this model family (``"tokenizer"``, ``"generator"``); ``None``: all.
    """
    if family is not None:
        get_family(family)
    if pretrained:
        names = list_pretrained(pattern)
        if family is not None:
            names = [n for n in names if _family_name(n.partition(".")[0]) == family]
        return names
    names = sorted(n for n, e in _REGISTRY.items() if family is None or e.family == family)
    if pattern:
        names = fnmatch.filter(names, pattern)
    return names


def _family_name(arch: str) -> str | None:
    entry = _REGISTRY.get(_ALIASES.get(arch, arch))
    return entry.family if entry else None


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


def get_config(name: str, **overrides: Any) -> ModelConfig:
    """The config of a registered architecture (``arch.tag`` and aliases resolve) with ``overrides`` applied.

    A :class:`UAEConfig` for tokenizers, a :class:`DiTDHConfig` for generators.
    """
    cfg = get_entry(name).config_fn()
    return cfg.replace(**overrides) if overrides else cfg
