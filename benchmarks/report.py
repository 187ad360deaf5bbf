"""Where a benchmark's figures go: one JSON file per run, and a short summary on standard output."""

from __future__ import annotations

import json
import os
import platform
import statistics
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch


def device_env(device: torch.device) -> dict[str, Any]:
    """What a result was measured on: the device, its name (the GPU's, else the processor), CPUs, torch."""
    import torch

    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor()
    return {"device": str(device), "device_name": name, "cpus": os.cpu_count(), "torch": torch.__version__}


def sync(device: torch.device) -> None:
    """Wait for the work queued on ``device`` (a CUDA device; nothing to wait for elsewhere)."""
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def rate_fields(rates: dict[str, list[float]]) -> dict[str, Any]:
    """``images_per_s`` (each variant's rate per round) and ``median_images_per_s``, to 0.1 image/s."""
    return {
        "images_per_s": {k: [round(r, 1) for r in v] for k, v in rates.items()},
        "median_images_per_s": {k: round(statistics.median(v), 1) for k, v in rates.items()},
    }


def ratio_fields(num: list[float], den: list[float]) -> dict[str, Any]:
    """``num / den`` of rates measured in the same rounds: the median of the per-round ratios (each round's
    A/B pair), their range, the ratio of the two medians, and the per-round ratios, to 0.001."""
    per_round = [a / b for a, b in zip(num, den)]
    return {
        "median": round(statistics.median(per_round), 3),
        "min": round(min(per_round), 3),
        "max": round(max(per_round), 3),
        "of_medians": round(statistics.median(num) / statistics.median(den), 3),
        "per_round": [round(r, 3) for r in per_round],
    }


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
