"""Start-up latency of the ``uae`` command: ``uae --help``, every sub-command's ``--help`` and ``uae models``.

Each command runs in a fresh interpreter (``python -m uae.cli ...``, what the console script does) and is
timed by wall clock from process start to exit; the median of ``repeats`` runs is reported next to the
target (``--help`` under 1 s, ``uae models`` under 2 s). The first run of each command is an untimed
warm-up, so the numbers are for a warm file-system cache, as a user's second call would see.

Run: ``uae bench --startup [--repeats N]``.
"""

from __future__ import annotations

import json
import logging
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

#: Wall-clock targets in seconds.
HELP_TARGET_S = 1.0
MODELS_TARGET_S = 2.0


def startup_commands(names: Sequence[str]) -> list[list[str]]:
    """The measured command lines (arguments after ``uae``): top-level help, each command's help, models.

    Args:
        names: The sub-commands (``uae.commands.COMMANDS``).
    """
    return [["--help"]] + [[name, "--help"] for name in names] + [["models"]]


def time_command(args: Sequence[str], repeats: int, env: dict[str, str] | None = None) -> dict[str, Any]:
    """Median wall time of ``python -m uae.cli ARGS`` over ``repeats`` runs after one warm-up run.

    Returns:
        ``{"command", "median_s", "runs_s", "returncode"}``.
    """
    cmd = [sys.executable, "-m", "uae.cli", *args]
    runs = []
    rc = 0
    for i in range(repeats + 1):
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, env=env, check=False)
        dt = time.perf_counter() - t0
        rc = proc.returncode
        if i:  # the first run warms the file-system cache
            runs.append(dt)
    return {
        "command": "uae " + " ".join(args),
        "median_s": statistics.median(runs),
        "runs_s": runs,
        "returncode": rc,
    }


def run_startup(names: Sequence[str], repeats: int = 3) -> dict[str, Any]:
    """Time every start-up command; each row says whether it meets its target.

    Args:
        names: The sub-commands whose ``--help`` is timed.
        repeats: Timed runs per command (after one warm-up run).
    """
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    rows = []
    for args in startup_commands(names):
        row = time_command(args, repeats, env)
        row["target_s"] = MODELS_TARGET_S if args == ["models"] else HELP_TARGET_S
        row["met"] = row["returncode"] == 0 and row["median_s"] < row["target_s"]
        rows.append(row)
        logger.info("%-28s %.3f s (target %.0f s)", row["command"], row["median_s"], row["target_s"])
    return {"benchmark": "startup", "python": sys.version.split()[0], "repeats": repeats, "rows": rows}


def startup_markdown(result: dict[str, Any]) -> str:
    """The result as a markdown table."""
    lines = [
        f"# uae start-up latency (median of {result['repeats']} runs, warm cache)",
        "",
        "| command | median (s) | target (s) | met |",
        "|---|---:|---:|---|",
    ]
    for r in result["rows"]:
        met = "yes" if r["met"] else "**no**"
        lines.append(f"| `{r['command']}` | {r['median_s']:.3f} | {r['target_s']:.0f} | {met} |")
    return "\n".join(lines) + "\n"


def write_startup(result: dict[str, Any], out_dir: str | os.PathLike, name: str = "startup") -> Path:
    """Write ``<out_dir>/<name>.json`` and ``.md``; returns the markdown path."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{name}.json").write_text(json.dumps(result, indent=2) + "\n")
    md = out / f"{name}.md"
    md.write_text(startup_markdown(result))
    return md
