"""Resolving ``from_pretrained`` sources (local directory or Hub repo id) with clear errors.

Every Hub download of the package goes through :func:`hub_download`: it answers from the local Hub
cache at once when the Hub cannot be reached (``HF_HUB_OFFLINE=1``, or a short TCP probe of the
endpoint fails), instead of letting ``huggingface_hub`` retry for half a minute.
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path

from uae import online

logger = logging.getLogger(__name__)

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"


class UAELoadError(ValueError):
    """A checkpoint could not be loaded into a UAE (wrong architecture, mismatched keys or shapes)."""


_REPO_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*/[A-Za-z0-9][A-Za-z0-9_.\-]*$")


def is_repo_id(source: str) -> bool:
    """Whether ``source`` has the shape of a Hub repo id (``org/name``) rather than a filesystem path."""
    return bool(_REPO_ID.match(source)) and not Path(source).expanduser().exists()


def hub_endpoint() -> str:
    """The Hub endpoint in use (``HF_ENDPOINT`` read now, else huggingface_hub's)."""
    from huggingface_hub import constants

    return (os.environ.get("HF_ENDPOINT") or constants.ENDPOINT).rstrip("/")


def hub_download(
    repo_id: str,
    filename: str,
    *,
    revision: str | None = None,
    cache_dir: str | os.PathLike | None = None,
    local_files_only: bool = False,
    token: str | bool | None = None,
    force_download: bool = False,
    hint: str = "",
) -> Path:
    """``hf_hub_download`` with a fast offline path and one clear error naming the repo and file.

    When ``HF_HUB_OFFLINE=1``, or the endpoint does not answer the connect probe
    (:func:`uae.online.reachable`), only the local Hub cache is read (no retries).

    Args:
        repo_id: Hub model repo, ``org/name``.
        filename: Path of the file inside the repo.
        revision, cache_dir, local_files_only, token, force_download: As ``hf_hub_download``.
        hint: Extra sentence appended to the "not in the cache" error.

    Returns:
        Local path of the file (inside the Hub cache).

    Raises:
        FileNotFoundError: Repo, revision or file missing, or not cached while offline.
    """
    from huggingface_hub import constants, hf_hub_download
    from huggingface_hub.errors import (
        EntryNotFoundError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    offline = online.offline()
    unreachable = not (local_files_only or offline) and not online.reachable(hub_endpoint())
    try:
        return Path(
            hf_hub_download(
                repo_id=repo_id,
                filename=filename,
                revision=revision,
                cache_dir=cache_dir,
                local_files_only=local_files_only or offline or unreachable,
                token=token,
                force_download=force_download,
            )
        )
    except RepositoryNotFoundError as e:
        raise FileNotFoundError(f"Hub repo '{repo_id}' not found (or private without a token)") from e
    except RevisionNotFoundError as e:
        raise FileNotFoundError(f"revision '{revision}' not found in Hub repo '{repo_id}'") from e
    except LocalEntryNotFoundError as e:
        cache = cache_dir or constants.HF_HUB_CACHE
        why = f"the Hub ({hub_endpoint()}) is unreachable" if unreachable else "offline or HF_HUB_OFFLINE=1"
        at = f"@{revision}" if revision else ""
        raise FileNotFoundError(
            f"{filename} of Hub repo '{repo_id}{at}' is not in the local Hub cache ({cache}) and cannot be "
            f"downloaded ({why}). Run `hf download {repo_id} {filename}` where there is network"
            f"{', ' + hint if hint else ''}."
        ) from e
    except EntryNotFoundError as e:
        raise FileNotFoundError(f"{filename} not found in Hub repo '{repo_id}'") from e


def snapshot_commit(path: str | os.PathLike) -> str | None:
    """The commit hash of a file inside a Hub cache snapshot (``.../snapshots/<commit>/...``), else ``None``."""
    parts = Path(path).parts
    for i in range(len(parts) - 2, -1, -1):
        if parts[i] == "snapshots":
            return parts[i + 1]
    return None


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

    With ``HF_HUB_OFFLINE=1``, or when the Hub endpoint is unreachable, only the local Hub cache
    (``$HF_HOME/hub``) is used, and a miss fails at once.

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
    hint = "or pass a local directory holding config.json and model.safetensors"
    return tuple(
        hub_download(
            source,
            name,
            revision=revision,
            cache_dir=cache_dir,
            local_files_only=local_files_only,
            token=token,
            force_download=force_download,
            hint=hint,
        )
        for name in filenames
    )
