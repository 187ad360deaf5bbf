"""Building models by name, with their weights: ``create_model`` and the one model-spec resolver.

This module sits above :mod:`uae.models` and :mod:`uae.convert`: released weights in another format are
downloaded, converted by a converter and cached, so loading them needs both. Architectures and the
weights table themselves live in :mod:`uae.models.registry` and :mod:`uae.models.pretrained`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from uae.errors import InputError, MissingFileError
from uae.models import zoo as _zoo  # noqa: F401  (registers the named configs and weights)
from uae.models.hub import is_repo_id
from uae.models.pretrained import get_pretrained_cfg, load_pretrained
from uae.models.registry import get_config, get_entry, list_models

if TYPE_CHECKING:  # pragma: no cover
    import torch

    from uae.models.uae import UAE


def create_model(
    name: str,
    pretrained: bool = False,
    *,
    revision: str | None = None,
    cache_dir: str | os.PathLike | None = None,
    **overrides: Any,
) -> UAE:
    """Build a registered model, optionally with its weights (timm style).

    Args:
        name: An architecture from :func:`uae.list_models`, or ``arch.tag`` from ``list_models(pretrained=True)``.
        pretrained: Load weights: the tag's, or the architecture's default tag. Released weights in
            another format are downloaded once, converted strictly and cached. Never touches DINOv2
            weights of an untrained model: for those call ``model.load_encoder_weights()``.
        revision: Hub revision of the weights (default: the table's).
        cache_dir: Hub cache directory (default: huggingface_hub's).
        **overrides: Config fields to change (with ``pretrained``, only fields that keep shapes).

    Returns:
        A :class:`uae.UAE` (in eval mode when pretrained).

    Raises:
        ValueError: Unknown name or tag.
        FileNotFoundError: No weights exist for the architecture (naming the recipe that trains it), or
            they are not available offline (naming the repo and file).
    """
    entry = get_entry(name)
    if not pretrained:
        from uae.models.uae import UAE

        return UAE(get_config(entry.name, **overrides))
    tag = name.partition(".")[2]
    cfg = get_pretrained_cfg(f"{entry.name}.{tag}" if tag else entry.name)
    if cfg is None:
        hint = f" Train it with `uae fit --config {entry.recipe}`." if entry.recipe else ""
        raise MissingFileError(f"no pretrained weights for {entry.name!r}.{hint}")
    return load_pretrained(cfg, revision=revision, cache_dir=cache_dir, **overrides)


def load_model(spec: str, *, pretrained: bool = True, device: str | torch.device = "cpu") -> UAE:
    """A model in eval mode from a registered name, a ``save_pretrained`` directory or a Hub repo id.

    The one resolver behind every command's ``--model`` and the band explorer.

    Args:
        spec: A name from :func:`uae.list_models` (``arch`` or ``arch.tag``: its trained weights), a
            directory written by ``save_pretrained``, or ``org/name`` on the Hub (the Hub cache when offline).
        pretrained: For registered names: load the trained weights (``False``: random init, for smoke tests).
        device: Where to put the model.

    Returns:
        The model in eval mode with ``requires_grad=False``.

    Raises:
        InputError: ``spec`` is none of the three (a ``ValueError``).
        MissingFileError: Registered but without weights, or the directory's / repo's files are missing.
    """
    from uae.models.uae import UAE

    arch = spec.partition(".")[0]
    if arch in list_models() and (spec == arch or not Path(spec).exists()):
        model = create_model(spec, pretrained=pretrained)
    elif Path(spec).expanduser().is_dir():
        model = UAE.from_pretrained(str(Path(spec).expanduser()))
    elif is_repo_id(spec):
        model = UAE.from_pretrained(spec)
    else:
        raise InputError(
            f"unknown model {spec!r}: not a registered name (see `uae models`), an existing model directory, "
            "or a Hub repo id 'org/name'"
        )
    model.requires_grad_(False)
    return model.to(device).eval()
