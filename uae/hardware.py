"""What the machine offers a process (the standard library only: the command layer uses it before torch)."""

from __future__ import annotations

import os


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
