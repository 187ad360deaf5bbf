"""Pretrained weights: a timm-style table of tagged weights, kept apart from the architecture registry.

An architecture (``uae_base_p14_dinov2``) is a config in :mod:`uae.models.registry`; the weights that
exist for them are :class:`PretrainedCfg` entries tagged ``arch.tag`` (``uae_base_p14_dinov2.authors_v2``).
The first tag registered for an architecture is its default: ``create_model(arch, pretrained=True)``.

This module is the table only (like timm's ``_pretrained.py``): where each set of weights lives, in
which format, under which terms. Loading an entry is :func:`uae.factory.create_model`: ``source="uae"``
entries are plain :meth:`uae.UAE.from_pretrained` loads of :func:`native_location`; release formats
(``authors_v1``, ``authors_v2``, ``rae``: :mod:`uae.convert.release`) are downloaded, converted strictly
and cached (:func:`uae.factory.load_pretrained`).
"""

from __future__ import annotations

import dataclasses
import fnmatch
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from uae.errors import InputError, MissingFileError
from uae.models.bundled import bundled_dir

#: ``PretrainedCfg.source`` of weights already in uae's ``save_pretrained`` layout (no converter).
NATIVE_SOURCE = "uae"


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
class GenerationDefaults:
    """What a generator release was trained on and how its authors sample it (a generator entry's field).

    Attributes:
        tokenizer: ``arch.tag`` of the tokenizer whose (normalised) latents the generator was trained on;
            it decodes the samples.
        latent_stats: Where that tokenizer's latent normalisation comes from (``"repo: file"``; the
            tokenizer entry loads it), for the record.
        guidance_model: ``arch.tag`` of the autoguidance model (``None``: none).
        guidance_method: ``"cfg"`` or ``"autoguidance"``.
        guidance_scale: The release's guidance scale (``<= 1``: no guidance).
        guidance_t_min, guidance_t_max: The guidance interval.
        mode: ``"ode"`` or ``"sde"``.
        method: The sampler (``"euler"``, ``"rk4"``, ...).
        num_steps: Grid points (the originals' ``num_steps``).
        shift_dim, shift_base: The time shift ``sqrt(shift_dim / shift_base)``.
        prediction: ``"velocity"`` or ``"x"``.
        config_source: The release config these values are copied from.
    """

    tokenizer: str
    latent_stats: str = ""
    guidance_model: str | None = None
    guidance_method: str = "cfg"
    guidance_scale: float = 1.0
    guidance_t_min: float = 0.0
    guidance_t_max: float = 1.0
    mode: str = "ode"
    method: str = "euler"
    num_steps: int = 50
    shift_dim: int = 196608
    shift_base: int = 4096
    prediction: str = "velocity"
    config_source: str = ""

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class PretrainedCfg:
    """Where one set of weights lives, in which format, under which terms, and what its authors report.

    Attributes:
        architecture: Registered architecture name.
        tag: Weights tag; the full name is ``architecture.tag``.
        source: ``"uae"`` (:data:`NATIVE_SOURCE`, uae's layout) or a release format of :mod:`uae.convert.release`
            (checked when the weights are loaded).
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
        generation: Generators only: the paired tokenizer and the release's sampling defaults.
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
    generation: GenerationDefaults | None = None

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
            **({"generation": self.generation.to_dict()} if self.generation is not None else {}),
        }


_PRETRAINED: dict[str, list[PretrainedCfg]] = {}


def register_pretrained(cfg: PretrainedCfg) -> PretrainedCfg:
    """Add a tagged weights entry (the first one of an architecture is its default).

    The source is not checked here (the release formats are a layer above, in :mod:`uae.convert.release`):
    loading an entry of an unknown format fails naming the known ones.

    Raises:
        InputError: Duplicate ``architecture.tag``, no source, or release entries without files.
    """
    if not cfg.source or not isinstance(cfg.source, str):
        raise InputError(f"{cfg.name}: source must be 'uae' or a release format, got {cfg.source!r}")
    if "." in cfg.architecture or not cfg.tag or "." in cfg.tag:
        raise InputError(f"pretrained names are 'architecture.tag' with one dot, got {cfg.name!r}")
    tags = _PRETRAINED.setdefault(cfg.architecture, [])
    if any(c.tag == cfg.tag for c in tags):
        raise InputError(f"pretrained weights {cfg.name!r} are already registered")
    if cfg.source != NATIVE_SOURCE and not cfg.files:
        raise InputError(f"{cfg.name}: release entries need their files")
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
        InputError: The tag is unknown for this architecture (listing its tags).
    """
    arch, tag = split_model_name(name)
    tags = _PRETRAINED.get(arch, [])
    if tag is None:
        return tags[0] if tags else None
    for c in tags:
        if c.tag == tag:
            return c
    known = ", ".join(f"{arch}.{t}" for t in pretrained_tags(arch)) or "none"
    raise InputError(f"unknown pretrained tag {tag!r} for {arch!r}; its weights: {known}")


def list_pretrained(pattern: str | None = None) -> list[str]:
    """All ``arch.tag`` names, sorted; ``pattern`` (shell style) matches the full name or the architecture."""
    names = sorted(c.name for tags in _PRETRAINED.values() for c in tags)
    if pattern:
        names = [n for n in names if fnmatch.fnmatch(n, pattern) or fnmatch.fnmatch(n.split(".")[0], pattern)]
    return names


def pretrained_cfgs() -> list[PretrainedCfg]:
    """Every entry, sorted by name."""
    return sorted((c for tags in _PRETRAINED.values() for c in tags), key=lambda c: c.name)


# ---------------------------------------------------------------------------------------------- where
def checkpoint_root() -> Path:
    """Directory of embedded checkpoints (``PretrainedCfg.local_dir`` is relative to it).

    ``$UAE_CHECKPOINT_DIR``, else the package's own copy (:func:`uae.models.bundled.bundled_dir`: the
    installed package data, or the source tree's ``checkpoints/``).
    """
    env = os.environ.get("UAE_CHECKPOINT_DIR")
    if env:
        return Path(env)
    return bundled_dir("checkpoints")


def native_location(cfg: PretrainedCfg) -> str:
    """Where a ``source="uae"`` entry's ``save_pretrained`` files are: the embedded directory, else the Hub repo.

    Returns:
        A local directory (when its ``model.safetensors`` exists) or the entry's ``hf_hub_id``, for
        :meth:`uae.UAE.from_pretrained`.

    Raises:
        InputError: ``cfg`` is a release entry (it needs a converter).
        MissingFileError: Neither the embedded directory nor a Hub repo exists for it.
    """
    if cfg.source != NATIVE_SOURCE:
        raise InputError(f"{cfg.name} is a {cfg.source!r} release: it is converted, not loaded as it is")
    if cfg.local_dir:
        path = checkpoint_root() / cfg.local_dir
        if (path / "model.safetensors").is_file():
            return str(path)
        if not cfg.hf_hub_id:
            raise MissingFileError(f"embedded checkpoint of {cfg.name} not found: {path}")
    if not cfg.hf_hub_id:
        raise MissingFileError(f"{cfg.name} has neither an embedded directory nor a Hub repo")
    return cfg.hf_hub_id
