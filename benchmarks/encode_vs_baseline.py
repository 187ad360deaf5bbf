"""``uae encode`` images/s of this checkout against an older checkout of uae (A/B, one process per run).

Run from the repository root, with the older commit checked out beside it::

    git worktree add /tmp/uae-before 6cd89f0
    python -m benchmarks.encode_vs_baseline --baseline /tmp/uae-before --images 2048 --rounds 5

Each run is a fresh Python process that imports ``uae`` from one checkout (``PYTHONPATH``; the process
checks where ``uae`` came from), loads the model, encodes the first batches once as a warm-up, then
times :func:`uae.evaluation.latents.encode_dataset` (what ``uae encode`` runs) over the whole folder
with ``uae encode``'s defaults (bands, float32, batch 32, ``min(4, cores)`` loader workers or, with
``--num-workers default``, each side's own default, torch's threads) into a fresh folder. Only the
export is timed, not the start-up. The two sides alternate (baseline, this checkout, baseline, ...),
and the figure of merit is the median of each round's this / baseline images/s. Both sides must have
that API (``prepare_model``, ``encode_dataset``, ``RunOptions``), which main has had since the issue
asking for this figure was filed (``6cd89f0``).
Results: ``benchmarks/results/encode_vs_baseline_<device>.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _child(args: argparse.Namespace) -> int:
    """One timed export in this process (``uae`` imported from ``PYTHONPATH``), set up as ``uae encode``
    sets itself up (where the checkout does: its OpenMP wait policy, before torch is imported, and its heap
    thresholds)."""
    import uae.commands

    prepare = getattr(uae.commands, "prepare_process", None)
    if prepare is not None:
        prepare("encode")
    else:  # checkouts before it: what their `uae encode` set up, if anything
        try:
            from uae.hardware import passive_openmp_waits
        except ImportError:
            pass
        else:
            passive_openmp_waits()
    import torch

    import uae
    from uae.evaluation.common import prepare_model
    from uae.evaluation.latents import encode_dataset
    from uae.evaluation.options import RunOptions

    where = Path(uae.__file__).resolve().parents[1]
    model, device = prepare_model(args.model, device=args.device)
    workers = args.num_workers
    if workers == "default":  # what this checkout's `uae encode` starts when not told
        try:
            from uae.evaluation.options import default_num_workers
        except ImportError:  # checkouts before it: the command line's min(4, cores)
            workers = min(4, os.cpu_count() or 1)
        else:
            workers = default_num_workers(device.type)
    opts = dict(batch_size=args.batch_size, num_workers=int(workers), progress=False)
    with tempfile.TemporaryDirectory() as out:  # warm-up: first-call allocations, the page cache
        encode_dataset(model, args.folder, out, options=RunOptions(limit=2 * args.batch_size, **opts))
    with tempfile.TemporaryDirectory() as out:
        start = time.perf_counter()
        kw = {"shard_size": args.shard_size} if args.shard_size else {}
        index = encode_dataset(model, args.folder, out, options=RunOptions(**opts), **kw)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        seconds = time.perf_counter() - start
    print(
        json.dumps({"uae": str(where), "images": index["num_used"], "seconds": seconds, "workers": workers})
    )
    return 0


def _run_side(root: Path, args: argparse.Namespace) -> dict:
    env = {**os.environ, "PYTHONPATH": str(root)}
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", "--folder", str(args.folder)]
    cmd += ["--model", args.model, "--device", args.device, "--batch-size", str(args.batch_size)]
    cmd += ["--num-workers", str(args.num_workers), "--shard-size", str(args.shard_size)]
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    if res.returncode != 0:
        raise SystemExit(f"run with uae from {root} failed:\n{res.stderr[-2000:]}")
    row = json.loads(res.stdout.strip().splitlines()[-1])
    if Path(row["uae"]) != root.resolve():
        raise SystemExit(f"expected uae from {root}, the run imported it from {row['uae']}")
    return row


def _commit(root: Path) -> str:
    """The commit whose ``uae/`` is at ``root``: ``abc1234``, ``abc1234-dirty`` when ``uae/`` differs from it,
    or ``"not a git checkout"`` when ``root`` is not the top of a work tree (a copied ``uae/`` folder inside
    another repository would otherwise report that repository's commit)."""

    def git(*a: str) -> str:
        return subprocess.run(["git", "-C", str(root), *a], capture_output=True, text=True).stdout.strip()

    top = git("rev-parse", "--show-toplevel")
    if not top or Path(top).resolve() != root.resolve():
        return "not a git checkout"
    dirty = "-dirty" if git("status", "--porcelain", "--", "uae") else ""
    return git("rev-parse", "--short", "HEAD") + dirty


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--baseline", help="root of the older checkout (holding uae/)")
    p.add_argument("--model", default="uae_demo")
    p.add_argument("--images", type=int, default=2048)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument(
        "--num-workers",
        default=str(min(4, os.cpu_count() or 1)),
        help="loader workers of both sides, or 'default': each side's own `uae encode` default",
    )
    p.add_argument("--device", default="cpu")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--shard-size", type=int, default=0, help="images per shard (0: uae encode's default)")
    # not synthetic_images.add_folder_args: a run's own process parses these too and imports only uae
    p.add_argument("--size", default="500x375", help="source image size WxH")
    p.add_argument("--folder", default=None, help="reuse (or fill) this image folder")
    p.add_argument("--out", default="benchmarks/results")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        return _child(args)
    if not args.baseline:
        p.error("--baseline is required")
    if args.num_workers != "default" and not args.num_workers.isdigit():
        p.error(f"--num-workers must be a count or 'default', got {args.num_workers!r}")
    sys.path.insert(0, str(REPO))
    from benchmarks.report import device_env, rate_fields, ratio_fields, write_result
    from benchmarks.synthetic_images import jpeg_folder

    args.folder, tmp = jpeg_folder(args.folder, args.images, args.size)
    sides = {"baseline": Path(args.baseline), "this": REPO}
    rates: dict[str, list[float]] = {k: [] for k in sides}
    workers: dict[str, int] = {}
    for r in range(args.rounds):
        for name, root in sides.items():
            row = _run_side(root, args)
            workers[name] = row["workers"]
            rates[name].append(row["images"] / row["seconds"])
            print(f"round {r}: {name:8s} {rates[name][-1]:8.1f} images/s", flush=True)
    import torch

    result = {
        "settings": {k: str(v) for k, v in vars(args).items() if k not in ("out", "folder", "child")},
        "baseline_commit": _commit(Path(args.baseline)),
        "this_commit": _commit(REPO),
        "env": device_env(torch.device(args.device)),
        "workers": workers,
        **rate_fields(rates),
        "this_over_baseline": ratio_fields(rates["this"], rates["baseline"]),
    }
    summary = {k: result[k] for k in ("median_images_per_s", "this_over_baseline")}
    write_result(args.out, f"encode_vs_baseline_{args.device.split(':')[0]}", result, summary)
    if tmp is not None:
        tmp.cleanup()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
