"""One subject of a benchmark run in its own process: ``python -m uae.bench.worker TASK.json RESULT.json``.

``TASK.json`` holds ``{"subject": "uae" | <peer> | "train1" | "train3", "settings": {...}}`` (resolved
:class:`uae.bench.run.BenchSettings` fields); the result (:mod:`uae.bench.subjects`) is written to
``RESULT.json``. A peer whose library is missing, or that has no counterpart for the model, is
written as ``{"skipped": reason}``; any other failure as ``{"error": message}`` with exit code 1.
Progress goes to stderr.
"""

from __future__ import annotations

import json
import logging
import sys
import traceback
from pathlib import Path
from typing import Any


def run_task(task: dict[str, Any]) -> dict[str, Any]:
    """Measure the task's subject in this process (see the module docstring)."""
    import torch

    from uae.bench.settings import BenchSettings
    from uae.bench.subjects import measure_peer, measure_train, measure_uae

    settings = BenchSettings(**task["settings"])
    device = torch.device(task["device"])
    if settings.threads and device.type == "cpu":
        torch.set_num_threads(settings.threads)
    subject = task["subject"]
    if subject == "uae":
        return measure_uae(settings, device)
    if subject.startswith("train"):
        return measure_train(int(subject[len("train") :]), settings, device)
    try:
        return measure_peer(subject, settings, device)
    except (ImportError, ValueError) as e:  # peer library missing, or no counterpart for this model
        return {"skipped": f"{type(e).__name__}: {e}"}


def main(argv: list[str] | None = None) -> int:
    """Entry point (see the module docstring)."""
    args = sys.argv[1:] if argv is None else argv
    task_path, result_path = Path(args[0]), Path(args[1])
    task = json.loads(task_path.read_text())
    logging.basicConfig(level=task.get("log_level", "INFO"), format="%(message)s", stream=sys.stderr)
    try:
        result = run_task(task)
        code = 0
    except Exception as e:  # noqa: BLE001 - reported to the parent process, which decides
        traceback.print_exc()
        result = {"error": f"{type(e).__name__}: {e}"}
        code = 1
    result_path.write_text(json.dumps(result))
    return code


if __name__ == "__main__":
    sys.exit(main())
