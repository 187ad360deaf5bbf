"""What the machine offers a process (the standard library only: the command layer uses it before torch)."""

from __future__ import annotations

import os


def available_cpus() -> int:
    """CPU cores this process may run on (its affinity mask where the OS has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # macOS / Windows
        return os.cpu_count() or 1
