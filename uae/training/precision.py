"""Training precision chosen from the hardware when a run does not set it."""

from __future__ import annotations

from typing import Any

import torch


def select_precision(accelerator: Any = "auto", supports_fp16: bool = True) -> str:
    """Training precision for the hardware: ``bf16-mixed`` where CUDA supports bf16, else ``16-mixed``
    on CUDA (``32-true`` when the stage cannot use fp16, i.e. stage 3), ``32-true`` on CPU / other
    accelerators.

    Args:
        accelerator: The trainer's ``accelerator`` setting (``"auto"``, ``"gpu"``, ``"cuda"``, ``"cpu"``...)
            or an accelerator object.
        supports_fp16: The stage module supports fp16 mixed precision (loss scaling; its
            ``SUPPORTS_FP16``).
    """
    name = str(accelerator).lower() if isinstance(accelerator, str) else type(accelerator).__name__.lower()
    if not any(k in name for k in ("auto", "gpu", "cuda")) or not torch.cuda.is_available():
        return "32-true"
    if torch.cuda.is_bf16_supported():
        return "bf16-mixed"
    return "16-mixed" if supports_fp16 else "32-true"


__all__ = ["select_precision"]
