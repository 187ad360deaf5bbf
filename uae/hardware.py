"""What the machine offers a process (the standard library only: the command layer uses it before torch)."""

from __future__ import annotations

import functools
import os
import sys
from typing import Any


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


#: Niceness the loader's worker processes add to their own while they decode beside a model on the same CPU
#: cores (:func:`worker_init_beside_model`).
WORKER_NICENESS = 10


def nice_process(niceness: int, worker_id: int | None = None) -> None:
    """Add ``niceness`` to this process's (``os.nice``); nothing where the OS has no niceness or refuses.

    Bound with :func:`functools.partial`, it is a ``DataLoader`` ``worker_init_fn`` (``worker_id`` is the
    loader's, unused).
    """
    if niceness <= 0:
        return
    try:
        os.nice(niceness)
    except (AttributeError, OSError):  # Windows; a sandbox that forbids it
        pass


def worker_init_beside_model(device_type: str, niceness: int = WORKER_NICENESS) -> Any:
    """The ``worker_init_fn`` of a loader whose workers decode images while a model on ``device_type`` runs.

    On the CPU the workers and the model's threads share the cores, and the model is what the loop
    waits for: a worker that holds a core when one of the model's threads becomes ready holds up that
    thread's whole parallel region. With ``niceness`` added to the workers' own, the scheduler runs the
    model's threads as soon as they are ready and the workers take the time the model leaves (they are
    ahead of it, two batches per worker). Measured with ``uae encode --model uae_demo`` on 2 cores, 2
    workers: 1.12x the images/s at niceness 10 (1.05-1.20 over 7 rounds; 5: 0.94x of that, 19: the
    same). The workers' results are unchanged. It only lowers the workers' priority (an unprivileged
    process cannot raise it back), which also yields to other programs on a busy machine; 0 leaves it.

    Returns:
        ``functools.partial(nice_process, niceness)`` for a CPU model, else ``None`` (a GPU model waits
        for the workers: they keep their priority).
    """
    if device_type != "cpu" or niceness <= 0:
        return None
    return functools.partial(nice_process, int(niceness))


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


MALLOC_VARIABLES = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_", "MALLOC_MMAP_MAX_")
"""Environment variables through which a user sets glibc's malloc thresholds (besides ``GLIBC_TUNABLES``)."""

HEAP_MMAP_THRESHOLD_BYTES = 32 * 2**20
"""glibc's mmap threshold set by :func:`steady_heap`: the ceiling its own dynamic rule reaches on 64-bit."""

HEAP_TRIM_THRESHOLD_BYTES = 2 * HEAP_MMAP_THRESHOLD_BYTES
"""glibc's trim threshold set by :func:`steady_heap` (twice the mmap threshold, as glibc's own rule sets it)."""

_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # mallopt's parameter numbers (glibc's malloc.h)


def steady_heap() -> bool:
    """Keep the memory of freed tensors in the heap for the next ones instead of giving it back to the
    operating system after each op (glibc's ``mallopt``), so a model on the CPU stops faulting its
    activations in again op after op.

    glibc serves a block above its mmap threshold with fresh pages and gives the top of the heap back
    once more than its trim threshold is free there; both start at 128 KiB and rise only as large
    blocks are freed. A model whose activations are a few MiB each keeps crossing them: ``uae_demo``'s
    encoder at batch 32 took 2600-6500 page faults per forward on 2 cores. This sets both thresholds at
    the ceiling glibc's own rule would reach (mmap 32 MiB, trim 64 MiB): 0-30 faults per forward,
    26-30 -> 21-24 ms (1.25x), the resident size 5 MiB higher; blocks above 32 MiB (a B model's
    activations) are served as before (``uae_small_p14_dinov2``'s reconstruction at batch 8: unchanged).
    Memory handed back by a :class:`uae.evaluation.common.HeapTrimmer` (``malloc_trim``) is handed back as
    before. The setting holds for the rest of the process (glibc then stops adjusting the thresholds)
    and no float changes. ``uae`` sets it for every command; call it once at the start of a notebook or
    script that runs a small model on the CPU.

    Returns:
        Whether the thresholds were set (``False``: not glibc, or the user chose malloc settings through
        :data:`MALLOC_VARIABLES` or ``GLIBC_TUNABLES``, which are left alone).
    """
    if any(v in os.environ for v in MALLOC_VARIABLES) or "glibc.malloc." in os.environ.get(
        "GLIBC_TUNABLES", ""
    ):
        return False
    libc = glibc()
    if libc is None:
        return False
    import ctypes

    mallopt = libc.mallopt
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    return bool(mallopt(_M_MMAP_THRESHOLD, HEAP_MMAP_THRESHOLD_BYTES)) and bool(
        mallopt(_M_TRIM_THRESHOLD, HEAP_TRIM_THRESHOLD_BYTES)
    )


@functools.cache
def glibc() -> Any:
    """This process's C library (a ``ctypes.CDLL``) when it is glibc, whose malloc :func:`steady_heap` tunes
    and ``malloc_trim`` trims; ``None`` elsewhere (macOS, musl, Windows)."""
    try:
        if not os.confstr("CS_GNU_LIBC_VERSION"):
            return None
    except (AttributeError, ValueError, OSError):
        return None
    import ctypes

    try:
        return ctypes.CDLL(None)
    except OSError:
        return None
