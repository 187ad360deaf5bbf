"""A training run's folder and the intervals that fit its step budget (the rules ``uae fit`` applies).

Everything a run writes lives under its ``default_root_dir`` (:func:`run_paths`): ``checkpoints/``
(``last.ckpt``, the best checkpoint by ``val/psnr``), ``logs/version_N/`` (TensorBoard when installed,
else CSV; :func:`default_logger`), ``export/`` (the trained model) -- so a second run with another
``default_root_dir`` never writes beside the first one.

Intervals given in steps (validation, periodic checkpoints) that are longer than the whole run would
never happen: :func:`fit_interval` shortens them to a tenth of the run.
"""

from __future__ import annotations

import importlib.util
import logging
import os
from pathlib import Path

from lightning.pytorch.loggers import CSVLogger, Logger

logger = logging.getLogger(__name__)

#: Sub-folders of a run's ``default_root_dir``.
RUN_LAYOUT = {"checkpoints": "checkpoints", "logs": "logs", "export": "export"}


def run_paths(root: str | os.PathLike) -> dict[str, Path]:
    """The folders of a run whose ``default_root_dir`` is ``root`` (see :data:`RUN_LAYOUT`)."""
    root = Path(root).expanduser()
    return {key: root / sub for key, sub in RUN_LAYOUT.items()}


def tensorboard_available() -> bool:
    """Whether TensorBoard (or tensorboardX) is installed (``pip install 'uae[tensorboard]'``)."""
    return any(importlib.util.find_spec(name) is not None for name in ("tensorboard", "tensorboardX"))


def default_logger(root: str | os.PathLike) -> Logger:
    """The logger of a run that does not choose one: TensorBoard when installed, else CSV, in ``<root>/logs``."""
    if tensorboard_available():
        from lightning.pytorch.loggers import TensorBoardLogger

        return TensorBoardLogger(save_dir=str(Path(root).expanduser()), name=RUN_LAYOUT["logs"])
    return CSVLogger(save_dir=str(Path(root).expanduser()), name=RUN_LAYOUT["logs"])


def fit_interval(interval: int, max_steps: int, name: str) -> tuple[int, str | None]:
    """An interval in steps that fits a run of ``max_steps``: unchanged unless longer than the run.

    Args:
        interval: The configured interval (steps).
        max_steps: The run's step budget (``<= 0``: unknown, nothing changes).
        name: The option, for the message.

    Returns:
        ``(interval, message)``: a tenth of the run (at least 1) with a message saying so when
        ``interval > max_steps``, else ``(interval, None)``.
    """
    if max_steps <= 0 or interval <= max_steps:
        return interval, None
    new = max(1, max_steps // 10)
    return new, f"{name} {interval} is longer than the run ({max_steps} steps): every {new} steps instead"


__all__ = ["RUN_LAYOUT", "default_logger", "fit_interval", "run_paths", "tensorboard_available"]
