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
  next load is a plain safetensors load. Each entry records the size and SHA-256 of its files
  (``uae_manifest.json``) and is checked before it is used: a damaged, truncated or incomplete entry is
  converted again (one warning), never used.

Every path builds the model without initialising it and memory-maps the weights into it
(:mod:`uae.models.loading`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from uae.convert.release import canonical_source, fetch_release_files, get_converter, load_release
from uae.errors import InputError, MissingFileError, UAELoadError
from uae.files import remove_stale_temp_dirs, temp_dir_for, verify_manifest, write_json, write_manifest
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
    name: str,
    pretrained: bool = False,
    *,
    hub: HubOptions | None = None,
    torch_dtype: torch.dtype | str | None = None,
    device: str | torch.device | None = None,
    **kwargs: Any,
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
        torch_dtype: The model's dtype (``torch.bfloat16``, ``"float16"``, ...; ``"auto"``: the stored one;
            ``None``: float32), as :meth:`uae.UAE.from_pretrained`.
        device: Where the model goes (default CPU).
        **kwargs: The Hub keywords above (with ``pretrained``), and config fields to change (with
            ``pretrained``, only fields that keep shapes).

    Returns:
        The family's model (in eval mode when pretrained): a :class:`uae.UAE` for tokenizers, a
        :class:`uae.models.dit.DiTDH` for generators (``create_model("dit_dh_xl")``).

    Raises:
        InputError: Unknown name or tag, or a ``torch_dtype`` / ``device`` that cannot be used (a ``ValueError``).
        ConfigError: The config would not fit in this machine's memory (naming the field).
        MissingFileError: No weights exist for the architecture (naming the recipe that trains it), or
            they are not available offline (naming the repo and file; a ``FileNotFoundError``).
    """
    hub = HubOptions.pop_from(kwargs, hub)
    entry = get_entry(name)
    if not pretrained:
        from uae.models.loading import check_dtype_on_device, check_model_size, place, resolve_dtype

        config = get_config(entry.name, **kwargs)
        dtype = resolve_dtype(torch_dtype)
        if dtype not in (None, "auto"):
            check_dtype_on_device(dtype, device or "cpu")
        check_model_size(config)
        model = entry.model_class()(config)
        return place(model.to(dtype) if dtype not in (None, "auto") else model, device)
    tag = name.partition(".")[2]
    cfg = get_pretrained_cfg(f"{entry.name}.{tag}" if tag else entry.name)
    if cfg is None:
        hint = f" Train it with `uae fit --config {entry.recipe}`." if entry.recipe else ""
        raise MissingFileError(f"no pretrained weights for {entry.name!r}.{hint}")
    return load_pretrained(cfg, hub, torch_dtype=torch_dtype, device=device, **kwargs)


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
        model = create_model(spec, pretrained=pretrained, device=device)
    elif Path(spec).expanduser().is_dir() or is_repo_id(spec):
        location = str(Path(spec).expanduser()) if Path(spec).expanduser().is_dir() else spec
        fam = saved_model_family(location)
        _check_family(spec, fam.name, family)
        model = fam.model_class().from_pretrained(location, device=device)
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
    cfg: PretrainedCfg,
    hub: HubOptions | None = None,
    *,
    torch_dtype: torch.dtype | str | None = None,
    device: str | torch.device | None = None,
    **config_overrides: Any,
) -> UAE | DiTDH:
    """Load the weights of a weights-table entry (see the module docstring for the paths taken).

    Args:
        cfg: The entry (:func:`uae.models.pretrained.get_pretrained_cfg`).
        hub: Hub options; ``hub.revision`` overrides ``cfg.revision`` (the entry's own repo only).
        torch_dtype: The model's dtype (as :meth:`uae.UAE.from_pretrained`).
        device: Where the model goes.
        **config_overrides: Config fields to change (must keep shapes).

    Returns:
        The model (its architecture's family: :class:`uae.UAE` or :class:`uae.models.dit.DiTDH`) in eval mode.

    Raises:
        MissingFileError: Files unavailable (offline and not cached), naming repo and file.
        InputError: Unknown release format, or the converter rejects the files.
    """
    hub = hub or HubOptions()
    model_class = get_entry(cfg.architecture).model_class
    options = {"torch_dtype": torch_dtype, "device": device, **config_overrides}
    if cfg.source == NATIVE_SOURCE:
        location = native_location(cfg)
        return model_class().from_pretrained(
            location, hub=hub.replace(revision=hub.revision or cfg.revision), **options
        )
    canonical_source(cfg.source)  # an unknown format fails before any download
    try:
        paths, prov = fetch_release_files(cfg, hub)
    except FileNotFoundError as e:
        raise MissingFileError(f"weights {cfg.name}: {e}") from e
    # the model class is imported after the files are there: an offline miss fails fast
    return model_class().from_pretrained(convert_release_cached(cfg, paths, prov), **options)


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

    An entry is used only when it is whole: every file it was written with is there with its size and
    SHA-256 (:func:`uae.files.verify_manifest`; a stat when nothing changed since it was last checked). A
    missing, truncated or altered file is reported in one warning and the entry converted again. A
    conversion is written to a temporary sibling and renamed into place, so an interrupted one leaves
    nothing half-written in the cache; the temporary folders of killed conversions are removed here.
    """
    conv = get_converter(cfg.source)
    out = converted_dir(cfg, prov, conv.version)
    remove_stale_temp_dirs(out.parent)
    if out.exists():
        problems = verify_manifest(out, required=(CONFIG_NAME, WEIGHTS_NAME))
        if not problems:
            logger.info("Using the converted %s from %s", cfg.name, out)
            return out
        logger.warning(
            "The converted %s in %s cannot be used (%s): converting it again",
            cfg.name,
            out,
            "; ".join(problems),
        )
        shutil.rmtree(out, ignore_errors=True)
    logger.info("Converting %s (%s release); cached in %s", cfg.name, cfg.source, out)
    model = load_release(cfg.source, paths, name=cfg.architecture, **dict(cfg.options))
    with temp_dir_for(out) as tmp:
        model.save_pretrained(tmp)
        del model  # its tensors may be views of the release files
        provenance = {**cfg.to_dict(), "converter_version": conv.version, "resolved_files": dict(prov)}
        write_json(tmp / PROVENANCE_NAME, provenance, indent=2, sort_keys=True)
        write_manifest(tmp)
        try:
            os.replace(tmp, out)
        except OSError:  # another process finished first
            if verify_manifest(out, required=(CONFIG_NAME, WEIGHTS_NAME)):
                raise
    return out
