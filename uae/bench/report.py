"""Targets, markdown report and result files of a benchmark run."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import torch

from uae.bench.timing import B_CONFIG, MFU_TARGET, OPS, SHARE_TARGET


def evaluate_targets(result: dict[str, Any], device: torch.device) -> list[dict[str, Any]]:
    """The README's three targets with the measured values and whether each is met (``None``: not applicable)."""
    s = result["settings"]
    share = result["projector_modulator"]["share_of_encode_side"]
    targets = [
        {
            "target": f"band projector + modulator < {SHARE_TARGET:.0%} of encode time at the B config",
            "measured": f"{share:.2%} ({s['model']})",
            "met": share < SHARE_TARGET if s["model"] == B_CONFIG else None,
        }
    ]
    rae = result["ratios"].get("rae")
    targets.append(
        {
            "target": "uae reconstruct images/s >= RAE's (same encoder/decoder sizes)",
            "measured": f"uae / RAE = {1 / rae['reconstruct']:.3f}" if rae else "RAE not measured",
            "met": (rae["reconstruct"] <= 1.0) if rae else None,
        }
    )
    util = result["uae"]["reconstruct"].get("flop_utilisation")
    applicable = device.type == "cuda" and s["precision"] == "bf16" and s["batch_size"] == 64
    targets.append(
        {
            "target": f"CUDA, bf16 autocast, batch 64: encode+decode >= {MFU_TARGET:.0%} of peak bf16 FLOP/s",
            "measured": f"{util:.1%} of {result['peak_tflops']} TFLOP/s"
            if util is not None
            else "no peak FLOP/s given",
            "met": (util >= MFU_TARGET) if (applicable and util is not None) else None,
        }
    )
    return targets


# ---------------------------------------------------------------------------------------------------
# markdown
# ---------------------------------------------------------------------------------------------------
def _f(v: float | None, digits: int = 3) -> str:
    if v is None:
        return "-"
    return f"{v:.{digits}g}" if abs(v) < 10**digits else f"{v:.0f}"


def _mem_header(result: dict[str, Any]) -> str:
    if result.get("processes"):
        return "peak mem of its process, MiB (+ over the process before the model)"
    return "peak mem, MiB (+ over resident)"


def _mem_cell(proc: dict[str, Any] | None, measurement: dict[str, Any] | None) -> str:
    """The process's peak and its growth over the bare process, else the measurement's (older results)."""
    if proc and proc.get("peak_mib") is not None:
        base = proc.get("base_mib")
        return f"{proc['peak_mib']:.0f}" + (f" (+{proc['peak_mib'] - base:.0f})" if base is not None else "")
    if measurement:
        peak, base = measurement["peak_mem_mib"], measurement["base_mem_mib"]
        return f"{peak:.0f} (+{peak - base:.0f})"
    return "-"


def _mem_note(result: dict[str, Any]) -> str:
    kind = result["uae"]["reconstruct"]["mem_kind"]
    if not result.get("processes"):
        return f"Peak memory: {kind} (includes the weights; models of earlier rows were still resident)."
    if not result["settings"].get("isolated", True):
        return (
            f"Peak memory: {kind} of the one process that measured every row in turn (isolate=False): "
            "rows after the first include the models measured before them."
        )
    what = "peak resident set size" if result["env"]["device"] == "cpu" else "peak allocated CUDA memory"
    return (
        f"Peak memory: the {what} of each model's own process (each model measured alone in a fresh "
        "process), weights included; in brackets its growth over the process before the model was built."
    )


def to_markdown(result: dict[str, Any]) -> str:
    """A markdown report of one run: throughput/memory table with ratios, pieces, training, targets."""
    env, s = result["env"], result["settings"]
    lines = [
        f"### {s['model']}: {env['device_name']}, {s['precision']}, batch {s['batch_size']}, "
        f"{s['resolution']} px -> {s['output_size']} px",
        "",
        f"torch {env['torch']}, timm {env['timm']}, diffusers {env['diffusers']}; {env['date_utc']}; "
        f"compile {'on' if s['compile'] else 'off'}, SDPA {'on' if s['sdpa'] else 'off'}; "
        f"median of {s['repeats']} timed runs after {s['warmup']} warm-up runs"
        + (
            f"; load average {env.get('load_average_start')} -> {env.get('load_average_end')}"
            if "load_average_start" in env
            else ""
        )
        + ".",
        "",
        f"| model | params (M) | encode img/s | decode img/s | reconstruct img/s | {_mem_header(result)} "
        "| GFLOP/img (reconstruct) | encode / uae | decode / uae | reconstruct / uae |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    u = result["uae"]
    procs = result.get("processes", {})

    def row(
        label: str, r: dict[str, Any], params: float | None, ratios: dict[str, float] | None, subject: str
    ) -> str:
        cells = [label, _f(params, 4)]
        cells += [_f(r[op]["images_per_s"]) if op in r else "-" for op in OPS]
        cells.append(_mem_cell(procs.get(subject), r.get("reconstruct") or r.get("encode")))
        g = (r.get("reconstruct") or r.get("encode") or {}).get("gflop_per_image")
        cells.append(_f(g, 4) + ("" if "reconstruct" in r else " (encode)") if g is not None else "-")
        cells += [
            f"{ratios[op]:.3f}" if ratios and op in ratios else ("1" if ratios is None else "-") for op in OPS
        ]
        return "| " + " | ".join(cells) + " |"

    lines.append(row("**uae**", u, s["num_params_m"], None, "uae"))
    for peer, r in result["peers"].items():
        if "skipped" in r:
            lines.append(f"| {r['label']} | skipped: {r['skipped']} |" + " |" * 8)
        else:
            lines.append(row(r["label"], r, r.get("num_params_m"), result["ratios"][peer], peer))
    lines += [
        "",
        "Ratios are peer images/s divided by uae images/s (> 1: the peer is faster). " + _mem_note(result),
    ]
    if env["device"] == "cpu":
        lines += [
            "",
            f"CPU seconds per wall second during the uae reconstruct: {u['reconstruct']['cpu_per_wall']:.2f} "
            f"(of {env['torch_threads']} threads); images per CPU second: "
            + ", ".join(f"{op} {_f(u[op]['images_per_cpu_s'])}" for op in OPS)
            + ".",
        ]
        cpu_rows = cpu_time_ratios(result)
        if cpu_rows:
            lines += [
                "",
                "The same ratios from images per CPU second (less sensitive to other processes on a shared "
                "machine, when each process runs one thread):",
                "",
                "| model | cpu/wall | encode / uae | decode / uae | reconstruct / uae |",
                "|---|---:|---:|---:|---:|",
            ]
            for label, busy, ratios in cpu_rows:
                cells = [f"{ratios[op]:.3f}" if op in ratios else "-" for op in OPS]
                lines.append(f"| {label} | {busy:.2f} | " + " | ".join(cells) + " |")
    pm = result["projector_modulator"]
    lines += [
        "",
        "| encode-side piece | ms / batch | share of encode side |",
        "|---|---:|---:|",
    ]
    total = pm["encoder_ms"] + pm["projector_ms"] + pm["modulator_ms"]
    for k, v in (
        ("ViT encoder", pm["encoder_ms"]),
        ("band projector", pm["projector_ms"]),
        ("band modulator", pm["modulator_ms"]),
    ):
        lines.append(f"| {k} | {_f(v, 4)} | {v / total:.2%} |")
    lines.append(
        f"| **band projector + modulator** | {_f(pm['projector_ms'] + pm['modulator_ms'], 4)} | **{pm['share_of_encode_side']:.2%}** |"
    )
    cpu_share = cpu_time_share(result["pieces"])
    if env["device"] == "cpu" and cpu_share is not None:
        lines += [
            "",
            f"The same share from CPU seconds per image (robust to other processes): {cpu_share:.2%}.",
        ]
    if result.get("train"):
        lines += [
            "",
            f"| training step | batch | img/s | ms / step | {_mem_header(result)} |",
            "|---|---:|---:|---:|---:|",
        ]
        for k, r in result["train"].items():
            if "skipped" in r:
                lines.append(f"| {k} | {r['batch_size']} | skipped: {r['skipped']} | | |")
                continue
            lines.append(
                f"| {k} | {r['batch_size']} | {_f(r['images_per_s'])} | {_f(r['median_ms'], 5)} | "
                f"{_mem_cell(procs.get('train' + k[len('stage') :]), r)} |"
            )
    if any("gflop_per_image" in u[op] for op in OPS):
        peak = result["peak_tflops"]
        lines += [
            "",
            f"| uae op | GFLOP / image | achieved TFLOP/s | utilisation of {peak or '?'} TFLOP/s |",
            "|---|---:|---:|---:|",
        ]
        for op in OPS:
            r = u[op]
            util = r.get("flop_utilisation")
            lines.append(
                f"| {op} | {_f(r.get('gflop_per_image'), 4)} | {_f(r.get('achieved_tflops'))} | "
                f"{f'{util:.1%}' if util is not None else '-'} |"
            )
    if result.get("ablations"):
        lines += [
            "",
            "| ablation (reconstruct) | img/s | vs main setting | vs main, by CPU time |",
            "|---|---:|---:|---:|",
        ]
        for r in result["ablations"].values():
            by_cpu = r.get("ratio_to_main_cpu") if env["device"] == "cpu" else None
            pairs = r.get("pair_ratios")
            span = f" (pairs {min(pairs):.3f}-{max(pairs):.3f})" if pairs else ""
            lines.append(
                f"| {r['label']} | {_f(r['images_per_s'])} | {r['ratio_to_main']:.3f}{span} | "
                f"{'-' if by_cpu is None else f'{by_cpu:.3f}'} |"
            )
        if any(r.get("pair_ratios") for r in result["ablations"].values()):
            lines += ["", "Each ablation alternates with the main setting, call by call (interleaved pairs)."]
    lines += ["", "| target | measured | met |", "|---|---|---|"]
    for t in result["targets"]:
        met = {True: "yes", False: "**no**", None: "n/a here"}[t["met"]]
        lines.append(f"| {t['target']} | {t['measured']} | {met} |")
    return "\n".join(lines) + "\n"


def write_results(
    result: dict[str, Any], out_dir: str | os.PathLike, name: str | None = None
) -> tuple[Path, Path]:
    """Write ``<name>.json`` and ``<name>.md``; returns their paths."""
    s = result["settings"]
    if name is None:
        dev = result["env"]["device"]
        if dev == "cuda":
            dev = "cuda-" + re.sub(r"[^A-Za-z0-9]+", "-", result["env"]["device_name"]).strip("-").lower()
        name = f"{dev}_{s['model']}_{s['precision']}_b{s['batch_size']}" + (
            "_compile" if s["compile"] else ""
        )
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    jpath, mpath = out / f"{name}.json", out / f"{name}.md"
    jpath.write_text(json.dumps(result, indent=2, sort_keys=False) + "\n")
    mpath.write_text(to_markdown(result))
    return jpath, mpath


def cpu_time_share(pieces: dict[str, dict[str, Any]]) -> float | None:
    """The projector + modulator share computed from CPU seconds per image instead of wall time.

    Less sensitive to other processes on a shared CPU machine (on GPU it only measures host time).
    """
    try:
        per_img = {k: 1.0 / pieces[k]["images_per_cpu_s"] for k in ("encoder", "band_projector", "modulator")}
    except (KeyError, TypeError, ZeroDivisionError):
        return None
    return (per_img["band_projector"] + per_img["modulator"]) / sum(per_img.values())


def cpu_time_ratios(result: dict[str, Any]) -> list[tuple[str, float, dict[str, float]]]:
    """Per measured peer: ``(label, its reconstruct's CPU seconds per wall second, {op: peer / uae images per
    CPU second})``; empty on a non-CPU device or when the numbers are missing."""
    if result["env"]["device"] != "cpu":
        return []
    u = result["uae"]
    rows = []
    for r in result["peers"].values():
        if "skipped" in r:
            continue
        ratios = {
            op: r[op]["images_per_cpu_s"] / u[op]["images_per_cpu_s"]
            for op in OPS
            if op in r and r[op].get("images_per_cpu_s") and u[op].get("images_per_cpu_s")
        }
        first = r.get("reconstruct") or r.get("encode")
        if ratios and first:
            rows.append((r["label"], first["cpu_per_wall"], ratios))
    return rows
