"""``python -m benchmarks.run``: the benchmark of the installed package (``uae bench``), kept for checkouts.

The code lives in :mod:`uae.bench` (the plan, one process per subject, timing, peers, training steps,
report, start-up); results of recorded runs are in ``benchmarks/results`` and ``benchmarks/RESULTS.md``.
"""

from __future__ import annotations

import sys

from uae.commands.bench import main

if __name__ == "__main__":
    sys.exit(main())
