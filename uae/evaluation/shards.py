"""The on-disk layout of a latent export (:mod:`uae.evaluation.latents`): names, the index, reading and
checking shards.

Layout of an export folder::

    index.json                 # written atomically after every committed shard
    files.txt                  # the dataset's image paths (relative to its root), one per line
    shard-00000.safetensors    # "bands" (n, K, C, h, w) / "latent" (n, C, h, w) / "fused" (n, C, h, w),
    shard-00001.safetensors    #  "index" (n,) dataset indices, "label" (n,), per-shard float64 moments
    latent_stats.safetensors   # per-channel mean/std of each exported tensor (when complete)

Shard ``s`` always covers dataset indices ``[s * shard_size, min((s + 1) * shard_size, N))``; it holds
the readable ones (its ``"index"`` tensor) and its index entry lists the unreadable ones under
``"skipped"`` (a shard whose images are all unreadable has ``"file": null``).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open

from uae.errors import DamagedFileError, MissingFileError

INDEX_NAME = "index.json"
FILES_NAME = "files.txt"
STATS_NAME = "latent_stats.safetensors"
FORMAT_VERSION = 1


def shard_name(shard: int) -> str:
    """``shard-00042.safetensors``."""
    return f"shard-{shard:05d}.safetensors"


def shard_problem(out: Path, entry: dict[str, Any], what: Sequence[str]) -> str | None:
    """Why a committed shard's file is unusable (missing, wrong size, bad header), or ``None``."""
    if entry.get("file") is None:
        return None if entry.get("count", 0) == 0 else "no file for a non-empty shard"
    path = out / entry["file"]
    if not path.is_file():
        return "file missing"
    size = path.stat().st_size
    if "bytes" in entry and size != entry["bytes"]:
        return f"{size} bytes, index says {entry['bytes']}"
    try:
        with safe_open(str(path), framework="pt") as f:
            keys = set(f.keys())
            need = {
                "index",
                "label",
                *what,
                *(f"stats.{k}.{m}" for k in what for m in ("mean", "m2", "count")),
            }
            if need - keys:
                return f"missing tensors {sorted(need - keys)}"
            count = f.get_slice("index").get_shape()[0]
    except Exception as e:  # SafetensorError (truncated header), OSError
        return f"unreadable ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})"
    if count != entry.get("count"):
        return f"holds {count} samples, index says {entry.get('count')}"
    return None


def read_index(out_dir: str | os.PathLike) -> dict[str, Any]:
    """The export's ``index.json``.

    Raises:
        MissingFileError: ``out_dir`` holds no index.
    """
    path = Path(out_dir) / INDEX_NAME
    if not path.is_file():
        raise MissingFileError(f"no {INDEX_NAME} in {str(out_dir)!r}", param="out_dir")
    return json.loads(path.read_text())


def load_shard(out_dir: str | os.PathLike, shard: int) -> dict[str, torch.Tensor]:
    """All tensors of one shard (``bands``/``latent``/``fused``, ``index``, ``label``, ``stats.*``).

    A shard whose images were all unreadable has no file (``"file": null`` in the index): ``{}``.
    """
    from safetensors.torch import load_file

    path = Path(out_dir) / shard_name(shard)
    if not path.is_file():
        entries = {int(e["shard"]): e for e in read_index(out_dir)["shards"]}
        if shard in entries and entries[shard].get("file") is None:
            return {}
    return load_file(str(path))


def verify_export(out_dir: str | os.PathLike) -> dict[str, Any]:
    """Check an export: every indexed shard exists, no stray shard files, indices cover ``0..N-1`` once.

    Returns:
        The index.

    Raises:
        DamagedFileError: Naming the inconsistency (a ``ValueError``).
    """
    out = Path(out_dir)
    index = read_index(out)
    listed = {e["file"] for e in index["shards"] if e.get("file") is not None}
    on_disk = {p.name for p in out.glob("shard-*.safetensors")}
    if listed != on_disk:
        raise DamagedFileError(
            f"index and shard files differ: only indexed {sorted(listed - on_disk)}, only on disk {sorted(on_disk - listed)}"
        )
    seen: list[torch.Tensor] = []
    for e in index["shards"]:
        why = shard_problem(out, e, index["what"])
        if why is not None:
            raise DamagedFileError(f"{e['file']}: {why}")
        skipped = torch.tensor(e.get("skipped", []), dtype=torch.long)
        if e.get("file") is None:
            idx = torch.zeros(0, dtype=torch.long)
        else:
            with safe_open(str(out / e["file"]), framework="pt") as f:
                idx = f.get_tensor("index")
        lo = e["start"]
        hi = min(lo + index["shard_size"], index["num_images"])
        if sorted(torch.cat([idx, skipped]).tolist()) != list(range(lo, hi)):
            raise DamagedFileError(
                f"{e['file']}: holds samples {idx[:4].tolist()}... and skipped {skipped[:4].tolist()}, "
                f"index says {lo}..{hi - 1}"
            )
        seen.extend([idx, skipped])
    allidx = torch.cat(seen) if seen else torch.zeros(0, dtype=torch.long)
    if len(torch.unique(allidx)) != len(allidx):
        raise DamagedFileError("duplicate sample indices across shards")
    if index.get("complete") and not torch.equal(
        torch.sort(allidx).values, torch.arange(index["num_images"])
    ):
        raise DamagedFileError("complete export does not cover every sample exactly once")
    return index
