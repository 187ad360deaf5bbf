"""Dispatch to the release converters: ``load_release(source, files, name=...)``.

Each release format has a module under :mod:`uae.convert` exposing

* ``RELEASE_FILES: dict[str, bool]`` - file role -> required?
* ``load_release(files, *, name=None, **options) -> UAE`` - the converted model (eval mode), strictly.
* optionally ``CONVERTER_VERSION: str`` (part of the converted-cache key; defaults to a hash of the
  module's source, so any change to a converter invalidates what it converted before) and
  ``CONVERSION_CHECK: str`` (one sentence for model cards: what was compared with the original code,
  at what tolerance).

Formats: ``authors_v1`` (WeichenFan/UAE branch ``old_uae``), ``authors_v2`` (branch ``main``),
``rae`` (bytetriper/RAE decoders). ``uae`` native checkpoints need no converter.
"""

from __future__ import annotations

import hashlib
import importlib
import inspect
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: Release format -> module implementing it.
RELEASE_MODULES: dict[str, str] = {
    "authors_v1": "uae.convert.authors_v1",
    "authors_v2": "uae.convert.authors_v2",
    "rae": "uae.convert.rae",
}


@dataclass(frozen=True)
class ReleaseConverter:
    """One release format's converter, as resolved from its module (or registered directly)."""

    source: str
    load_release: Callable[..., Any]
    files: Mapping[str, bool]
    version: str
    check: str = ""
    extra: Mapping[str, Any] = field(default_factory=dict)


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


def release_sources() -> list[str]:
    """Known release formats (module-backed and registered)."""
    return sorted(set(RELEASE_MODULES) | set(_REGISTERED))


def get_converter(source: str) -> ReleaseConverter:
    """The converter of a release format.

    Raises:
        ValueError: Unknown format, or its module does not implement ``load_release`` in this build.
    """
    if source in _REGISTERED:
        return _REGISTERED[source]
    if source not in RELEASE_MODULES:
        raise ValueError(f"unknown release format {source!r}; known: {', '.join(release_sources())}")
    try:
        mod = importlib.import_module(RELEASE_MODULES[source])
    except ModuleNotFoundError as e:
        raise ValueError(
            f"the {source!r} converter ({RELEASE_MODULES[source]}) is not part of this build"
        ) from e
    fn = getattr(mod, "load_release", None)
    files = getattr(mod, "RELEASE_FILES", None)
    if not callable(fn) or not isinstance(files, Mapping):
        raise ValueError(
            f"{RELEASE_MODULES[source]} does not provide load_release/RELEASE_FILES in this build: "
            f"the {source!r} converter is not available"
        )
    version = getattr(mod, "CONVERTER_VERSION", None)
    if not version:
        from uae import __version__

        src = inspect.getsource(mod).encode()
        version = f"{__version__}+{hashlib.sha256(src).hexdigest()[:12]}"
    return ReleaseConverter(source, fn, dict(files), str(version), str(getattr(mod, "CONVERSION_CHECK", "")))


def check_release_files(source: str, files: Mapping[str, str | os.PathLike]) -> dict[str, Path]:
    """Validate a role -> path mapping against the format's ``RELEASE_FILES``.

    Raises:
        ValueError: Unknown role, or a required role missing.
        FileNotFoundError: A given file does not exist.
    """
    spec = get_converter(source).files
    unknown = sorted(set(files) - set(spec))
    if unknown:
        raise ValueError(f"{source}: unknown file role(s) {unknown}; roles: {sorted(spec)}")
    missing = sorted(r for r, required in spec.items() if required and r not in files)
    if missing:
        raise ValueError(f"{source}: required file role(s) {missing} not given (roles: {sorted(spec)})")
    out = {}
    for role, p in files.items():
        path = Path(p).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"{source} {role} file not found: {path}")
        out[role] = path
    return out


def load_release(
    source: str, files: Mapping[str, str | os.PathLike], *, name: str | None = None, **options: Any
):
    """Convert one original release from local files (strict; see the format's module).

    Args:
        source: ``"authors_v1"``, ``"authors_v2"``, ``"rae"`` or a registered format.
        files: File role -> local path (roles: the format's ``RELEASE_FILES``).
        name: ``config.name`` of the converted model.
        **options: Passed to the format's ``load_release``.

    Returns:
        A :class:`uae.UAE` in eval mode.

    Raises:
        ValueError: Unknown format/roles, or the converter rejects the files.
        FileNotFoundError: A file is missing.
    """
    from uae.models.uae import UAE

    paths = check_release_files(source, files)
    model = get_converter(source).load_release(paths, name=name, **options)
    if not isinstance(model, UAE):
        raise TypeError(f"the {source!r} converter returned {type(model).__name__}, not a UAE")
    return model.eval()
