"""Finding and reading DINOv2 weights for the encoder: a local file or a timm Hub id (cache first)."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING

from uae.errors import MissingFileError
from uae.files import read_state_dict
from uae.models.hub import hub_download, is_repo_id

if TYPE_CHECKING:  # pragma: no cover
    import torch

logger = logging.getLogger(__name__)

WEIGHT_SUFFIXES = (".safetensors", ".pth", ".pt", ".bin")
#: Entries of a torch file that may hold DINOv2 weights, tried in order (:func:`uae.files.read_state_dict`):
#: a training checkpoint's ``model`` / ``state_dict``, or the ``teacher`` of a DINOv2 training checkpoint.
DINOV2_ENTRIES = ("model", "state_dict", "teacher")


def resolve_dinov2_weights(source: str) -> Path:
    """Local path of DINOv2 weights.

    Args:
        source: A file path, or a timm Hub id (``"timm/vit_base_patch14_reg4_dinov2.lvd142m"``,
            optionally prefixed ``"hf-hub:"``) whose ``model.safetensors`` is read from the Hub cache,
            or downloaded when online.

    Raises:
        MissingFileError: Naming the file to supply. With ``HF_HUB_OFFLINE=1`` this fails at once.
    """
    if not source:
        raise MissingFileError(
            "no DINOv2 weights configured (config.encoder_weights is empty): pass a file to load_encoder_weights()"
        )
    path = Path(source).expanduser()
    if path.is_file():
        return path
    repo = source.removeprefix("hf-hub:").removeprefix("hf_hub:")
    if path.suffix in WEIGHT_SUFFIXES or not is_repo_id(repo):
        raise MissingFileError(f"DINOv2 weights file not found: {path}")

    try:
        return hub_download(repo, "model.safetensors")
    except (
        FileNotFoundError
    ) as e:  # offline, not cached, no network, repo missing: all mean "supply the file"
        raise MissingFileError(
            f"DINOv2 weights 'model.safetensors' of Hub repo '{repo}' are not available here "
            "(not in the Hub cache and no download possible). Supply the file: "
            f"run `hf download {repo} model.safetensors` where you have network (it lands in the Hub cache), "
            "or pass a local file, e.g. model.load_encoder_weights('dinov2_vitb14_reg4_pretrain.pth') "
            "(facebookresearch release) or the timm model.safetensors."
        ) from e


def read_dinov2_weights(source: str | os.PathLike) -> dict[str, torch.Tensor]:
    """The state dict of DINOv2 weights: :func:`resolve_dinov2_weights`, then :func:`uae.files.read_state_dict`.

    The one way uae reads encoder (and teacher) initialisations; pass the result to
    :meth:`uae.layers.encoder.UnifiedEncoder.load_dinov2_state_dict` (strict key checks).

    Args:
        source: As :func:`resolve_dinov2_weights` (a file, or a timm Hub id read from the Hub cache).

    Returns:
        ``{name: tensor}`` in the file's naming (timm or facebookresearch).

    Raises:
        MissingFileError: The weights are not available, naming the file to supply.
        DamagedFileError: The file cannot be read as a state dict.
    """
    path = resolve_dinov2_weights(str(source))
    state = read_state_dict(path, entries=DINOV2_ENTRIES, what="weights file")
    logger.info("Read DINOv2 weights from %s", path)
    return state
