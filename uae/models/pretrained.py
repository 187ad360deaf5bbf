"""Pretrained weights: a timm-style table of tagged weights, kept apart from the architecture registry.

An architecture (``uae_base_p14_dinov2``) is a config in :mod:`uae.models.registry`; the weights that
exist for it are :class:`PretrainedCfg` entries tagged ``arch.tag`` (``uae_base_p14_dinov2.authors_v2``).
The first tag registered for an architecture is its default: ``create_model(arch, pretrained=True)``.

Loading an entry (:func:`load_pretrained`):

* ``source="uae"``: a checkpoint in uae's own layout, embedded under ``checkpoints/`` or on the Hub:
  a plain :meth:`uae.UAE.from_pretrained`.
* a release format (``authors_v1``, ``authors_v2``, ``rae``): the original files are fetched with
  ``huggingface_hub`` (Hub cache, ``revision``, ``HF_HUB_OFFLINE`` and an unreachable endpoint all
  honoured, see :func:`uae.models.hub.hub_download`), converted strictly by
  ``uae.convert.<source>.load_release``, and the converted model is cached in ``save_pretrained``
  layout under ``$UAE_CACHE`` (default ``$HF_HOME/uae/converted``), keyed by repo, commit and
  converter version: the next load is a plain safetensors load.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from uae.models.hub import CONFIG_NAME, WEIGHTS_NAME, hub_download, snapshot_commit

logger = logging.getLogger(__name__)

SOURCES = ("uae", "authors_v1", "authors_v2", "rae")
PROVENANCE_NAME = "uae_provenance.json"


@dataclass(frozen=True)
class PretrainedFile:
    """One file of a release.

    Attributes:
        filename: Path inside the Hub repo.
        repo: Hub repo holding it when not the entry's ``hf_hub_id`` (e.g. RAE's encoder weights).
        revision: Revision of ``repo`` (only with ``repo``; else the entry's revision).
        verified: ``False`` when the path is inferred, not confirmed by the release's own docs/configs.
    """

    filename: str
    repo: str | None = None
    revision: str | None = None
    verified: bool = True


@dataclass(frozen=True)
class PretrainedCfg:
    """Where one set of weights lives, in which format, under which terms, and what its authors report.

    Attributes:
        architecture: Registered architecture name.
        tag: Weights tag; the full name is ``architecture.tag``.
        source: ``"uae"`` (native layout) or a release format of :mod:`uae.convert.release`.
        hf_hub_id: Hub repo of the files (``None``: embedded only).
        files: File role -> :class:`PretrainedFile` (roles of the format's ``RELEASE_FILES``).
        revision: Hub revision (branch, tag or commit); ``None`` is ``main`` (not pinned).
        local_dir: Embedded directory under the checkpoint root (``source="uae"`` only).
        license: License id for model cards (of the weights' release).
        license_note: Where the license comes from, and any caveat.
        paper_metrics: The authors' reported numbers (not measured by uae), e.g. ``{"imagenet1k_val.psnr": 32.17}``.
        metrics_source: Where ``paper_metrics`` are quoted from (document, commit, protocol).
        options: Keyword options passed to the converter's ``load_release``.
        notes: Free text (uncertainties included).
    """

    architecture: str
    tag: str
    source: str
    hf_hub_id: str | None = None
    files: Mapping[str, PretrainedFile] = field(default_factory=dict)
    revision: str | None = None
    local_dir: str | None = None
    license: str = ""
    license_note: str = ""
    paper_metrics: Mapping[str, float] = field(default_factory=dict)
    metrics_source: str = ""
    options: Mapping[str, Any] = field(default_factory=dict)
    notes: str = ""

    @property
    def name(self) -> str:
        """``architecture.tag``."""
        return f"{self.architecture}.{self.tag}"

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable summary (for provenance files and model cards)."""
        return {
            "name": self.name,
            "source": self.source,
            "hf_hub_id": self.hf_hub_id,
            "revision": self.revision,
            "files": {
                r: {"filename": f.filename, "repo": f.repo or self.hf_hub_id, "verified": f.verified}
                for r, f in self.files.items()
            },
            "license": self.license,
            "paper_metrics": dict(self.paper_metrics),
            "metrics_source": self.metrics_source,
        }


_PRETRAINED: dict[str, list[PretrainedCfg]] = {}


def register_pretrained(cfg: PretrainedCfg) -> PretrainedCfg:
    """Add a tagged weights entry (the first one of an architecture is its default).

    Raises:
        ValueError: Duplicate ``architecture.tag``, unknown source, or ``uae`` entries with release files.
    """
    if cfg.source not in SOURCES:
        from uae.convert.release import release_sources

        if cfg.source not in release_sources():
            raise ValueError(f"unknown source {cfg.source!r} for {cfg.name}; known: {SOURCES}")
    if "." in cfg.architecture or not cfg.tag or "." in cfg.tag:
        raise ValueError(f"pretrained names are 'architecture.tag' with one dot, got {cfg.name!r}")
    tags = _PRETRAINED.setdefault(cfg.architecture, [])
    if any(c.tag == cfg.tag for c in tags):
        raise ValueError(f"pretrained weights {cfg.name!r} are already registered")
    if cfg.source != "uae" and not cfg.files:
        raise ValueError(f"{cfg.name}: release entries need their files")
    tags.append(cfg)
    return cfg


def unregister_pretrained(name: str) -> None:
    """Remove ``architecture.tag`` (for tests and plugins)."""
    arch, tag = split_model_name(name)
    tags = _PRETRAINED.get(arch, [])
    _PRETRAINED[arch] = [c for c in tags if c.tag != tag]
    if not _PRETRAINED[arch]:
        del _PRETRAINED[arch]


def split_model_name(name: str) -> tuple[str, str | None]:
    """``"arch.tag"`` -> ``("arch", "tag")``; ``"arch"`` -> ``("arch", None)``."""
    arch, _, tag = name.partition(".")
    return arch, tag or None


def pretrained_tags(architecture: str) -> list[str]:
    """Tags of an architecture, default first."""
    return [c.tag for c in _PRETRAINED.get(architecture, [])]


def get_pretrained_cfg(name: str) -> PretrainedCfg | None:
    """The entry for ``arch.tag``, or the default tag of ``arch``; ``None`` when ``arch`` has no weights.

    Raises:
        ValueError: The tag is unknown for this architecture (listing its tags).
    """
    arch, tag = split_model_name(name)
    tags = _PRETRAINED.get(arch, [])
    if tag is None:
        return tags[0] if tags else None
    for c in tags:
        if c.tag == tag:
            return c
    known = ", ".join(f"{arch}.{t}" for t in pretrained_tags(arch)) or "none"
    raise ValueError(f"unknown pretrained tag {tag!r} for {arch!r}; its weights: {known}")


def list_pretrained(pattern: str | None = None) -> list[str]:
    """All ``arch.tag`` names, sorted; ``pattern`` (shell style) matches the full name or the architecture."""
    names = sorted(c.name for tags in _PRETRAINED.values() for c in tags)
    if pattern:
        names = [n for n in names if fnmatch.fnmatch(n, pattern) or fnmatch.fnmatch(n.split(".")[0], pattern)]
    return names


def pretrained_cfgs() -> list[PretrainedCfg]:
    """Every entry, sorted by name."""
    return sorted((c for tags in _PRETRAINED.values() for c in tags), key=lambda c: c.name)


# ---------------------------------------------------------------------------------------------- loading
def converted_cache_root() -> Path:
    """Where converted releases are cached: ``$UAE_CACHE``, else ``$HF_HOME/uae/converted``."""
    env = os.environ.get("UAE_CACHE")
    if env:
        return Path(env).expanduser()
    from huggingface_hub import constants

    return Path(os.environ.get("HF_HOME") or constants.HF_HOME).expanduser() / "uae" / "converted"


def fetch_release_files(
    cfg: PretrainedCfg,
    *,
    revision: str | None = None,
    cache_dir: str | os.PathLike | None = None,
    local_files_only: bool = False,
    token: str | bool | None = None,
    force_download: bool = False,
) -> tuple[dict[str, Path], dict[str, dict[str, str | None]]]:
    """Download (or read from the Hub cache) every file of a release entry.

    Returns:
        (role -> local path, role -> ``{"repo", "revision", "commit", "filename"}``).

    Raises:
        FileNotFoundError: A file is unavailable (naming repo and file; unconfirmed paths say so).
    """
    paths: dict[str, Path] = {}
    prov: dict[str, dict[str, str | None]] = {}
    for role, f in cfg.files.items():
        repo = f.repo or cfg.hf_hub_id
        if repo is None:
            raise FileNotFoundError(f"{cfg.name}: no Hub repo for file role {role!r}")
        rev = f.revision if f.repo else (revision or cfg.revision)
        hint = ""
        if not f.verified:
            hint = (
                f"but this path of the {cfg.source} release is not confirmed (see `uae models --pretrained`): "
                "if the release names it differently, download its files and convert them locally with "
                f"`uae.convert.release.load_release('{cfg.source}', files)` or "
                f"`uae publish --from {cfg.source} FILE --dry-run ...`"
            )
        paths[role] = hub_download(
            repo,
            f.filename,
            revision=rev,
            cache_dir=cache_dir,
            local_files_only=local_files_only,
            token=token,
            force_download=force_download,
            hint=hint,
        )
        prov[role] = {
            "repo": repo,
            "revision": rev,
            "commit": snapshot_commit(paths[role]),
            "filename": f.filename,
        }
    return paths, prov


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
    from uae.convert.release import get_converter, load_release

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


def load_pretrained(
    cfg: PretrainedCfg,
    *,
    revision: str | None = None,
    cache_dir: str | os.PathLike | None = None,
    local_files_only: bool = False,
    token: str | bool | None = None,
    force_download: bool = False,
    **config_overrides: Any,
):  # -> UAE
    """Load the weights of an entry (see the module docstring for the paths taken).

    Args:
        cfg: The entry (:func:`get_pretrained_cfg`).
        revision: Hub revision overriding ``cfg.revision`` (main repo only).
        cache_dir, local_files_only, token, force_download: As ``hf_hub_download``.
        **config_overrides: Config fields to change (must keep shapes).

    Returns:
        A :class:`uae.UAE` in eval mode.

    Raises:
        FileNotFoundError: Files unavailable (offline and not cached), naming repo and file.
        ValueError: The converter rejects the files, or its format is not available in this build.
    """
    from uae.models.registry import checkpoint_root

    hub_kw = {"cache_dir": cache_dir, "local_files_only": local_files_only, "token": token}
    if cfg.source == "uae":
        from uae.models.uae import UAE

        if cfg.local_dir:
            path = checkpoint_root() / cfg.local_dir
            if (path / WEIGHTS_NAME).is_file():
                return UAE.from_pretrained(path, **config_overrides)
            if not cfg.hf_hub_id:
                raise FileNotFoundError(f"embedded checkpoint of {cfg.name} not found: {path}")
        if not cfg.hf_hub_id:
            raise FileNotFoundError(f"{cfg.name} has neither an embedded directory nor a Hub repo")
        return UAE.from_pretrained(
            cfg.hf_hub_id,
            revision=revision or cfg.revision,
            force_download=force_download,
            **hub_kw,
            **config_overrides,
        )
    try:
        paths, prov = fetch_release_files(cfg, revision=revision, force_download=force_download, **hub_kw)
    except FileNotFoundError as e:
        raise FileNotFoundError(f"weights {cfg.name}: {e}") from e
    from uae.models.uae import UAE  # imported after the files are there: an offline miss fails fast

    return UAE.from_pretrained(convert_release_cached(cfg, paths, prov), **config_overrides)
