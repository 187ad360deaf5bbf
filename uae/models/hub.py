"""Hub I/O of the model: ``save_pretrained`` / ``from_pretrained`` / ``push_to_hub``, model cards, and Hub files.

:class:`UAEHubMixin` is what :class:`uae.UAE` inherits for the Hub: the ``save_pretrained`` layout
(``config.json`` + ``model.safetensors`` + a model card), strict loading with one clear error per
problem, and the card template. :class:`HubOptions` is the one definition of the Hub keywords
(``revision``, ``cache_dir``, ``local_files_only``, ``token``, ``force_download``) every loader takes.

Every Hub download of the package goes through :func:`hub_download`: it answers from the local Hub
cache at once when the Hub cannot be reached (``HF_HUB_OFFLINE=1``, or a short TCP probe of the
endpoint fails, :mod:`uae.online`), instead of letting ``huggingface_hub`` retry for half a minute.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from huggingface_hub import ModelCard, PyTorchModelHubMixin

from uae._version import __version__
from uae.errors import InputError, MissingFileError, UAELoadError
from uae.models.card import MODEL_CARD_TEMPLATE, PAPER_URL
from uae.models.config import ARCHITECTURE, UAEConfig
from uae.online import offline, reachable

if TYPE_CHECKING:  # pragma: no cover
    import torch

logger = logging.getLogger(__name__)

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
#: Where a converted release records what it was converted from (repo, commit, file, converter version).
PROVENANCE_NAME = "uae_provenance.json"

#: The shape of a Hub repo id, ``org/name``.
REPO_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*/[A-Za-z0-9][A-Za-z0-9_.\-]*\Z")

__all__ = [
    "CONFIG_NAME",
    "PROVENANCE_NAME",
    "REPO_ID",
    "WEIGHTS_NAME",
    "HubOptions",
    "UAEHubMixin",
    "UAELoadError",
    "hub_download",
    "is_repo_id",
    "check_subfolder",
    "resolve_pretrained_files",
    "snapshot_commit",
]


# ---------------------------------------------------------------------------------------------- Hub files
@dataclass(frozen=True)
class HubOptions:
    """How to reach the Hub: the ``hf_hub_download`` keywords uae passes on, defined once.

    Loaders take them as keywords (``UAE.from_pretrained(repo, revision="v1")``,
    ``create_model(name, pretrained=True, cache_dir=...)``) and pass them down as one value.

    Attributes:
        revision: Branch, tag or commit (``None``: the default branch, or the weights table's pin).
        cache_dir: Hub cache directory (``None``: huggingface_hub's).
        local_files_only: Read the Hub cache only.
        token: Hub token (``None``: the stored login).
        force_download: Download again even when cached.
    """

    revision: str | None = None
    cache_dir: str | os.PathLike | None = None
    local_files_only: bool = False
    token: str | bool | None = None
    force_download: bool = False

    @classmethod
    def pop_from(cls, kwargs: dict[str, Any], base: HubOptions | None = None) -> HubOptions:
        """Take the Hub keywords out of ``kwargs`` (what stays are the caller's other keywords).

        Args:
            kwargs: Keyword arguments of a loader; the Hub keywords are removed from it.
            base: Options the taken keywords override (default: all defaults).
        """
        taken = {f.name: kwargs.pop(f.name) for f in dataclasses.fields(cls) if f.name in kwargs}
        return dataclasses.replace(base or cls(), **taken)

    def replace(self, **changes: Any) -> HubOptions:
        """A copy with some options changed."""
        return dataclasses.replace(self, **changes)


def is_repo_id(source: str) -> bool:
    """Whether ``source`` has the shape of a Hub repo id (``org/name``) rather than a filesystem path."""
    return bool(REPO_ID.match(source)) and not Path(source).expanduser().exists()


def hub_endpoint() -> str:
    """The Hub endpoint in use (``HF_ENDPOINT`` read now, else huggingface_hub's)."""
    from huggingface_hub import constants

    return (os.environ.get("HF_ENDPOINT") or constants.ENDPOINT).rstrip("/")


def hub_download(repo_id: str, filename: str, hub: HubOptions | None = None, *, hint: str = "") -> Path:
    """``hf_hub_download`` with a fast offline path and one clear error naming the repo and file.

    When ``HF_HUB_OFFLINE=1``, or the endpoint does not answer the connect probe
    (:func:`uae.online.reachable`), only the local Hub cache is read (no retries).

    Args:
        repo_id: Hub model repo, ``org/name``.
        filename: Path of the file inside the repo.
        hub: Revision, cache, token, ... (:class:`HubOptions`).
        hint: Extra sentence appended to the "not in the cache" error.

    Returns:
        Local path of the file (inside the Hub cache).

    Raises:
        MissingFileError: Repo, revision or file missing, or not cached while offline.
    """
    from huggingface_hub import constants, hf_hub_download
    from huggingface_hub.errors import (
        EntryNotFoundError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    hub = hub or HubOptions()
    is_offline = offline()
    unreachable = not (hub.local_files_only or is_offline) and not reachable(hub_endpoint())
    try:
        return Path(
            hf_hub_download(
                repo_id=repo_id,
                filename=filename,
                revision=hub.revision,
                cache_dir=hub.cache_dir,
                local_files_only=hub.local_files_only or is_offline or unreachable,
                token=hub.token,
                force_download=hub.force_download,
            )
        )
    except RepositoryNotFoundError as e:
        raise MissingFileError(f"Hub repo '{repo_id}' not found (or private without a token)") from e
    except RevisionNotFoundError as e:
        raise MissingFileError(f"revision '{hub.revision}' not found in Hub repo '{repo_id}'") from e
    except LocalEntryNotFoundError as e:
        cache = hub.cache_dir or constants.HF_HUB_CACHE
        why = f"the Hub ({hub_endpoint()}) is unreachable" if unreachable else "offline or HF_HUB_OFFLINE=1"
        at = f"@{hub.revision}" if hub.revision else ""
        raise MissingFileError(
            f"{filename} of Hub repo '{repo_id}{at}' is not in the local Hub cache ({cache}) and cannot be "
            f"downloaded ({why}). Run `hf download {repo_id} {filename}` where there is network"
            f"{', ' + hint if hint else ''}."
        ) from e
    except EntryNotFoundError as e:
        raise MissingFileError(f"{filename} not found in Hub repo '{repo_id}'") from e


def snapshot_commit(path: str | os.PathLike) -> str | None:
    """The commit hash of a file inside a Hub cache snapshot (``.../snapshots/<commit>/...``), else ``None``."""
    parts = Path(path).parts
    for i in range(len(parts) - 2, -1, -1):
        if parts[i] == "snapshots":
            return parts[i + 1]
    return None


def resolve_pretrained_files(
    source: str | os.PathLike,
    hub: HubOptions | None = None,
    filenames: tuple[str, ...] = (CONFIG_NAME, WEIGHTS_NAME),
    subfolder: str | None = None,
) -> tuple[Path, ...]:
    """Local paths of ``filenames`` for a local directory or a Hub repo id (downloaded or from the cache).

    With ``HF_HUB_OFFLINE=1``, or when the Hub endpoint is unreachable, only the local Hub cache
    (``$HF_HOME/hub``) is used, and a miss fails at once.

    Args:
        source: A directory or ``org/name``.
        hub: Hub options.
        filenames: The files wanted.
        subfolder: A folder inside the directory or repo holding the files (diffusers' ``subfolder``:
            ``"vae"`` of a pipeline repo).

    Raises:
        MissingFileError: The directory, repo or one of the files does not exist / is not cached,
            naming which and where it looked.
        InputError: ``subfolder`` is absolute or leaves the directory (``..``).
    """
    source = str(source)
    sub = check_subfolder(subfolder)
    path = Path(source).expanduser()
    if path.is_dir():
        folder = path / sub if sub else path
        out = []
        for name in filenames:
            f = folder / name
            if not f.is_file():
                raise MissingFileError(f"{name} not found in the local model directory {folder.resolve()}")
            out.append(f)
        return tuple(out)
    if not is_repo_id(source):
        raise MissingFileError(
            f"'{source}' is neither an existing local model directory nor a Hub repo id of the form 'org/name'"
        )
    hint = "or pass a local directory holding config.json and model.safetensors"
    return tuple(hub_download(source, f"{sub}/{name}" if sub else name, hub, hint=hint) for name in filenames)


def check_subfolder(subfolder: str | os.PathLike | None) -> str:
    """``subfolder`` as a relative POSIX path (``""`` for none).

    Raises:
        InputError: An absolute path, or one with ``..`` (``param="subfolder"``).
    """
    if subfolder is None or str(subfolder).strip("/") == "":
        return ""
    parts = Path(str(subfolder)).parts
    if Path(str(subfolder)).is_absolute() or ".." in parts:
        raise InputError(
            f"subfolder must be a folder inside the model directory or repo, got {str(subfolder)!r}",
            param="subfolder",
        )
    return "/".join(parts)


# ---------------------------------------------------------------------------------------------- the model's Hub I/O
class UAEHubMixin(
    PyTorchModelHubMixin,
    library_name="uae",
    license="apache-2.0",
    paper_url=PAPER_URL,
    tags=["uae", "image-tokenizer", "autoencoder", "frequency-bands"],
    model_card_template=MODEL_CARD_TEMPLATE,
):
    """``save_pretrained`` / ``from_pretrained`` / ``push_to_hub`` for a ``torch.nn.Module`` built from a
    :class:`~uae.models.config.UAEConfig` (its ``__init__(config)``, its ``config`` attribute).

    The layout: ``config.json`` (the flat config, stamped with ``architecture`` and ``uae_version``),
    ``model.safetensors`` (every parameter and buffer) and a ``README.md`` model card.
    """

    config: UAEConfig
    #: The config class ``config.json`` is read with, and the ``architecture`` stamped into it; another
    #: model family (:class:`uae.models.dit.DiTDH`) sets its own and keeps everything else.
    _hub_config_class: ClassVar[type] = UAEConfig
    _hub_architecture: ClassVar[str] = ARCHITECTURE

    def _save_pretrained(self, save_directory: Path) -> None:
        from uae.files import save_safetensors, write_json

        cfg = {"architecture": self._hub_architecture, "uae_version": __version__, **self.config.to_dict()}
        write_json(save_directory / CONFIG_NAME, cfg, indent=2, sort_keys=True)
        state = {k: v.detach().contiguous().cpu() for k, v in self.state_dict().items()}
        save_safetensors(
            state, save_directory / WEIGHTS_NAME, metadata={"format": "pt", "uae_version": __version__}
        )

    def generate_model_card(self, *args: Any, **kwargs: Any) -> ModelCard:
        """Model card: metadata the Hub understands and the config summary (:func:`uae.models.card.model_card`).

        Args:
            *args: Unused (huggingface_hub's signature).
            **kwargs: As :func:`uae.models.card.model_card`.
        """
        from uae.models.card import model_card

        return model_card(self, **kwargs)

    # ------------------------------------------------------------------ dtype and device (diffusers' names)
    @property
    def dtype(self) -> torch.dtype:
        """The dtype of the model's floating parameters (``model.to(torch.bfloat16)`` changes it)."""
        from uae.models.loading import model_dtype

        return model_dtype(self)  # type: ignore[arg-type]

    @property
    def device(self) -> torch.device:
        """The device of the model's parameters."""
        from uae.models.loading import model_device

        return model_device(self)  # type: ignore[arg-type]

    # ------------------------------------------------------------------ loading
    @classmethod
    def from_pretrained(  # type: ignore[override]
        cls,
        pretrained_model_name_or_path: str | os.PathLike,
        *,
        strict: bool = True,
        torch_dtype: torch.dtype | str | None = None,
        device: str | torch.device | None = None,
        subfolder: str | None = None,
        map_location: str | torch.device | None = None,
        hub: HubOptions | None = None,
        **kwargs: Any,
    ):
        """Load a model saved with :meth:`save_pretrained` from a local directory or a Hub repo id.

        The model is built without initialising its parameters and the weights file is memory-mapped into
        it (:mod:`uae.models.loading`): loading takes about the time of reading the file, and about its size
        in memory. Keys, shapes, dtypes and finiteness are checked strictly first.

        Args:
            pretrained_model_name_or_path: Directory holding ``config.json`` + ``model.safetensors``,
                or a Hub repo id (read from the Hub cache when ``HF_HUB_OFFLINE=1``).
            strict: Require the checkpoint's keys and config fields to match exactly. With
                ``strict=False`` missing/unexpected keys are logged as warnings (shapes must still match).
            torch_dtype: The model's dtype (diffusers' option): ``torch.float16``, ``torch.bfloat16``,
                ``torch.float32`` or their names; ``"auto"`` keeps the file's; ``None``: float32.
                Half precision is for CUDA; on CPU it is refused where this torch lacks the kernels.
            device: Where the model goes (``"cpu"``, ``"cuda"``, ``"cuda:1"``; default CPU).
            subfolder: A folder inside the directory or repo that holds the files.
            map_location: The older name of ``device``.
            hub: Hub options; the keywords ``revision``, ``cache_dir``, ``local_files_only``, ``token``
                and ``force_download`` (:class:`HubOptions`) may be given directly instead.
            **kwargs: The Hub keywords above, and config fields to change (must not change parameter shapes).

        Returns:
            The model in eval mode.

        Raises:
            MissingFileError: The directory/repo or ``config.json`` / ``model.safetensors`` is missing.
            UAELoadError: Wrong architecture, unknown config keys, or mismatched weight keys/shapes.
            ConfigError: The config describes a model too large for this machine (naming the field).
            DamagedFileError: The weights file is truncated, or holds NaN or inf (naming the tensors).
            InputError: A ``torch_dtype``, ``device`` or ``subfolder`` that cannot be used.
        """
        from uae.models.loading import (
            assign_state_dict,
            build_empty,
            check_dtype_on_device,
            check_model_size,
            place,
            read_weights,
            resolve_dtype,
        )
        from uae.utils import check_device

        hub = HubOptions.pop_from(kwargs, hub)
        dtype = resolve_dtype(torch_dtype)
        dev = check_device(_one_device(device, map_location))
        if dtype not in (None, "auto"):
            check_dtype_on_device(dtype, dev)
        config_file, weights_file = resolve_pretrained_files(
            pretrained_model_name_or_path, hub, subfolder=subfolder
        )
        config = cls._read_config(config_file, strict=strict, overrides=kwargs)
        check_model_size(config, source=str(config_file))
        state = read_weights(weights_file)
        model = build_empty(cls, config, source=str(config_file))
        if not strict and set(model.state_dict()) - set(state):  # missing weights keep a real initialisation
            model = cls(config)
        assign_state_dict(model, state, strict=strict, source=str(weights_file), dtype=dtype)
        if dtype == "auto":
            check_dtype_on_device(model.dtype, dev)
        return place(model, dev).eval()

    @classmethod
    def from_state_dict(
        cls,
        config: Any,
        state: dict[str, torch.Tensor],
        *,
        strict: bool = True,
        source: str = "",
        torch_dtype: torch.dtype | str | None = None,
        device: str | torch.device | None = None,
        copy: bool = True,
    ):
        """A model of ``config`` holding ``state`` (checked strictly), in eval mode, built without a random
        initialisation.

        The loader under :meth:`from_pretrained`, for weights that are already in memory (a converted
        release, a training checkpoint for ``uae export``).

        Args:
            config: The model's config.
            state: Its weights (every key, unless ``strict=False``).
            strict, source, torch_dtype, device: As :meth:`from_pretrained` (``source`` names the weights
                in messages).
            copy: Give the model copies of the tensors (``state`` stays independent of it). ``False``: the
                model takes the tensors themselves, for weights nobody else uses (a loader's own reads;
                no second copy in memory).

        Raises:
            UAELoadError, DamagedFileError, ConfigError: As :meth:`from_pretrained`.
        """
        from uae.models.loading import assign_state_dict, build_empty, place, resolve_dtype

        model = build_empty(cls, config, source=source)
        if not strict and set(model.state_dict()) - set(state):
            model = cls(config)
        if copy:
            state = {k: v.clone() for k, v in state.items()}
        assign_state_dict(model, state, strict=strict, source=source, dtype=resolve_dtype(torch_dtype))
        return place(model, device).eval()

    @classmethod
    def _read_config(cls, config_file: str | os.PathLike, *, strict: bool = True, overrides: dict[str, Any]):
        """The config of ``config.json`` with ``overrides`` applied (one :class:`UAELoadError` per problem)."""
        try:
            raw = json.loads(Path(config_file).read_text())
        except json.JSONDecodeError as e:
            raise UAELoadError(f"{config_file} is not valid JSON: {e}") from e
        try:
            config = cls._hub_config_class.from_dict(raw, strict=strict)
            return config.replace(**overrides) if overrides else config
        except (ValueError, TypeError) as e:
            raise UAELoadError(f"{config_file}: {e}", param=getattr(e, "param", None)) from e

    def load_checked_state_dict(
        self, state: dict[str, torch.Tensor], strict: bool = True, source: str = ""
    ) -> None:
        """Check ``state`` strictly and load it (:func:`uae.models.loading.assign_state_dict`).

        Raises:
            UAELoadError: Shape mismatch, a non-float tensor for a float weight, or (with ``strict``)
                missing or unexpected keys.
            DamagedFileError: NaN or inf values (naming the tensors).
        """
        from uae.models.loading import assign_state_dict

        assign_state_dict(self, state, strict=strict, source=source)


def _one_device(
    device: str | torch.device | None, map_location: str | torch.device | None
) -> str | torch.device:
    """``device``, or its older name ``map_location`` (``"cpu"`` when neither is given; both must agree)."""
    if device is not None and map_location is not None and str(device) != str(map_location):
        raise InputError(
            f"device {str(device)!r} and map_location {str(map_location)!r} disagree (map_location is the older "
            "name of device: give one)",
            param="device",
        )
    return device if device is not None else map_location if map_location is not None else "cpu"
