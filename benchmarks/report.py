"""Where a benchmark's figures go: one JSON file per run, and a short summary on standard output."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


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
