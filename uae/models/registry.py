"""A registry of named UAE configurations, like timm's ``create_model``."""

from __future__ import annotations

import fnmatch
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from uae.models.config import UAEConfig


@dataclass(frozen=True)
class PretrainedSource:
    """Where a named model's trained weights live and what they are.

    Attributes:
        hub_id: Hub repo id, or ``None`` when not published.
        local_dir: Directory name under the checkpoint root (the repo's ``checkpoints/``), if embedded.
        status: ``"available"`` or ``"not trained"``.
        recipe: The recipe that produces the checkpoint.
        notes: Free text for the zoo index.
    """

    hub_id: str | None = None
    local_dir: str | None = None
    status: str = "not trained"
    recipe: str = ""
    notes: str = ""


@dataclass(frozen=True)
class ModelEntry:
    """One registered model name."""

    name: str
    config_fn: Callable[[], UAEConfig]
    pretrained: PretrainedSource
    description: str


_REGISTRY: dict[str, ModelEntry] = {}


def register_model(
    name: str | None = None, *, pretrained: PretrainedSource | None = None, description: str = ""
) -> Callable[[Callable[[], UAEConfig]], Callable[[], UAEConfig]]:
    """Decorator registering a function that returns a :class:`UAEConfig` under ``name``.

    Raises:
        ValueError: The name is already registered.
    """

    def wrap(fn: Callable[[], UAEConfig]) -> Callable[[], UAEConfig]:
        key = name or fn.__name__
        if key in _REGISTRY:
            raise ValueError(f"model name {key!r} is already registered")
        _REGISTRY[key] = ModelEntry(
            key, fn, pretrained or PretrainedSource(), description or (fn.__doc__ or "").strip()
        )
        return fn

    return wrap


def list_models(pattern: str | None = None, pretrained: bool = False) -> list[str]:
    """Registered model names, sorted.

    Args:
        pattern: Optional shell-style filter, e.g. ``"*dinov2*"``.
        pretrained: Only names whose trained weights are available.
    """
    names = sorted(_REGISTRY)
    if pattern:
        names = fnmatch.filter(names, pattern)
    if pretrained:
        names = [n for n in names if _REGISTRY[n].pretrained.status == "available"]
    return names


def get_entry(name: str) -> ModelEntry:
    """The registry entry of ``name``; ``ValueError`` listing the known names otherwise."""
    if name not in _REGISTRY:
        raise ValueError(f"unknown model name {name!r}; known models: {', '.join(list_models())}")
    return _REGISTRY[name]


def get_config(name: str, **overrides: Any) -> UAEConfig:
    """The config of a registered model with ``overrides`` applied."""
    cfg = get_entry(name).config_fn()
    return cfg.replace(**overrides) if overrides else cfg


def checkpoint_root() -> Path:
    """Directory of embedded checkpoints: ``$UAE_CHECKPOINT_DIR`` or the repository's ``checkpoints/``."""
    env = os.environ.get("UAE_CHECKPOINT_DIR")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[2] / "checkpoints"


def pretrained_location(name: str) -> str:
    """Local directory or Hub repo id of a named model's trained weights.

    Raises:
        FileNotFoundError: No trained weights exist yet (naming the recipe that produces them).
    """
    src = get_entry(name).pretrained
    if src.local_dir:
        path = checkpoint_root() / src.local_dir
        if (path / "model.safetensors").is_file():
            return str(path)
    if src.hub_id and src.status == "available":
        return src.hub_id
    hint = f" Train it with `uae fit --config {src.recipe}`." if src.recipe else ""
    raise FileNotFoundError(f"no pretrained weights for {name!r} yet (status: {src.status}).{hint}")


def create_model(name: str, pretrained: bool = False, **overrides: Any):  # -> UAE
    """Build a registered model.

    Args:
        name: A name from :func:`list_models`.
        pretrained: Load the trained UAE weights (embedded or from the Hub). Never touches DINOv2
            weights: for those call ``model.load_encoder_weights()``.
        **overrides: Config fields to change (with ``pretrained``, only fields that keep shapes).

    Returns:
        A :class:`uae.UAE` (in eval mode when pretrained).
    """
    from uae.models.uae import UAE

    if pretrained:
        get_entry(name)
        return UAE.from_pretrained(pretrained_location(name), **overrides)
    return UAE(get_config(name, **overrides))
