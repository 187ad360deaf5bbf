"""The on-disk layout of a latent export (:mod:`uae.evaluation.latents`): names, the index, reading and
checking shards.

Per-shard statistics are exact: every shard stores its count, mean and centred sum of squares (float64)
per channel (:func:`channel_moments`), and the totals are combined with Chan et al.'s parallel formula
(:func:`combine_moments`), so resumed and multi-process runs give the same statistics as one uninterrupted
run.

Layout of an export folder::

    index.json                 # written atomically after every committed shard
    files.txt                  # the dataset's image paths (relative to its root), one per line
    shard-00000.safetensors    # "bands" (n, K, C, h, w) / "latent" (n, C, h, w) / "fused" (n, C, h, w),
    shard-00001.safetensors    #  "index" (n,) dataset indices, "label" (n,), per-shard float64 moments;
                               #  header metadata {"uae_shard": '{"count": n, "shard": s, "start": ...}'}
    latent_stats.safetensors   # per-channel mean/std of each exported tensor (when complete)

Shard ``s`` always covers dataset indices ``[s * shard_size, min((s + 1) * shard_size, N))``; it holds
the readable ones (its ``"index"`` tensor) and its index entry lists the unreadable ones under
``"skipped"`` (a shard whose images are all unreadable has ``"file": null``).

Shard files are plain safetensors files written by :class:`uae.evaluation.shard_file.ShardFile`: on the
CPU a shard goes to its (hidden temp) file batch by batch as it is encoded and is renamed into place
when complete, so the disk works while the model does and memory holds a batch, not a shard; shards
kept in memory (a GPU export) are written whole with the same layout, so the bytes do not depend on the
path taken.

Every shard's entry records the SHA-256 of its file (``"sha256"``), computed from the bytes as they are
written (before the file is renamed into place); :func:`shard_problem` and :func:`verify_export` re-hash
the file, so a shard with flipped bytes (same size, readable header) is found, and a resumed export
recomputes it.

Several processes (``torchrun``, one per GPU or node) write one export together: shard ``s`` of the
pending ones is written by rank ``s mod world_size``; ranks other than 0 never write ``index.json`` but
append their committed entries to a journal of their own (``.journal-<rank>.jsonl``, one JSON line per
shard, flushed to disk), which rank 0 merges into the index (at the start of a resumed run and at the
end) and removes. The finished folder is the same whatever the number of processes.
"""

from __future__ import annotations

import contextlib
import errno as errno_codes
import json
import logging
import math
import os
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open

from uae.errors import DamagedFileError, MissingFileError, OutputError, UAEError
from uae.files import file_sha256

logger = logging.getLogger(__name__)

INDEX_NAME = "index.json"
FILES_NAME = "files.txt"
STATS_NAME = "latent_stats.safetensors"
FORMAT_VERSION = 1
JOURNAL_PREFIX = ".journal-"


def channel_moments(x: torch.Tensor, channel_dim: int) -> tuple[int, torch.Tensor, torch.Tensor]:
    """``(count, mean, M2)`` per channel in float64; ``channel_dim`` and the dims before it are kept.

    For ``latent (n, C, h, w)`` use ``channel_dim=1`` -> ``(C,)`` moments; for ``bands (n, K, C, h, w)``
    use ``channel_dim=2`` -> ``(K, C)`` moments (dim 0, the samples, is always reduced). One float64 copy
    laid out channel by channel, ``(channels, count)``, so the reduction runs over contiguous rows (2.5x
    faster than reducing dims 0 and 3.. in place), and one pass of torch's ``var_mean`` over it (1.6x
    faster than a mean and a sum of squared deviations; within 1e-14 of them, relative).
    """
    keep = tuple(x.shape[1 : channel_dim + 1])
    k, rest = math.prod(keep), math.prod(x.shape[channel_dim + 1 :])
    rows = x.reshape(x.shape[0], k, rest).transpose(0, 1)  # (channels, n, rest)
    if x.device.type not in ("cpu", "cuda"):  # MPS has no float64
        rows = rows.cpu()
    rows = rows.to(torch.float64, memory_format=torch.contiguous_format).reshape(k, -1)  # one copy, not two
    var, mean = torch.var_mean(rows, dim=1, correction=0)
    return rows.shape[1], mean.view(keep), (var * rows.shape[1]).view(keep)


def combine_moments(
    parts: Sequence[tuple[int, torch.Tensor, torch.Tensor]],
) -> tuple[int, torch.Tensor, torch.Tensor]:
    """Chan et al.'s pairwise combination of ``(count, mean, M2)`` triples."""
    n, mean, m2 = parts[0]
    for nb, mb, m2b in parts[1:]:
        tot = n + nb
        delta = mb - mean
        mean = mean + delta * (nb / tot)
        m2 = m2 + m2b + delta.pow(2) * (n * nb / tot)
        n = tot
    return n, mean, m2


def shard_name(shard: int) -> str:
    """``shard-00042.safetensors``."""
    return f"shard-{shard:05d}.safetensors"


def shard_problem(
    out: Path, entry: dict[str, Any], what: Sequence[str], *, check_sha256: bool = True
) -> str | None:
    """Why a committed shard's file is unusable (missing, wrong size, bad header, wrong SHA-256), or ``None``.

    Args:
        out: The export folder.
        entry: The shard's index entry.
        what: The tensors the export stores.
        check_sha256: Re-hash the file and compare with the entry's ``"sha256"`` (when it has one).
    """
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
    if check_sha256 and "sha256" in entry:
        digest = file_sha256(path)
        if digest != entry["sha256"]:
            return (
                f"SHA-256 {digest[:12]}... differs from the index's {entry['sha256'][:12]}... (damaged file)"
            )
    return None


@contextlib.contextmanager
def output_errors(folder: str | os.PathLike, what: str, verb: str = "write") -> Iterator[None]:
    """Turn an ``OSError`` raised while writing (``verb``) ``what`` in ``folder`` into one :class:`OutputError` line.

    The message names the folder, the cause (``No space left on device``) and that re-running the same
    command resumes the export.
    """
    try:
        yield
    except UAEError:
        raise
    except OSError as e:
        cause = e.strerror or str(e) or type(e).__name__
        code = f" [{errno_codes.errorcode.get(e.errno, e.errno)}]" if e.errno else ""
        raise OutputError(
            f"cannot {verb} {what} in {os.fspath(folder)!r}: {cause}{code}; fix that and run the same "
            "command again to resume (finished shards are kept)",
            param="out_dir",
        ) from e


def journal_path(out: Path, rank: int) -> Path:
    """The journal of committed shard entries of ``rank`` (ranks other than 0 of a multi-process export)."""
    return out / f"{JOURNAL_PREFIX}{rank:05d}.jsonl"


def append_journal(out: Path, rank: int, record: Mapping[str, Any]) -> None:
    """Append one committed shard's record as a JSON line, flushed to disk (the commit point)."""
    with open(journal_path(out, rank), "a") as f:
        f.write(json.dumps(record) + "\n")
        f.flush()
        os.fsync(f.fileno())


def read_journals(out: Path) -> list[dict[str, Any]]:
    """Every complete record of every journal in ``out`` (a line cut by a kill is ignored)."""
    records = []
    for path in sorted(out.glob(f"{JOURNAL_PREFIX}*.jsonl")):
        for line in path.read_text().splitlines():
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                logger.info("Ignoring a partial line of %s", path)
                continue
            if isinstance(rec, dict) and isinstance(rec.get("entry"), dict):
                records.append(rec)
    return records


def remove_journals(out: Path) -> None:
    """Delete the journals once merged into the index."""
    for path in out.glob(f"{JOURNAL_PREFIX}*.jsonl"):
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


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
    """Check an export: every indexed shard exists with its recorded size and SHA-256, no stray shard
    files, indices cover ``0..N-1`` once.

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
