"""Resolving ``from_pretrained`` sources (local directory or Hub repo id) with clear errors."""

from __future__ import annotations

import os
import re
from pathlib import Path

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"


class UAELoadError(ValueError):
    """A checkpoint could not be loaded into a UAE (wrong architecture, mismatched keys or shapes)."""


_REPO_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*/[A-Za-z0-9][A-Za-z0-9_.\-]*$")


def is_repo_id(source: str) -> bool:
    """Whether ``source`` has the shape of a Hub repo id (``org/name``) rather than a filesystem path."""
    return bool(_REPO_ID.match(source)) and not Path(source).expanduser().exists()


def resolve_pretrained_files(
    source: str | os.PathLike,
    *,
    revision: str | None = None,
    cache_dir: str | os.PathLike | None = None,
    local_files_only: bool = False,
    token: str | bool | None = None,
    force_download: bool = False,
    filenames: tuple[str, ...] = (CONFIG_NAME, WEIGHTS_NAME),
) -> tuple[Path, ...]:
    """Local paths of ``filenames`` for a local directory or a Hub repo id (downloaded or from the cache).

    With ``HF_HUB_OFFLINE=1`` only the local Hub cache (``$HF_HOME/hub``) is used.

    Raises:
        FileNotFoundError: The directory, repo or one of the files does not exist / is not cached,
            naming which and where it looked.
    """
    source = str(source)
    path = Path(source).expanduser()
    if path.is_dir():
        out = []
        for name in filenames:
            f = path / name
            if not f.is_file():
                raise FileNotFoundError(f"{name} not found in the local model directory {path.resolve()}")
            out.append(f)
        return tuple(out)
    if not is_repo_id(source):
        raise FileNotFoundError(
            f"'{source}' is neither an existing local model directory nor a Hub repo id of the form 'org/name'"
        )

    from huggingface_hub import constants, hf_hub_download
    from huggingface_hub.errors import (
        EntryNotFoundError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    out = []
    for name in filenames:
        try:
            out.append(
                Path(
                    hf_hub_download(
                        repo_id=source,
                        filename=name,
                        revision=revision,
                        cache_dir=cache_dir,
                        local_files_only=local_files_only,
                        token=token,
                        force_download=force_download,
                    )
                )
            )
        except RepositoryNotFoundError as e:
            raise FileNotFoundError(f"Hub repo '{source}' not found (or private without a token)") from e
        except RevisionNotFoundError as e:
            raise FileNotFoundError(f"revision '{revision}' not found in Hub repo '{source}'") from e
        except LocalEntryNotFoundError as e:
            cache = cache_dir or constants.HF_HUB_CACHE
            raise FileNotFoundError(
                f"{name} of Hub repo '{source}' is not in the local Hub cache ({cache}) and cannot be "
                "downloaded (offline or HF_HUB_OFFLINE=1). Download it once with network, or pass a local "
                "directory holding config.json and model.safetensors."
            ) from e
        except EntryNotFoundError as e:
            raise FileNotFoundError(f"{name} not found in Hub repo '{source}'") from e
    return tuple(out)
