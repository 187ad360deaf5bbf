"""Building models by name, with their weights: ``create_model``, ``load_pretrained`` and the one model-spec resolver.

This module sits above :mod:`uae.models` and :mod:`uae.convert`: released weights in another format are
downloaded, converted by a converter and cached, so loading them needs both. Architectures and the
weights table themselves live in :mod:`uae.models.registry` and :mod:`uae.models.pretrained`.

Loading a weights-table entry (:func:`load_pretrained`):

* ``source="uae"``: a checkpoint in uae's own layout, embedded under ``checkpoints/`` or on the Hub:
  a plain :meth:`uae.UAE.from_pretrained` (:func:`uae.models.pretrained.native_location`).
* a release format (:data:`uae.convert.release.RELEASE_SOURCES`: ``authors_v1``, ``authors_v2``, ``rae``):
  the original files are fetched with ``huggingface_hub`` (Hub cache, ``revision``, ``HF_HUB_OFFLINE``
  and an unreachable endpoint all honoured, see :func:`uae.models.hub.hub_download`), converted strictly
  by the format's ``load_release``, and the converted model is cached in ``save_pretrained`` layout under
  ``$UAE_CACHE`` (default ``$HF_HOME/uae/converted``), keyed by repo, commit and converter version: the
  next load is a plain safetensors load.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from uae.convert.release import canonical_source, fetch_release_files, get_converter, load_release
from uae.errors import InputError, MissingFileError, UAELoadError
from uae.models import zoo as _zoo  # noqa: F401  (registers the named configs and weights)
from uae.models.hub import (
    CONFIG_NAME,
    PROVENANCE_NAME,
    WEIGHTS_NAME,
    HubOptions,
    is_repo_id,
    resolve_pretrained_files,
)
from uae.models.pretrained import NATIVE_SOURCE, PretrainedCfg, get_pretrained_cfg, native_location
from uae.models.registry import ModelFamily, family_of_architecture, get_config, get_entry, list_models

if TYPE_CHECKING:  # pragma: no cover
    import torch

    from uae.models.dit import DiTDH
    from uae.models.uae import UAE

logger = logging.getLogger(__name__)


def create_model(
    name: str, pretrained: bool = False, *, hub: HubOptions | None = None, **kwargs: Any
) -> UAE | DiTDH:
    """Build a registered model of any family, optionally with its weights (timm style).

    Args:
        name: An architecture from :func:`uae.list_models`, or ``arch.tag`` from ``list_models(pretrained=True)``.
        pretrained: Load weights: the tag's, or the architecture's default tag. Released weights in
            another format are downloaded once, converted strictly and cached. Never touches DINOv2
            weights of an untrained model: for those call ``model.load_encoder_weights()``.
        hub: Hub options of the weights; the keywords ``revision`` (default: the table's), ``cache_dir``,
            ``local_files_only``, ``token`` and ``force_download`` (:class:`~uae.models.hub.HubOptions`)
            may be given directly instead.
        **kwargs: The Hub keywords above (with ``pretrained``), and config fields to change (with
            ``pretrained``, only fields that keep shapes).

    Returns:
        The family's model (in eval mode when pretrained): a :class:`uae.UAE` for tokenizers, a
        :class:`uae.models.dit.DiTDH` for generators (``create_model("dit_dh_xl")``).

    Raises:
        InputError: Unknown name or tag (a ``ValueError``).
        MissingFileError: No weights exist for the architecture (naming the recipe that trains it), or
            they are not available offline (naming the repo and file; a ``FileNotFoundError``).
    """
    hub = HubOptions.pop_from(kwargs, hub)
    entry = get_entry(name)
    if not pretrained:
        return entry.model_class()(get_config(entry.name, **kwargs))
    tag = name.partition(".")[2]
    cfg = get_pretrained_cfg(f"{entry.name}.{tag}" if tag else entry.name)
    if cfg is None:
        hint = f" Train it with `uae fit --config {entry.recipe}`." if entry.recipe else ""
        raise MissingFileError(f"no pretrained weights for {entry.name!r}.{hint}")
    return load_pretrained(cfg, hub, **kwargs)


def load_model(
    spec: str,
    *,
    pretrained: bool = True,
    device: str | torch.device = "cpu",
    family: str | None = "tokenizer",
) -> UAE | DiTDH:
    """A model in eval mode from a registered name, a ``save_pretrained`` directory or a Hub repo id.

    The one resolver behind every command's ``--model`` and the band explorer.

    Args:
        spec: A name from :func:`uae.list_models` (``arch`` or ``arch.tag``: its trained weights), a
            directory written by ``save_pretrained``, or ``org/name`` on the Hub (the Hub cache when offline).
        pretrained: For registered names: load the trained weights (``False``: random init, for smoke tests).
        device: Where to put the model.
        family: The model family the caller needs: ``"tokenizer"`` (default: every tokenizer command),
            ``"generator"``, or ``None`` for any. A model of another family is an :class:`InputError`.

    Returns:
        The model in eval mode with ``requires_grad=False``: a :class:`uae.UAE`, or a
        :class:`uae.models.dit.DiTDH` for a generator (the ``architecture`` of a directory's ``config.json``).

    Raises:
        InputError: ``spec`` is none of the three, or of another family (a ``ValueError``).
        MissingFileError: Registered but without weights, or the directory's / repo's files are missing.
    """
    arch = spec.partition(".")[0]
    if arch in list_models() and (spec == arch or not Path(spec).exists()):
        found = get_entry(arch).family
        _check_family(spec, found, family)
        model = create_model(spec, pretrained=pretrained)
    elif Path(spec).expanduser().is_dir() or is_repo_id(spec):
        location = str(Path(spec).expanduser()) if Path(spec).expanduser().is_dir() else spec
        fam = saved_model_family(location)
        _check_family(spec, fam.name, family)
        model = fam.model_class().from_pretrained(location)
    else:
        raise InputError(
            f"unknown model {spec!r}: not a registered name (see `uae models`), an existing model directory, "
            "or a Hub repo id 'org/name'"
        )
    model.requires_grad_(False)
    return model.to(device).eval()


def _check_family(spec: str, found: str, wanted: str | None) -> None:
    if wanted is not None and found != wanted:
        raise InputError(f"{spec!r} is a {found}, not a {wanted} (see `uae models`)", param="model")


def saved_model_family(location: str, hub: HubOptions | None = None) -> ModelFamily:
    """The model family of a ``save_pretrained`` directory or Hub repo, from its ``config.json``.

    Raises:
        MissingFileError: No ``config.json`` there.
        UAELoadError: ``config.json`` is not JSON or names an unknown architecture.
    """
    (config_file,) = resolve_pretrained_files(location, hub, filenames=(CONFIG_NAME,))
    try:
        raw = json.loads(Path(config_file).read_text())
        return family_of_architecture(str(raw.get("architecture", "UAE")))
    except (json.JSONDecodeError, AttributeError, InputError) as e:
        raise UAELoadError(f"{config_file}: {e}") from e


# ---------------------------------------------------------------------------------------------- weights
def load_pretrained(
    cfg: PretrainedCfg, hub: HubOptions | None = None, **config_overrides: Any
) -> UAE | DiTDH:
    """Load the weights of a weights-table entry (see the module docstring for the paths taken).

    Args:
        cfg: The entry (:func:`uae.models.pretrained.get_pretrained_cfg`).
        hub: Hub options; ``hub.revision`` overrides ``cfg.revision`` (the entry's own repo only).
        **config_overrides: Config fields to change (must keep shapes).

    Returns:
        The model (its architecture's family: :class:`uae.UAE` or :class:`uae.models.dit.DiTDH`) in eval mode.

    Raises:
        MissingFileError: Files unavailable (offline and not cached), naming repo and file.
        InputError: Unknown release format, or the converter rejects the files.
    """
    hub = hub or HubOptions()
    model_class = get_entry(cfg.architecture).model_class
    if cfg.source == NATIVE_SOURCE:
        location = native_location(cfg)
        return model_class().from_pretrained(
            location, hub=hub.replace(revision=hub.revision or cfg.revision), **config_overrides
        )
    canonical_source(cfg.source)  # an unknown format fails before any download
    try:
        paths, prov = fetch_release_files(cfg, hub)
    except FileNotFoundError as e:
        raise MissingFileError(f"weights {cfg.name}: {e}") from e
    # the model class is imported after the files are there: an offline miss fails fast
    return model_class().from_pretrained(convert_release_cached(cfg, paths, prov), **config_overrides)


def converted_cache_root() -> Path:
    """Where converted releases are cached: ``$UAE_CACHE``, else ``$HF_HOME/uae/converted``."""
    env = os.environ.get("UAE_CACHE")
    if env:
        return Path(env).expanduser()
    from huggingface_hub import constants

    return Path(os.environ.get("HF_HOME") or constants.HF_HOME).expanduser() / "uae" / "converted"


def _cache_key(cfg: PretrainedCfg, prov: Mapping[str, Mapping[str, Any]], converter_version: str) -> str:
    material = {
        "source": cfg.source,
        "converter": converter_version,
        "files": {
            r: [p["repo"], p["commit"] or p["revision"] or "main", p["filename"]] for r, p in prov.items()
        },
        "options": {k: repr(v) for k, v in sorted(cfg.options.items())},
    }
    return hashlib.sha256(json.dumps(material, sort_keys=True).encode()).hexdigest()[:16]


def converted_dir(cfg: PretrainedCfg, prov: Mapping[str, Mapping[str, Any]], converter_version: str) -> Path:
    """Cache directory of a converted release: ``<root>/models--org--name/<commit>/<arch.tag>-<key>``."""
    main = prov.get(next(iter(cfg.files))) if cfg.files else None
    repo = (main or {}).get("repo") or cfg.hf_hub_id or "local"
    commit = (main or {}).get("commit") or (main or {}).get("revision") or "main"
    return (
        converted_cache_root()
        / f"models--{repo.replace('/', '--')}"
        / str(commit)
        / f"{cfg.name}-{_cache_key(cfg, prov, converter_version)}"
    )


def convert_release_cached(
    cfg: PretrainedCfg,
    paths: Mapping[str, Path],
    prov: Mapping[str, Mapping[str, Any]],
) -> Path:
    """Directory of the converted model (``config.json`` + ``model.safetensors``), converting on a miss.

    The converter is called only when the directory does not exist yet; it is written to a temporary
    sibling and renamed into place, so an interrupted conversion leaves nothing half-written.
    """
    conv = get_converter(cfg.source)
    out = converted_dir(cfg, prov, conv.version)
    if (out / CONFIG_NAME).is_file() and (out / WEIGHTS_NAME).is_file():
        logger.info("Using the converted %s from %s", cfg.name, out)
        return out
    logger.info("Converting %s (%s release); cached in %s", cfg.name, cfg.source, out)
    model = load_release(cfg.source, paths, name=cfg.architecture, **dict(cfg.options))
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent))
    try:
        model.save_pretrained(tmp)
        provenance = {**cfg.to_dict(), "converter_version": conv.version, "resolved_files": dict(prov)}
        (tmp / PROVENANCE_NAME).write_text(json.dumps(provenance, indent=2, sort_keys=True) + "\n")
        try:
            os.replace(tmp, out)
        except OSError:  # another process finished first
            if not (out / WEIGHTS_NAME).is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out
