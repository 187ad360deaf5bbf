"""The release formats uae converts, in one table, and the one dispatch to their converters.

:data:`RELEASE_SOURCES` names each format once (with the older names it still answers to, such as
``authors`` for ``authors_v1``) and the module that converts it. Every entry point reads it:
``uae convert --from``, ``uae publish --from`` and ``create_model(..., pretrained=True)`` (through
the weights table's ``PretrainedCfg.source``).

Each format's module exposes

* ``RELEASE_FILES: dict[str, bool]`` - file role -> required?
* ``load_release(files, *, name=None, **options) -> UAE`` - the converted model (eval mode), strictly.
* optionally ``CONVERTER_VERSION: str`` (part of the converted-cache key; defaults to a hash of the
  module's source, so any change to a converter invalidates what it converted before) and
  ``CONVERSION_CHECK: str`` (one sentence for model cards: what was compared with the original code,
  at what tolerance).

Formats: ``authors_v1`` (WeichenFan/UAE branch ``old_uae``), ``authors_v2`` (branch ``main``),
``rae`` (bytetriper/RAE decoders), ``dit`` (the DiT-DH generators of both; its ``load_release`` returns a
:class:`uae.models.dit.DiTDH`, the others a :class:`uae.UAE`). ``uae`` native checkpoints need no converter. This module imports
no converter (nor torch) until one is used, so the command line can read the table for its ``--help``.
"""

from __future__ import annotations

import hashlib
import importlib
import inspect
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from uae._version import __version__
from uae.errors import InputError, MissingFileError

if TYPE_CHECKING:  # pragma: no cover
    from uae.models.hub import HubOptions
    from uae.models.pretrained import PretrainedCfg
    from uae.models.uae import UAE


@dataclass(frozen=True)
class ReleaseSource:
    """One release format of :data:`RELEASE_SOURCES`.

    Attributes:
        name: The format's name (``PretrainedCfg.source``, ``--from``).
        module: The module converting it (``RELEASE_FILES``, ``load_release``, ...).
        aliases: Other names it answers to (earlier command-line names).
        beside: File role -> file name looked for beside the main file when the role is not given
            (the authors' v2 ``config.yaml`` next to ``ep-last.pt``).
        summary: One line for listings and help texts.
    """

    name: str
    module: str
    aliases: tuple[str, ...] = ()
    beside: Mapping[str, str] = field(default_factory=dict)
    summary: str = ""


#: The release formats uae converts: the one table of sources.
RELEASE_SOURCES: tuple[ReleaseSource, ...] = (
    ReleaseSource(
        "authors_v1",
        "uae.convert.authors_v1",
        aliases=("authors",),
        summary="the authors' v1 checkpoint (.pt with 'model'/'ema', WeichenFan/UAE branch old_uae)",
    ),
    ReleaseSource(
        "authors_v2",
        "uae.convert.authors_v2",
        beside={"config": "config.yaml"},
        summary="the authors' v2 release (checkpoints/<encoder>/ep-last.pt + config.yaml)",
    ),
    ReleaseSource("rae", "uae.convert.rae", summary="an RAE decoder (model.pt, bytetriper/RAE)"),
    ReleaseSource(
        "dit",
        "uae.convert.dit",
        summary="a DiT-DH generator (RAE's stage2_model.pt, the authors' stage_2.pt; + its sampling YAML)",
    ),
)


@dataclass(frozen=True)
class ReleaseConverter:
    """One release format's converter, as resolved from its module (or registered directly)."""

    source: str
    load_release: Callable[..., Any]
    files: Mapping[str, bool]
    version: str
    check: str = ""

    @property
    def main_role(self) -> str:
        """The first required file role (the file ``uae convert`` and ``uae publish`` take as argument)."""
        return next(r for r, required in self.files.items() if required)


_REGISTERED: dict[str, ReleaseConverter] = {}


def register_release_source(
    source: str,
    load_release: Callable[..., Any],
    files: Mapping[str, bool],
    *,
    version: str = "1",
    check: str = "",
) -> ReleaseConverter:
    """Register (or replace) a converter for ``source`` without a module (plugins, tests).

    Returns:
        The registered :class:`ReleaseConverter`; remove it with :func:`unregister_release_source`.
    """
    conv = ReleaseConverter(source, load_release, dict(files), version, check)
    _REGISTERED[source] = conv
    return conv


def unregister_release_source(source: str) -> None:
    """Undo :func:`register_release_source`."""
    _REGISTERED.pop(source, None)


def release_sources(*, aliases: bool = False) -> list[str]:
    """Known release formats (the table's and registered ones), sorted; with ``aliases``, their other names too."""
    names = {s.name for s in RELEASE_SOURCES} | set(_REGISTERED)
    if aliases:
        names |= {a for s in RELEASE_SOURCES for a in s.aliases}
    return sorted(names)


def release_source(source: str) -> ReleaseSource | None:
    """The table's row for ``source`` or one of its aliases (``None`` for registered or unknown formats)."""
    return next((s for s in RELEASE_SOURCES if source == s.name or source in s.aliases), None)


def canonical_source(source: str) -> str:
    """The name of a release format given by its name or an alias (``"authors"`` -> ``"authors_v1"``).

    Raises:
        InputError: Unknown format, listing the known ones (``param="source"``).
    """
    if source in _REGISTERED:
        return source
    row = release_source(source)
    if row is None:
        raise InputError(
            f"unknown release format {source!r}; known: {', '.join(release_sources())}", param="source"
        )
    return row.name


def get_converter(source: str) -> ReleaseConverter:
    """The converter of a release format (aliases resolve), read from its module now.

    Raises:
        InputError: Unknown format (``param="source"``), or its module does not implement
            ``load_release`` in this build.
    """
    if source in _REGISTERED:
        return _REGISTERED[source]
    row = release_source(canonical_source(source))
    assert row is not None
    try:
        mod = importlib.import_module(row.module)
    except ModuleNotFoundError as e:
        raise InputError(f"the {row.name!r} converter ({row.module}) is not part of this build") from e
    fn = getattr(mod, "load_release", None)
    files = getattr(mod, "RELEASE_FILES", None)
    if not callable(fn) or not isinstance(files, Mapping):
        raise InputError(
            f"{row.module} does not provide load_release/RELEASE_FILES in this build: "
            f"the {row.name!r} converter is not available"
        )
    version = getattr(mod, "CONVERTER_VERSION", None)
    if not version:
        src = inspect.getsource(mod).encode()
        version = f"{__version__}+{hashlib.sha256(src).hexdigest()[:12]}"
    return ReleaseConverter(
        row.name, fn, dict(files), str(version), str(getattr(mod, "CONVERSION_CHECK", ""))
    )


def check_release_files(source: str, files: Mapping[str, str | os.PathLike]) -> dict[str, Path]:
    """Validate a role -> path mapping against the format's ``RELEASE_FILES``.

    Raises:
        InputError: Unknown role.
        MissingFileError: A required role is not given, or a given file does not exist.
    """
    from uae.convert.common import check_release_call

    check_release_call(source, files, get_converter(source).files)
    out = {}
    for role, p in files.items():
        path = Path(p).expanduser()
        if not path.is_file():
            raise MissingFileError(f"{source} {role} file not found: {path}")
        out[role] = path
    return out


def load_release(
    source: str, files: Mapping[str, str | os.PathLike], *, name: str | None = None, **options: Any
) -> UAE:
    """Convert one original release from local files (strict; see the format's module).

    Args:
        source: ``"authors_v1"`` (or ``"authors"``), ``"authors_v2"``, ``"rae"``, ``"dit"`` or a registered
            format.
        files: File role -> local path (roles: the format's ``RELEASE_FILES``).
        name: ``config.name`` of the converted model.
        **options: Passed to the format's ``load_release``.

    Returns:
        A :class:`uae.UAE` (a :class:`uae.models.dit.DiTDH` for ``"dit"``) in eval mode.

    Raises:
        InputError: Unknown format/roles, or the converter rejects the files (an authors' v2 checkpoint
            given as ``authors_v1`` says so, ``param="source"``).
        MissingFileError: A file is missing.
    """
    from uae.models.dit import DiTDH
    from uae.models.uae import UAE

    conv = get_converter(source)
    paths = check_release_files(source, files)
    try:
        model = conv.load_release(paths, name=name, **options)
    except InputError as e:
        main = paths.get(conv.main_role)
        if conv.source == "authors_v1" and main is not None and _is_v2_file(main):
            raise InputError(f"{main} is a v2 checkpoint, use source authors_v2", param="source") from e
        raise
    if not isinstance(model, (UAE, DiTDH)):
        raise TypeError(f"the {source!r} converter returned {type(model).__name__}, not a UAE or DiTDH")
    return model.eval()


def _is_v2_file(path: Path) -> bool:
    """Whether ``path`` holds an authors' v2 ``stage1.UAE`` state dict (for a pointed error message)."""
    from uae.convert import authors_v2

    try:
        return authors_v2.is_v2_state(authors_v2.read_checkpoint(path))
    except (OSError, ValueError):
        return False


def fetch_release_files(
    cfg: PretrainedCfg, hub: HubOptions | None = None
) -> tuple[dict[str, Path], dict[str, dict[str, str | None]]]:
    """Download (or read from the Hub cache) every file of a weights-table release entry.

    Args:
        cfg: The entry (:func:`uae.models.pretrained.get_pretrained_cfg`).
        hub: Hub options; ``hub.revision`` overrides ``cfg.revision`` for the entry's own repo (files in
            other repos keep their pinned revision).

    Returns:
        (role -> local path, role -> ``{"repo", "revision", "commit", "filename"}``).

    Raises:
        MissingFileError: A file is unavailable (naming repo and file; unconfirmed paths say so).
    """
    from uae.models.hub import HubOptions, hub_download, snapshot_commit

    hub = hub or HubOptions()
    paths: dict[str, Path] = {}
    prov: dict[str, dict[str, str | None]] = {}
    for role, f in cfg.files.items():
        repo = f.repo or cfg.hf_hub_id
        if repo is None:
            raise MissingFileError(f"{cfg.name}: no Hub repo for file role {role!r}")
        rev = f.revision if f.repo else (hub.revision or cfg.revision)
        hint = ""
        if not f.verified:
            hint = (
                f"but this path of the {cfg.source} release is not confirmed (see `uae models --pretrained`): "
                "if the release names it differently, download its files and convert them locally with "
                f"`uae.convert.release.load_release('{cfg.source}', files)` or "
                f"`uae publish --from {cfg.source} FILE --dry-run ...`"
            )
        paths[role] = hub_download(repo, f.filename, hub.replace(revision=rev), hint=hint)
        prov[role] = {
            "repo": repo,
            "revision": rev,
            "commit": snapshot_commit(paths[role]),
            "filename": f.filename,
        }
    return paths, prov


#: ``convert_release`` parameters that name a file, and the file role each fills (a converter without the
#: role may take the parameter as a keyword of its ``load_release`` instead).
FILE_PARAMETERS = {"config": "config", "stats": "stats", "encoder_weights": "encoder"}


def convert_release(
    source: str,
    checkpoint: str | os.PathLike,
    *,
    out: str | os.PathLike,
    config: str | os.PathLike | None = None,
    stats: str | os.PathLike | None = None,
    encoder_weights: str | os.PathLike | None = None,
    entry: str | None = None,
    encoder: str | None = None,
    encoder_heads: int | None = None,
    decoder_heads: int | None = None,
    name: str | None = None,
) -> UAE:
    """Convert a release's local files and write the model in ``save_pretrained`` layout (``uae convert``).

    Args:
        source: Release format or alias (:func:`release_sources` with ``aliases=True``).
        checkpoint: The release's main file (authors: the ``.pt`` checkpoint; RAE: the decoder ``model.pt``).
        out: Output directory (created).
        config: The release's config file (authors' v1: their YAML, default the one embedded in the
            checkpoint; authors' v2: ``config.yaml``, default the one beside ``checkpoint``, or a YAML with a
            ``stage_1`` block such as ``64token.yaml``; RAE: its stage-1 YAML,
            ``configs/stage1/pretrained/*.yaml``, which names the encoder; dit: the sampling YAML whose
            ``stage_2.params`` describe the generator).
        stats: Latent statistics file with ``mean`` and ``var`` (authors' v1: per channel; RAE: ``stat.pt``;
            authors' v2: the 64-token tokenizer's per-position ``normalization_stats.pt``).
        encoder_weights: RAE: the encoder's weights (transformers names; DINOv2 also timm or
            facebookresearch); default: from the Hub cache.
        encoder: RAE: the encoder the decoder was trained with, ``"dinov2"``, ``"siglip2"`` or ``"mae"``
            (needed unless ``config`` or the decoder's release path says it).
        entry: Checkpoint entry (authors' v1: default ``"model"``, what their evaluation loads; authors'
            v2: ``"ema"``, what theirs loads; RAE: ``"ema"``, else ``"model"``).
        encoder_heads: Encoder attention heads (default ``C // 64``).
        decoder_heads: Decoder attention heads (default by width).
        name: ``config.name`` of the converted model (default: the converter's).

    Returns:
        The converted model (a :class:`uae.UAE`, or a :class:`uae.models.dit.DiTDH` for ``"dit"``; eval mode),
        already written to ``out``.

    Raises:
        InputError: Unknown source, a file parameter the format has no role for (``param`` names it), or
            files the converter rejects.
        MissingFileError: A file does not exist.
    """
    conv = get_converter(source)
    files: dict[str, str | os.PathLike] = {conv.main_role: checkpoint}
    options: dict[str, Any] = {
        "entry": entry,
        "encoder": encoder,
        "encoder_heads": encoder_heads,
        "decoder_heads": decoder_heads,
    }
    given = {"config": config, "stats": stats, "encoder_weights": encoder_weights}
    for param, role in FILE_PARAMETERS.items():
        value = given[param]
        if value is None:
            continue
        if role in conv.files:
            files[role] = value
        elif param in inspect.signature(conv.load_release).parameters:
            options[param] = value  # a file the converter takes as a keyword (the authors' v1 stats)
        else:
            raise InputError(
                f"{param} is not used by the {conv.source} release (its files: {', '.join(conv.files)})",
                param=param,
            )
    row = release_source(source)
    for role, filename in (row.beside if row else {}).items():
        files.setdefault(role, Path(checkpoint).parent / filename)
    options = {k: v for k, v in options.items() if v is not None}
    model = load_release(source, files, name=name, **options)
    model.save_pretrained(Path(out))
    return model
