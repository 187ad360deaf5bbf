"""Environment, timing, peak memory and FLOPs of one measurement (CPU and CUDA)."""

from __future__ import annotations

import contextlib
import datetime as _dt
import gc
import os
import platform
import re
import resource
import statistics
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from uae.bench.names import ABLATIONS, B_CONFIG, OPS, PEERS  # noqa: F401  (re-exported)

PEER_LABELS = {
    "sd-vae": "SD-VAE (diffusers AutoencoderKL, random init)",
    "rae": "RAE (diffusers AutoencoderRAE, same encoder/decoder sizes, random init)",
    "rae-equiv": "uae without band split + modulator (same encoder/decoder modules)",
    "dinov2": "bare timm DINOv2 encoder (encode lower bound)",
}
#: Projector + modulator share of the encode side must stay below this (README target 1).
SHARE_TARGET = 0.05
#: encode+decode FLOP utilisation target on a CUDA GPU with bf16 autocast at batch 64 (README target 3).
MFU_TARGET = 0.40

#: Dense (no sparsity) bf16 tensor-core peaks from the vendors' data sheets, TFLOP/s. Matched as
#: substrings of ``torch.cuda.get_device_name()`` in this order; the first hit wins.
KNOWN_PEAK_BF16_TFLOPS: tuple[tuple[str, float], ...] = (
    ("H200 NVL", 835.0),
    ("H200", 989.4),
    ("H100 NVL", 835.0),
    ("H100 PCIe", 756.0),
    ("H100", 989.4),  # SXM
    ("B200", 2250.0),
    ("A100", 312.0),
    ("L40S", 362.0),
    ("L40", 181.0),
    ("L4", 121.0),
    ("A10", 125.0),
)


# ---------------------------------------------------------------------------------------------------
# environment, timing and memory
# ---------------------------------------------------------------------------------------------------
def cpu_model_name() -> str:
    """The CPU model from ``/proc/cpuinfo`` (falls back to :func:`platform.processor`)."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown CPU"


def _version(module: str) -> str | None:
    try:
        from importlib.metadata import version

        return version(module)
    except Exception:  # noqa: BLE001 - missing optional package
        return None


def environment(device: torch.device) -> dict[str, Any]:
    """Where the numbers come from: device name, library versions, threads, load."""
    info: dict[str, Any] = {
        "date_utc": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu": cpu_model_name(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "timm": _version("timm"),
        "diffusers": _version("diffusers"),
        "transformers": _version("transformers"),
        "device": device.type,
        "device_name": f"CPU: {cpu_model_name()} ({torch.get_num_threads()} threads)",
    }
    if device.type == "cuda":
        info["device_name"] = torch.cuda.get_device_name(device)
        info["cuda"] = torch.version.cuda
        info["gpu_memory_gib"] = round(torch.cuda.get_device_properties(device).total_memory / 2**30, 1)
    with contextlib.suppress(OSError, AttributeError):
        info["load_average_start"] = [round(v, 2) for v in os.getloadavg()]
    with contextlib.suppress(Exception):
        info["git_commit"] = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=5, check=False
        ).stdout.strip()
    return info


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_fn(
    fn: Callable[[], Any],
    device: torch.device,
    repeats: int,
    warmup: int,
    cpu_times: list[float] | None = None,
) -> list[float]:
    """Wall-clock seconds of each of ``repeats`` timed calls of ``fn`` after ``warmup`` untimed calls.

    Args:
        cpu_times: If given, receives the process CPU seconds (all threads) of each timed call.
    """
    for _ in range(warmup):
        fn()
    _sync(device)
    times = []
    for _ in range(repeats):
        _sync(device)
        c0, t0 = time.process_time(), time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - t0)
        if cpu_times is not None:
            cpu_times.append(time.process_time() - c0)
    return times


def _proc_status_mib(key: str) -> float | None:
    with contextlib.suppress(OSError):
        m = re.search(rf"^{key}:\s+(\d+) kB", Path("/proc/self/status").read_text(), re.M)
        if m:
            return int(m.group(1)) / 1024
    return None


def _trim_heap() -> None:
    """Return freed heap memory to the OS (glibc ``malloc_trim``), so RSS reflects live memory."""
    with contextlib.suppress(OSError, AttributeError):
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)


def _reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS mark (``VmHWM``) to the current RSS (Linux >= 4.0)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return _proc_status_mib("VmHWM") is not None


#: Highest peak seen in this process before a :class:`PeakMemory` reset the kernel's mark (MiB).
_process_peak_mib = 0.0


def current_rss_mib() -> float | None:
    """This process's resident set size now (Linux ``VmRSS``), else ``None``."""
    return _proc_status_mib("VmRSS")


def process_peak_mib(device: torch.device) -> float:
    """Peak memory of this whole process so far, across every :class:`PeakMemory` reset.

    CPU: the highest resident set size (``VmHWM``; ``ru_maxrss`` without ``/proc``); CUDA: the highest
    ``torch.cuda.max_memory_allocated``.
    """
    if device.type == "cuda":
        now = torch.cuda.max_memory_allocated(device) / 2**20
    else:
        now = _proc_status_mib("VmHWM") or resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return max(_process_peak_mib, now)


def _remember_peak(device: torch.device) -> None:
    global _process_peak_mib
    _process_peak_mib = process_peak_mib(device)


class PeakMemory:
    """Peak memory during a ``with`` block.

    CUDA: ``torch.cuda.max_memory_allocated`` (tensors only, not the allocator's cache). CPU: the
    process's peak resident set size (``VmHWM``, reset on entry via ``/proc/self/clear_refs`` after
    glibc's ``malloc_trim`` returned freed heap memory), which includes the weights and the Python heap; without ``clear_refs`` the
    process-lifetime ``ru_maxrss`` is reported instead (``kind`` says which).

    Attributes:
        peak_mib: Peak during the block.
        base_mib: Memory in use at entry (weights, inputs); ``peak_mib - base_mib`` is the working set.
        kind: What was measured.
    """

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.peak_mib = float("nan")
        self.base_mib = float("nan")
        self.kind = ""

    def __enter__(self) -> PeakMemory:
        _remember_peak(self.device)  # the reset below forgets the process's peak so far
        if self.device.type == "cuda":
            gc.collect()
            torch.cuda.synchronize(self.device)
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(self.device)
            self.base_mib = torch.cuda.memory_allocated(self.device) / 2**20
            self.kind = "cuda_max_memory_allocated"
        else:
            _trim_heap()
            self.base_mib = _proc_status_mib("VmRSS") or float("nan")
            self.kind = "cpu_peak_rss" if _reset_peak_rss() else "cpu_ru_maxrss_process_lifetime"
        return self

    def __exit__(self, *exc: object) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            self.peak_mib = torch.cuda.max_memory_allocated(self.device) / 2**20
        elif self.kind == "cpu_peak_rss":
            self.peak_mib = _proc_status_mib("VmHWM") or float("nan")
        else:
            self.peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def autocast_context(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    """``torch.autocast`` for ``bf16`` / ``fp16``; a no-op for ``fp32``."""
    if precision == "fp32":
        return contextlib.nullcontext()
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}[precision]
    return torch.autocast(device_type=device.type, dtype=dtype)


def measure(
    fn: Callable[[], Any],
    images: int,
    device: torch.device,
    precision: str,
    repeats: int,
    warmup: int,
    grad: bool = False,
) -> dict[str, Any]:
    """Time ``fn`` (one call processes ``images`` images) and record its peak memory.

    Returns:
        ``images_per_s`` (from the median time), ``cpu_per_wall``, ``images_per_cpu_s``, ``median_ms``,
        ``min_ms``, ``max_ms``, ``times_ms``, ``peak_mem_mib``, ``base_mem_mib``, ``mem_kind``.
    """
    mode = contextlib.nullcontext() if grad else torch.inference_mode()
    cpu: list[float] = []
    with PeakMemory(device) as mem, mode, autocast_context(device, precision):
        times = time_fn(fn, device, repeats, warmup, cpu)
    med = statistics.median(times)
    return {
        "images_per_s": images / med,
        # CPU seconds used per wall second (up to the thread count; lower = the process was not
        # scheduled all the time, e.g. on a shared machine) and images per CPU second.
        "cpu_per_wall": sum(cpu) / sum(times),
        "images_per_cpu_s": images * len(cpu) / sum(cpu) if sum(cpu) > 0 else None,
        "median_ms": med * 1e3,
        "min_ms": min(times) * 1e3,
        "max_ms": max(times) * 1e3,
        "times_ms": [round(t * 1e3, 3) for t in times],
        "batch_size": images,
        "peak_mem_mib": round(mem.peak_mib, 1),
        "base_mem_mib": round(mem.base_mib, 1),
        "mem_kind": mem.kind,
    }


def count_flops(fn: Callable[[], Any], device: torch.device, precision: str) -> int:
    """Model FLOPs of one call of ``fn`` (``torch.utils.flop_counter``; FFTs and elementwise ops are not counted)."""
    from torch.utils.flop_counter import FlopCounterMode

    with (
        torch.inference_mode(),
        autocast_context(device, precision),
        FlopCounterMode(display=False) as counter,
    ):
        fn()
    return int(counter.get_total_flops())


def known_peak_tflops(device: torch.device, precision: str) -> float | None:
    """Dense bf16/fp16 tensor-core peak of a known CUDA GPU, else ``None``."""
    if device.type != "cuda" or precision not in ("bf16", "fp16"):
        return None
    return peak_tflops_for_name(torch.cuda.get_device_name(device))


def peak_tflops_for_name(name: str) -> float | None:
    """Dense bf16 peak (TFLOP/s) of a GPU from its ``torch.cuda.get_device_name()``, else ``None``."""
    for key, tflops in KNOWN_PEAK_BF16_TFLOPS:
        if key in name:
            return tflops
    return None


def set_sdpa(module: nn.Module, enabled: bool) -> int:
    """Switch timm attention between ``F.scaled_dot_product_attention`` and the explicit softmax path.

    Diffusers models (AttentionMixin) get ``AttnProcessor2_0`` (SDPA) or ``AttnProcessor``.

    Returns:
        The number of attention modules switched.
    """
    n = 0
    for m in module.modules():
        if hasattr(m, "fused_attn") and isinstance(m.fused_attn, bool):
            m.fused_attn = enabled
            n += 1
    if hasattr(module, "set_attn_processor"):
        from diffusers.models.attention_processor import AttnProcessor, AttnProcessor2_0

        with contextlib.suppress(Exception):
            module.set_attn_processor(AttnProcessor2_0() if enabled else AttnProcessor())
            n += 1
    return n


def compile_module(module: nn.Module, enabled: bool) -> None:
    """In-place ``torch.compile`` (``nn.Module.compile``), or undo it."""
    if enabled:
        module.compile()
    else:
        module._compiled_call_impl = None  # type: ignore[attr-defined]
