"""Start-up latency of the ``uae`` command and of loading a model, as ratios to ``import torch``.

Two parts, every command in a fresh interpreter, timed by wall clock from process start to exit:

* **help**: ``uae --help``, every sub-command's ``--help`` and ``uae models`` (targets: ``--help`` under
  1 s, ``uae models`` under 2 s);
* **model**: ``python -c "import torch"`` (the floor every model command pays),
  ``python -c "import uae; uae.create_model('uae_demo', pretrained=True)"`` and
  ``uae reconstruct IMG --out DIR`` (the embedded demo model on a 128 px image, band picture included).
  These run interleaved, one of each per round (rotating the order), so that a change of load on a
  shared machine hits all of them alike; each is reported as the median over rounds of its time
  divided by the same round's ``import torch`` (target: at most :data:`MODEL_TARGET_RATIO`). One more
  run of each with ``python -X importtime`` lists what it imports beyond torch (the packages costing
  most, and whether timm, torchvision, matplotlib, torchmetrics or Lightning were imported at all).

The first run of every command is an untimed warm-up, so the numbers are for a warm file-system cache,
as a user's second call would see.

Run: ``uae bench --startup [--repeats N]``.
"""

from __future__ import annotations

import json
import logging
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

#: Wall-clock targets in seconds.
HELP_TARGET_S = 1.0
MODELS_TARGET_S = 2.0
#: A model command may take at most this multiple of ``import torch`` (issue 18).
MODEL_TARGET_RATIO = 1.3
#: Packages whose import a model command should not need (reported as imported or not).
WATCHED = ("timm", "torchvision", "torch._dynamo", "matplotlib", "torchmetrics", "lightning", "transformers")
#: Label of the baseline row.
BASELINE = "import torch"


def startup_commands(names: Sequence[str]) -> list[list[str]]:
    """The measured command lines (arguments after ``uae``): top-level help, each command's help, models.

    Args:
        names: The sub-commands (``uae.commands.COMMANDS``).
    """
    return [["--help"]] + [[name, "--help"] for name in names] + [["models"]]


def model_commands(image: str | os.PathLike, out_dir: str | os.PathLike) -> dict[str, list[str]]:
    """``{label: argv}`` of the model start-up part (``argv[0]`` is this interpreter).

    Args:
        image: The image ``uae reconstruct`` reads.
        out_dir: Where it writes.
    """
    py = sys.executable
    return {
        BASELINE: [py, "-c", "import torch"],
        "create_model('uae_demo', pretrained=True)": [
            py,
            "-c",
            "import uae; uae.create_model('uae_demo', pretrained=True)",
        ],
        "uae reconstruct IMG --out DIR": [
            py,
            "-m",
            "uae.cli",
            "reconstruct",
            str(image),
            "--out",
            str(out_dir),
        ],
    }


def _run(argv: Sequence[str], env: dict[str, str]) -> tuple[float, subprocess.CompletedProcess[bytes]]:
    t0 = time.perf_counter()
    proc = subprocess.run(list(argv), capture_output=True, env=env, check=False)
    return time.perf_counter() - t0, proc


def time_command(args: Sequence[str], repeats: int, env: dict[str, str] | None = None) -> dict[str, Any]:
    """Median wall time of ``python -m uae.cli ARGS`` over ``repeats`` runs after one warm-up run.

    Returns:
        ``{"command", "median_s", "runs_s", "returncode"}``.
    """
    cmd = [sys.executable, "-m", "uae.cli", *args]
    runs = []
    rc = 0
    for i in range(repeats + 1):
        dt, proc = _run(cmd, env if env is not None else dict(os.environ))
        rc = proc.returncode
        if i:  # the first run warms the file-system cache
            runs.append(dt)
    return {
        "command": "uae " + " ".join(args),
        "median_s": statistics.median(runs),
        "runs_s": runs,
        "returncode": rc,
    }


def import_times(stderr: str) -> dict[str, float]:
    """``{module: seconds}``: each module's own import time from a ``python -X importtime`` run's stderr."""
    out: dict[str, float] = {}
    for line in stderr.splitlines():
        m = re.match(r"import time:\s+(\d+) \|\s+(\d+) \| \s*(\S+)", line)
        if m:
            out[m.group(3)] = out.get(m.group(3), 0.0) + int(m.group(1)) / 1e6
    return out


def import_breakdown(
    times: dict[str, float], baseline: dict[str, float] | None = None, top: int = 6
) -> dict[str, Any]:
    """What a command imported beyond ``baseline`` (the modules of ``import torch``).

    Args:
        times: :func:`import_times` of the command.
        baseline: :func:`import_times` of the baseline; its modules are left out.
        top: How many packages to list.

    Returns:
        ``{"top": [(package, seconds), ...]}``: the costliest top-level packages among the modules the
        baseline did not import (each module's own time, so a package is not charged for what it imports
        from others), ``{"beyond_baseline_s": total}``, and ``{"imported": {name: bool}}`` for each of
        :data:`WATCHED`.
    """
    extra = {m: t for m, t in times.items() if m not in (baseline or {})}
    per_package: dict[str, float] = {}
    for module, t in extra.items():
        root = module.split(".")[0]
        per_package[root] = per_package.get(root, 0.0) + t
    ranked = sorted(per_package.items(), key=lambda kv: -kv[1])[:top]
    return {
        "top": [(k, round(v, 3)) for k, v in ranked],
        "beyond_baseline_s": round(sum(extra.values()), 3),
        "imported": {w: w in times for w in WATCHED},
    }


def write_demo_image(path: Path, side: int = 128) -> Path:
    """A deterministic smooth test picture (gradients and rings) as a PNG."""
    import numpy as np
    from PIL import Image

    y, x = np.mgrid[0:side, 0:side] / side
    r = np.hypot(x - 0.5, y - 0.5)
    rgb = np.stack([x, y, 0.5 + 0.5 * np.cos(24 * r)], axis=-1)
    Image.fromarray((rgb * 255).round().astype(np.uint8)).save(path)
    return path


def run_model_startup(repeats: int = 5, env: dict[str, str] | None = None) -> dict[str, Any]:
    """Interleaved whole-process timings of the model commands, as ratios to ``import torch``.

    Args:
        repeats: Timed rounds (after one warm-up round); each round runs every command once.
        env: Environment of the child processes (default: this one's).

    Returns:
        ``{"rows": [...], "rounds": [{label: seconds}], "target_ratio"}``; each row has ``median_s``,
        ``ratio`` (median over rounds of its time / that round's ``import torch``), ``ratio_min`` /
        ``ratio_max``, ``met``, ``returncode`` and ``imports`` (:func:`import_breakdown`).
    """
    env = dict(os.environ if env is None else env)
    env.setdefault("HF_HUB_OFFLINE", "1")
    env.setdefault("MPLBACKEND", "Agg")
    with tempfile.TemporaryDirectory(prefix="uae-startup-") as tmp:
        image = write_demo_image(Path(tmp) / "picture.png")
        cmds = model_commands(image, Path(tmp) / "out")
        labels = list(cmds)
        rounds: list[dict[str, float]] = []
        codes: dict[str, int] = {}
        for r in range(repeats + 1):
            order = labels[r % len(labels) :] + labels[: r % len(labels)]
            times = {}
            for label in order:
                dt, proc = _run(cmds[label], env)
                times[label] = dt
                codes[label] = proc.returncode
                if proc.returncode:
                    logger.warning("%s exited %d: %s", label, proc.returncode, proc.stderr.decode()[-500:])
            if r:  # round 0 warms the file-system cache
                rounds.append(times)
                logger.info(
                    "start-up round %d/%d: %s",
                    r,
                    repeats,
                    ", ".join(f"{k} {v:.2f} s" for k, v in times.items()),
                )
        rows = []
        times = {}
        for label in labels:
            _, proc = _run([cmds[label][0], "-X", "importtime", *cmds[label][1:]], env)
            times[label] = import_times(proc.stderr.decode(errors="replace"))
        for label in labels:
            ratios = [t[label] / t[BASELINE] for t in rounds]
            base = None if label == BASELINE else times[BASELINE]
            row = {
                "command": label,
                "argv": [
                    {sys.executable: "python", str(image): "IMG", str(Path(tmp) / "out"): "DIR"}.get(a, a)
                    for a in cmds[label]
                ],
                "median_s": statistics.median(t[label] for t in rounds),
                "runs_s": [t[label] for t in rounds],
                "ratio": statistics.median(ratios),
                "ratio_min": min(ratios),
                "ratio_max": max(ratios),
                "returncode": codes[label],
                "imports": import_breakdown(times[label], base),
            }
            row["met"] = label == BASELINE or (row["returncode"] == 0 and row["ratio"] <= MODEL_TARGET_RATIO)
            rows.append(row)
    return {"rows": rows, "rounds": rounds, "target_ratio": MODEL_TARGET_RATIO}


def run_startup(names: Sequence[str], repeats: int = 3, models: bool = True) -> dict[str, Any]:
    """Time every start-up command; each row says whether it meets its target.

    Args:
        names: The sub-commands whose ``--help`` is timed.
        repeats: Timed runs per command (after one warm-up run).
        models: Also run the model part (:func:`run_model_startup`).
    """
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    rows = []
    for args in startup_commands(names):
        row = time_command(args, repeats, env)
        row["target_s"] = MODELS_TARGET_S if args == ["models"] else HELP_TARGET_S
        row["met"] = row["returncode"] == 0 and row["median_s"] < row["target_s"]
        rows.append(row)
        logger.info("%-28s %.3f s (target %.0f s)", row["command"], row["median_s"], row["target_s"])
    result: dict[str, Any] = {
        "benchmark": "startup",
        "python": sys.version.split()[0],
        "repeats": repeats,
        "rows": rows,
    }
    with_load = hasattr(os, "getloadavg")
    if with_load:
        result["load_average_start"] = [round(v, 2) for v in os.getloadavg()]
    if models:
        result["model"] = run_model_startup(repeats, env)
    if with_load:
        result["load_average_end"] = [round(v, 2) for v in os.getloadavg()]
    return result


def startup_markdown(result: dict[str, Any]) -> str:
    """The result as markdown tables."""
    lines = [
        f"# uae start-up latency (median of {result['repeats']} runs, warm cache)",
        "",
        "| command | median (s) | target (s) | met |",
        "|---|---:|---:|---|",
    ]
    for r in result["rows"]:
        met = "yes" if r["met"] else "**no**"
        lines.append(f"| `{r['command']}` | {r['median_s']:.3f} | {r['target_s']:.0f} | {met} |")
    model = result.get("model")
    if model:
        lines += [
            "",
            f"Loading a model, interleaved with `{BASELINE}` ({len(model['rounds'])} rounds; ratio = median over "
            f"rounds of the command's time / the same round's `{BASELINE}`; target <= {model['target_ratio']}x):",
            "",
            "| command | median (s) | ratio to import torch (min-max) | met | imports beyond `import torch` (s): "
            "total; costliest | also imported |",
            "|---|---:|---:|---|---|---|",
        ]
        for r in model["rows"]:
            top = f"{r['imports']['beyond_baseline_s']:.2f}; " + ", ".join(
                f"{k} {v:.2f}" for k, v in r["imports"]["top"]
            )
            if r["command"] == BASELINE:
                top = "-"
            extra = ", ".join(k for k, v in r["imports"]["imported"].items() if v) or "none"
            met = "-" if r["command"] == BASELINE else ("yes" if r["met"] else "**no**")
            lines.append(
                f"| `{r['command']}` | {r['median_s']:.2f} | {r['ratio']:.2f} ({r['ratio_min']:.2f}-"
                f"{r['ratio_max']:.2f}) | {met} | {top} | {extra} |"
            )
    if "load_average_start" in result:
        lines += ["", f"Load average {result['load_average_start']} -> {result.get('load_average_end')}."]
    return "\n".join(lines) + "\n"


def write_startup(result: dict[str, Any], out_dir: str | os.PathLike, name: str = "startup") -> Path:
    """Write ``<out_dir>/<name>.json`` and ``.md``; returns the markdown path."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{name}.json").write_text(json.dumps(result, indent=2) + "\n")
    md = out / f"{name}.md"
    md.write_text(startup_markdown(result))
    return md
