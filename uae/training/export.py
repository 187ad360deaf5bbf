"""Export a Lightning training checkpoint to a Hub-layout directory (``config.json`` + ``model.safetensors``).

``python -m uae.training.export CKPT OUT_DIR [--raw]`` (EMA weights by default).
"""

from __future__ import annotations

import argparse
import importlib
import logging
import pathlib
import pickle
import re
from pathlib import Path
from typing import Any

import torch

from uae.models.config import UAEConfig
from uae.models.uae import UAE

logger = logging.getLogger(__name__)


def lightning_safe_globals() -> list[Any]:
    """The few non-container types a Lightning checkpoint may hold besides tensors (allowlisted).

    ``AttributeDict`` (``save_hyperparameters`` outside LightningCLI), paths and ``Namespace``
    hyper-parameters. Nothing here runs code when unpickled.
    """
    out: list[Any] = [
        pathlib.PosixPath,
        pathlib.WindowsPath,
        pathlib.PurePosixPath,
        pathlib.PureWindowsPath,
        argparse.Namespace,
    ]
    for module in ("lightning.fabric.utilities.data", "lightning_fabric.utilities.data"):
        try:
            out.append(importlib.import_module(module).AttributeDict)
        except (ImportError, AttributeError):
            pass
    return out


def load_lightning_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a Lightning ``.ckpt`` with ``torch.load(weights_only=True)`` (allowlist: :func:`lightning_safe_globals`).

    A pickle that references anything else (e.g. a ``__reduce__`` payload calling ``os.system``) is
    refused before any of it runs.

    Raises:
        FileNotFoundError: Missing file.
        ValueError: Not a torch checkpoint, or one holding objects outside the allowlist (named).
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    with path.open("rb") as f:
        magic = f.read(4)
    if magic[:2] != b"PK" and magic[:1] != b"\x80":  # neither torch's zip format nor a legacy pickle
        raise ValueError(f"{path} is not a PyTorch/Lightning checkpoint")
    try:
        with torch.serialization.safe_globals(lightning_safe_globals()):
            ckpt = torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        found = re.findall(r"GLOBAL ([\w.]+)", str(e))
        if not found:
            raise ValueError(f"{path} is not a readable PyTorch/Lightning checkpoint") from e
        raise ValueError(
            f"refused to load {path}: it holds a pickled object outside the checkpoint allowlist ({found[0]}); "
            "only checkpoints written by `uae fit` are read (torch.load weights_only=True)"
        ) from e
    except Exception as e:  # not a zip/pickle torch file at all
        raise ValueError(f"{path} is not a PyTorch/Lightning checkpoint ({type(e).__name__})") from e
    if not isinstance(ckpt, dict):
        raise ValueError(f"{path} is not a Lightning checkpoint (holds a {type(ckpt).__name__})")
    return ckpt


def load_checkpoint_model(ckpt_path: str | Path, ema: bool = True) -> UAE:
    """Rebuild the trained :class:`uae.UAE` from a checkpoint written by a uae stage module.

    Args:
        ckpt_path: Lightning ``.ckpt`` file.
        ema: Take the EMA weights (``ema.module.*``) when the checkpoint has them; else the raw
            weights (``model.*``).

    Returns:
        The model in eval mode on CPU.

    Raises:
        FileNotFoundError: Missing file.
        ValueError: Not a uae training checkpoint.
    """
    path = Path(ckpt_path).expanduser()
    ckpt = load_lightning_checkpoint(path)
    if "uae_config" not in ckpt or "state_dict" not in ckpt:
        raise ValueError(f"{path} is not a uae training checkpoint (no 'uae_config')")
    return model_from_state_dict(ckpt["uae_config"], ckpt["state_dict"], ema=ema, source=str(path))


def model_from_state_dict(
    config: dict, state: dict[str, torch.Tensor], ema: bool = True, source: str = "state dict"
) -> UAE:
    """Build a :class:`uae.UAE` from a training module's full state dict (``model.*`` / ``ema.module.*`` keys).

    Args:
        config: ``UAEConfig.to_dict()`` of the trained model.
        state: The LightningModule's (unsharded) state dict.
        ema: Prefer the EMA weights when present.
        source: Name used in messages.

    Raises:
        ValueError: No model weights in ``state``.
        UAELoadError: Keys or shapes do not match the config.
    """
    prefix = "ema.module." if ema and any(k.startswith("ema.module.") for k in state) else "model."
    weights = {k[len(prefix) :]: v.detach().cpu() for k, v in state.items() if k.startswith(prefix)}
    if not weights:
        raise ValueError(f"{source} holds no '{prefix}*' weights")
    model = UAE(UAEConfig.from_dict(config))
    model.load_checked_state_dict(weights, strict=True, source=source)
    logger.info("Loaded %s weights from %s", "EMA" if prefix.startswith("ema") else "raw", source)
    return model.eval()


def export_checkpoint(ckpt_path: str | Path, out_dir: str | Path, ema: bool = True) -> Path:
    """Write a checkpoint's model with ``save_pretrained`` into ``out_dir`` (returned)."""
    model = load_checkpoint_model(ckpt_path, ema=ema)
    out = Path(out_dir)
    model.save_pretrained(out)
    return out


def run_export(args: argparse.Namespace) -> int:
    """``uae export`` with parsed options (:mod:`uae.commands.export`): checkpoint -> Hub-layout directory."""
    out = export_checkpoint(args.checkpoint, args.out_dir, ema=not args.raw)
    print(f"exported {'raw' if args.raw else 'EMA'} weights to {out}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    import sys

    from uae.commands.export import main

    sys.exit(main(sys.argv[1:]))
