"""Throughput and memory of uae, side by side with peer tokenizers, in one run on the same inputs.

From the command line (``uae bench``, :mod:`uae.commands.bench`)::

    uae bench --quick                     # seconds: the small demo config beside the peers
    uae bench --model uae_base_p14_dinov2 --device cpu --batch-size 2
    uae bench --device cuda --precision bf16 --batch-size 64 --ablations sdpa,compile

or from Python: ``run_benchmark(model="uae_test", device="cpu", batch_size=2, peers=())``.

Every subject (uae, each peer, each training step) is measured in its own fresh process
(:mod:`uae.bench.worker`, :mod:`uae.bench.subjects`), one after the other, so that its memory is that
of its own model alone; the plan, with a rough estimate of the time and the peak memory, is logged
before the first process starts (:mod:`uae.bench.plan`), and each process logs what it measures.

What is measured (see ``benchmarks/README.md`` for the definitions and targets):

* uae ``encode`` / ``decode`` / ``reconstruct`` images/s: median of ``repeats`` timed runs after
  ``warmup`` untimed runs, with ``torch.cuda.synchronize`` around every timed run on GPU;
* the encode-side pieces (ViT encoder, band projector, band modulator) timed separately, giving the
  band projector + modulator share of the encode time;
* training-step images/s of stage 1 (encoder frozen, L1) and stage 3 (all trainable, high-band noise,
  L1 + a patch-discriminator hinge GAN step), with the plain model and AdamW;
* peak memory of each subject's process (CPU: its peak resident set size, weights and Python heap
  included, next to its size before the model was built; CUDA: ``max_memory_allocated``), and of every
  measurement within it (reset before each through ``/proc/self/clear_refs``);
* model FLOPs per image (``torch.utils.flop_counter``) and FLOP utilisation against a peak;
* peers on the same inputs: diffusers ``AutoencoderKL`` (SD-VAE config, random init), diffusers
  ``AutoencoderRAE`` (same encoder/decoder sizes), uae without band split and modulator, and the bare
  timm DINOv2 encoder (the lower bound for encode); each reported as a ratio to uae.

:func:`uae.bench.report.write_results` writes the result as ``<out_dir>/<name>.json`` and ``.md``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import torch

from uae.bench.report import evaluate_targets
from uae.bench.settings import QUICK, BenchSettings
from uae.bench.timing import OPS, PEER_LABELS, environment, known_peak_tflops
from uae.errors import InputError, UAEError
from uae.models.registry import get_config
from uae.utils import check_device

logger = logging.getLogger("uae.bench")


def _device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return check_device(name)


def _run_isolated(subject: str, settings: BenchSettings, device: torch.device) -> dict[str, Any]:
    """Run one subject in a fresh Python process (:mod:`uae.bench.worker`); its progress goes to stderr.

    Raises:
        UAEError: The process failed without writing a result (naming its exit code).
    """
    task = {
        "subject": subject,
        "device": str(device),
        "settings": dataclasses.asdict(settings),
        "log_level": logging.getLevelName(logger.getEffectiveLevel()),
    }
    env = dict(os.environ)
    root = str(Path(__file__).resolve().parents[2])  # the same uae as this process, installed or not
    env["PYTHONPATH"] = os.pathsep.join([root, *filter(None, [env.get("PYTHONPATH")])])
    with tempfile.TemporaryDirectory(prefix="uae-bench-") as tmp:
        task_path, result_path = Path(tmp) / "task.json", Path(tmp) / "result.json"
        task_path.write_text(json.dumps(task))
        proc = subprocess.run(
            [sys.executable, "-m", "uae.bench.worker", str(task_path), str(result_path)], env=env, check=False
        )
        if not result_path.is_file():
            raise UAEError(f"the benchmark process for {subject!r} exited with code {proc.returncode}")
        return json.loads(result_path.read_text())


def _run_here(subject: str, settings: BenchSettings, device: torch.device) -> dict[str, Any]:
    """Run one subject in this process (``isolate=False``: faster, but memory is not per model)."""
    from uae.bench.worker import run_task

    return run_task({"subject": subject, "device": str(device), "settings": dataclasses.asdict(settings)})


def _prepare(opts: BenchSettings) -> tuple[BenchSettings, torch.device, float, list[Any]]:
    """Resolve the settings for the device, check them, and plan the run (:mod:`uae.bench.plan`)."""
    from uae.bench.plan import calibrate_gflops, make_plan

    device = _device(opts.device)
    if opts.threads and device.type == "cpu":
        torch.set_num_threads(opts.threads)
    opts = opts.resolved(device)
    cfg = get_config(opts.model)
    res = opts.resolution or cfg.img_size
    if res % cfg.patch_size:
        raise InputError(
            f"resolution {res} is not a multiple of the patch size {cfg.patch_size}", param="resolution"
        )
    gflops = calibrate_gflops(device, opts.precision)
    return opts, device, gflops, make_plan(opts, cfg, device, gflops)


def describe_run(settings: BenchSettings | None = None, /, **kwargs: Any) -> str:
    """What :func:`run_benchmark` would do with these settings, and roughly how long and how much memory
    it would take, without running it (``uae bench --plan``)."""
    from uae.bench.plan import describe_plan

    _, device, gflops, steps = _prepare(dataclasses.replace(settings or BenchSettings(), **kwargs))
    return describe_plan(steps, device, gflops)


def run_benchmark(settings: BenchSettings | None = None, /, **kwargs: Any) -> dict[str, Any]:
    """Run the whole benchmark; returns the JSON-ready result dict.

    Every subject (uae, each peer, each training step) runs in its own process, one after the other,
    so each one's memory is measured with no other model resident; before starting, the plan is logged
    with its estimated time and peak memory (:mod:`uae.bench.plan`), and each process logs its progress.

    Args:
        settings: What to measure (default: :class:`BenchSettings`'s defaults).
        **kwargs: :class:`BenchSettings` fields to change, e.g. ``run_benchmark(model="uae_test",
            device="cpu", peers=("dinov2",))``.

    Raises:
        InputError: A bad setting (naming the field), or a device this machine does not have.
        UAEError: The uae process failed.
    """
    from uae.bench.plan import describe_plan

    opts, device, gflops, steps = _prepare(dataclasses.replace(settings or BenchSettings(), **kwargs))
    logger.info("%s", describe_plan(steps, device, gflops))
    env = environment(device)
    run = _run_isolated if opts.isolate else _run_here
    outputs: dict[str, dict[str, Any]] = {}
    for i, st in enumerate(steps, 1):
        logger.info("[%d/%d] %s: %s", i, len(steps), st.label, st.work)
        out = run(st.subject, opts, device)
        if "error" in out and st.subject == "uae":
            raise UAEError(f"measuring uae failed: {out['error']}")
        if "error" in out or "skipped" in out:
            reason = out.get("skipped") or out["error"]
            logger.warning("[%d/%d] %s skipped: %s", i, len(steps), st.label, reason)
        elif "process" in out:
            proc = out["process"]
            logger.info(
                "[%d/%d] %s done in %.0f s, process peak %.0f MiB",
                i,
                len(steps),
                st.label,
                proc["wall_s"],
                proc["peak_mib"],
            )
        outputs[st.subject] = out

    u = outputs["uae"]
    result: dict[str, Any] = {
        "env": env,
        "settings": {
            "model": opts.model,
            **{k: v for k, v in u["model_info"].items() if k == "num_params_m"},
            "batch_size": opts.batch_size,
            "train_batch_size": opts.train_batch_size,
            **{k: v for k, v in u["model_info"].items() if k != "num_params_m"},
            "precision": opts.precision,
            "repeats": opts.repeats,
            "warmup": opts.warmup,
            "piece_repeats": opts.piece_repeats,
            "train_repeats": opts.train_repeats,
            "compile": opts.compile,
            "sdpa": opts.sdpa,
            "peers": list(opts.peers),
            "ablations": list(opts.ablations),
            "isolated": opts.isolate,
        },
        "plan": {
            "calibration_gflops": round(gflops, 1),
            "steps": [dataclasses.asdict(s) for s in steps],
        },
        "uae": u["uae"],
        "pieces": u["pieces"],
        "projector_modulator": u["projector_modulator"],
        "ablations": u["ablations"],
        "processes": {"uae": u["process"]},
    }
    result["peers"] = {}
    for peer in opts.peers:
        out = outputs[peer]
        if "skipped" in out or "error" in out:
            result["peers"][peer] = {
                "label": PEER_LABELS[peer],
                "skipped": out.get("skipped") or out["error"],
            }
        else:
            result["processes"][peer] = out.pop("process")
            result["peers"][peer] = out
    result["ratios"] = {
        peer: {op: r[op]["images_per_s"] / result["uae"][op]["images_per_s"] for op in OPS if op in r}
        for peer, r in result["peers"].items()
        if "skipped" not in r
    }
    if opts.train:
        result["train"] = {}
        for stage in (1, 3):
            out = outputs[f"train{stage}"]
            if "error" in out:
                result["train"][f"stage{stage}"] = {
                    "skipped": out["error"],
                    "batch_size": opts.train_batch_size,
                }
                continue
            result["processes"][f"train{stage}"] = out.pop("process")
            result["train"][f"stage{stage}"] = out

    # ---- FLOP utilisation and targets ------------------------------------------------------------------
    peak = opts.peak_tflops or known_peak_tflops(device, opts.precision)
    result["peak_tflops"] = peak
    result["peak_tflops_source"] = (
        "given (peak_tflops)" if opts.peak_tflops else ("known GPU table" if peak else None)
    )
    for op in OPS:
        r = result["uae"][op]
        if "gflop_per_image" in r:
            r["achieved_tflops"] = r["gflop_per_image"] * r["images_per_s"] / 1e3
            r["flop_utilisation"] = r["achieved_tflops"] / peak if peak else None
    result["targets"] = evaluate_targets(result, device)
    with contextlib.suppress(OSError, AttributeError):
        result["env"]["load_average_end"] = [round(v, 2) for v in os.getloadavg()]
    return result


__all__ = ["QUICK", "BenchSettings", "describe_run", "run_benchmark"]
