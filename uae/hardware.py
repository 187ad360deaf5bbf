"""What the machine offers a process (the standard library only: the command layer uses it before torch)."""

from __future__ import annotations

import os
import sys


def available_cpus() -> int:
    """CPU cores this process may run on (its affinity mask where the OS has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # macOS / Windows
        return os.cpu_count() or 1


def workers_beside_gpu(processes: int, cap: int, cores: int | None = None) -> int:
    """Loader workers per process when a GPU does the model's work: the cores shared among the
    ``processes`` on this machine, one kept for each process's own thread, at most ``cap`` (0 when none
    is left).

    Args:
        processes: Processes sharing the cores (one per device).
        cap: Most workers per process.
        cores: Usable cores (default: :func:`available_cpus`).
    """
    cores = available_cpus() if cores is None else cores
    return max(0, min(cap, cores // max(1, int(processes)) - 1))


OPENMP_WAIT_VARIABLES = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "KMP_BLOCKTIME")
"""Environment variables that set how OpenMP's idle threads wait (the standard one, GNU's, Intel's)."""


def passive_openmp_waits() -> bool:
    """Let torch's idle OpenMP threads sleep instead of spinning (``OMP_WAIT_POLICY=PASSIVE``), for a
    process that decodes images in loader workers beside a model on the same CPU cores.

    By default an OpenMP thread spins for a while after each parallel region; with the loader's
    workers on the same cores, that spinning takes their time, and a worker that preempts one of the
    model's threads holds up the region it belongs to. Measured with ``uae encode --model uae_demo`` on
    2 cores (2 threads, 2 workers): 1.2x the images/s. It is not free: the same model alone on those
    cores ran 20-50 % slower (each parallel region then wakes a sleeping thread), so ``uae`` sets it
    only for the command where it was measured to help (:data:`uae.commands.PASSIVE_OPENMP_COMMANDS`).
    The number of threads, hence every float, is unchanged. The OpenMP runtime reads the variable
    once, when torch is loaded, so this only acts before ``import torch``, and never overrides a wait
    setting the user chose.

    Returns:
        Whether the variable was set (``False``: torch already imported, or one of
        :data:`OPENMP_WAIT_VARIABLES` already set).
    """
    if "torch" in sys.modules or any(v in os.environ for v in OPENMP_WAIT_VARIABLES):
        return False
    os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
    return True
