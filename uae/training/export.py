"""Trained models out of training: a Lightning checkpoint -> a Hub-layout directory (``config.json`` +
``model.safetensors`` + ``README.md``), and the export written at the end of ``fit``.

``uae export CKPT OUT_DIR [--raw] [--name NAME]`` (:mod:`uae.commands.export`) calls
:func:`export_checkpoint`.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

import torch

from uae.errors import DamagedFileError, InputError, MissingFileError, UnsafeFileError
from uae.files import read_torch_dict
from uae.models.config import UAEConfig
from uae.models.uae import UAE
from uae.training.checkpoint_io import lightning_safe_globals

logger = logging.getLogger(__name__)


def load_lightning_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a Lightning ``.ckpt`` with ``torch.load(weights_only=True)`` (allowlist: :func:`lightning_safe_globals`).

    A pickle that references anything else (e.g. a ``__reduce__`` payload calling ``os.system``) is
    refused before any of it runs.

    Raises:
        MissingFileError: Missing file.
        DamagedFileError: Not a torch checkpoint holding a dict.
        UnsafeFileError: A checkpoint holding objects outside the allowlist (the first one named).
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise MissingFileError(f"checkpoint not found: {path}", param="ckpt_path")
    with path.open("rb") as f:
        magic = f.read(4)
    if magic[:2] != b"PK" and magic[:1] != b"\x80":  # neither torch's zip format nor a legacy pickle
        raise DamagedFileError(f"{path} is not a PyTorch/Lightning checkpoint")
    try:
        with torch.serialization.safe_globals(lightning_safe_globals()):
            return read_torch_dict(path, what="Lightning checkpoint")
    except UnsafeFileError as e:
        found = re.findall(r"GLOBAL ([\w.]+)", str(e.__cause__ or e))
        raise UnsafeFileError(
            f"refused to load {path}: it holds a pickled object outside the checkpoint allowlist "
            f"({found[0] if found else 'unknown'}); only checkpoints written by `uae fit` are read "
            "(torch.load weights_only=True)"
        ) from e
    except DamagedFileError as e:
        reason = type(e.__cause__).__name__ if e.__cause__ is not None else str(e)
        raise DamagedFileError(f"{path} is not a PyTorch/Lightning checkpoint ({reason})") from e


def load_checkpoint_model(ckpt_path: str | Path, *, ema: bool = True) -> UAE:
    """Rebuild the trained :class:`uae.UAE` from a checkpoint written by a uae stage module.

    Args:
        ckpt_path: Lightning ``.ckpt`` file.
        ema: Take the EMA weights (``ema.module.*``) when the checkpoint has them; else the raw
            weights (``model.*``).

    Returns:
        The model in eval mode on CPU.

    Raises:
        MissingFileError: Missing file.
        InputError: Not a uae training checkpoint.
        UAELoadError: Its weights do not fit its config.
    """
    path = Path(ckpt_path).expanduser()
    ckpt = load_lightning_checkpoint(path)
    if "uae_config" not in ckpt or "state_dict" not in ckpt:
        raise InputError(f"{path} is not a uae training checkpoint (no 'uae_config')", param="ckpt_path")
    return model_from_state_dict(
        ckpt["uae_config"], ckpt["state_dict"], ema=ema, source=str(path), copy=False
    )


def model_from_state_dict(
    config: dict,
    state: dict[str, torch.Tensor],
    *,
    ema: bool = True,
    source: str = "state dict",
    copy: bool = True,
) -> UAE:
    """Build a :class:`uae.UAE` from a training module's full state dict (``model.*`` / ``ema.module.*`` keys).

    Args:
        config: ``UAEConfig.to_dict()`` of the trained model.
        state: The LightningModule's (unsharded) state dict.
        ema: Prefer the EMA weights when present.
        source: Name used in messages.
        copy: Give the model copies (``False``: the checkpoint's tensors themselves, for a checkpoint read
            for this and used by nobody else; the model is built without a random initialisation either way).

    Raises:
        InputError: No model weights in ``state``.
        UAELoadError: Keys or shapes do not match the config.
    """
    prefix = "ema.module." if ema and any(k.startswith("ema.module.") for k in state) else "model."
    weights = {k[len(prefix) :]: v.detach().cpu() for k, v in state.items() if k.startswith(prefix)}
    if not weights:
        raise InputError(f"{source} holds no '{prefix}*' weights")
    model = UAE.from_state_dict(UAEConfig.from_dict(config), weights, source=source, copy=copy)
    logger.info("Loaded %s weights from %s", "EMA" if prefix.startswith("ema") else "raw", source)
    return model.eval()


def name_from_dir(directory: Path) -> str | None:
    """Model name from an export folder: ``runs/cats/export`` -> ``cats``, ``my_uae`` -> ``my_uae``."""
    d = directory.expanduser().absolute()
    name = d.parent.name if d.name == "export" else d.name
    return name or None


def save_with_card(
    model: UAE, directory: Path, card: dict[str, str] | None = None, *, name: str | None = None
) -> Path:
    """``save_pretrained`` with a fresh model card (``README.md``, replaced) filled with ``card``.

    Args:
        model: The model (its ``config.name`` is set to ``name`` when given).
        directory: Output folder (created).
        card: Extra model-card fields (e.g. :func:`uae.training.card.training_card`).
        name: The model's name (``config.name`` and the card's title); ``None`` keeps it.
    """
    if name:
        model.config = model.config.replace(name=name)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "README.md").unlink(missing_ok=True)  # save_pretrained keeps an existing card
    model.save_pretrained(directory, model_card_kwargs=card or {})
    return directory


def export_checkpoint(
    ckpt_path: str | Path, out_dir: str | Path, *, ema: bool = True, name: str | None = None
) -> Path:
    """Write a checkpoint's model with ``save_pretrained`` into ``out_dir``.

    Args:
        ckpt_path: Lightning ``.ckpt`` written by a uae stage module.
        out_dir: Output folder (created).
        ema: Export the EMA weights when the checkpoint has them (else the raw trained weights).
        name: The exported model's name (``config.name`` and the card's title); ``None`` keeps the trained
            model's.

    Returns:
        ``out_dir``.
    """
    model = load_checkpoint_model(ckpt_path, ema=ema)
    if name:
        model.config = model.config.replace(name=name)
    out = Path(out_dir)
    model.save_pretrained(out)
    return out


__all__ = [
    "export_checkpoint",
    "lightning_safe_globals",
    "load_checkpoint_model",
    "load_lightning_checkpoint",
    "model_from_state_dict",
    "name_from_dir",
    "save_with_card",
]
