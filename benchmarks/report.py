"""Where a benchmark's figures go: one JSON file per run, and a short summary on standard output."""

from __future__ import annotations

import json
import os
import platform
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch


def device_env(device: torch.device) -> dict[str, Any]:
    """What a result was measured on: the device, its name (the GPU's, else the processor), CPUs, torch."""
    import torch

    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor()
    return {"device": str(device), "device_name": name, "cpus": os.cpu_count(), "torch": torch.__version__}


def write_result(out: str | Path, stem: str, result: Any, summary: Any) -> Path:
    """Write ``result`` to ``out/<stem>.json`` (the folder created) and print ``summary`` as JSON.

    Returns:
        The JSON file's path.
    """
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{stem}.json"
    path.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(summary, indent=1))
    print(f"written to {path}")
    return path
