"""Band latents (and/or the raw or fused latent) of a whole dataset as sharded safetensors (``uae encode``).

The folder's layout, and reading, writing and checking it, are in :mod:`uae.evaluation.shards`.
Unreadable images are never replaced by another image: each shard's index entry lists them. The index
states ``num_used`` and ``num_skipped`` (and ``skipped_files``), each file counted once, and the tokenizer's
:func:`~uae.evaluation.common.tokenizer_fingerprint` (``model.fingerprint``). A shard is written to a
hidden temp file (on the CPU batch by batch), hashed (SHA-256), renamed into place, and only then recorded
in ``index.json`` (replaced atomically) or, in a multi-process run, in its rank's journal. A restart
with the same arguments deletes stale temp files (``.tmp*``, ``*.tmp``), verifies each finished shard
(size, header and SHA-256: a truncated, corrupt or altered one is recomputed), skips the good ones and
recomputes any shard file that the index does not list (a crash between rename and index update), so
no shard is lost or duplicated. A failed write (a full disk) stops the export with one
:class:`~uae.errors.OutputError` naming the folder and the cause; the same command resumes it.

Launched with ``torchrun`` (one process per GPU or CPU worker, :func:`uae.evaluation.common.init_distributed`)
each process encodes its share of the pending shards; shard ``s`` always holds images ``s * shard_size
...``, so the finished export does not depend on the number of processes.

Per-channel statistics are exact (:func:`uae.evaluation.shards.channel_moments`, combined with Chan et
al.'s formula), so resumed and multi-process runs give the same statistics as uninterrupted ones.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from torch import nn
from torch.utils.data import DataLoader, Dataset

from uae.data.datasets import collate_skipping
from uae.data.transforms import resolve_data_config
from uae.errors import InputError
from uae.evaluation.common import (
    HeapTrimmer,
    barrier,
    batch_images,
    gather_objects,
    model_device,
    open_dataset,
    process_group,
    tokenizer_fingerprint,
    weights_fingerprint,
)
from uae.evaluation.options import EXPORTABLE, RunOptions
from uae.evaluation.shard_file import write_shard
from uae.evaluation.shard_writer import ShardBuffer, ShardWriter, shard_metadata
from uae.evaluation.shards import (
    FILES_NAME,
    FORMAT_VERSION,
    INDEX_NAME,
    STATS_NAME,
    append_journal,
    channel_moments,  # noqa: F401 - re-exported (uae.evaluation.latents.channel_moments)
    combine_moments,
    output_errors,
    read_journals,
    remove_journals,
    shard_name,
    shard_problem,
)
from uae.files import remove_temp_files, write_json, write_text
from uae.hardware import WORKER_NICENESS, worker_init_beside_model
from uae.utils import maybe_autocast

logger = logging.getLogger(__name__)

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def _atomic_json(path: Path, data: dict[str, Any]) -> None:
    with output_errors(path.parent, path.name):
        write_json(path, data, indent=1, fsync=True)


def _relpath(path: str, root: Any) -> str:
    return os.path.relpath(path, root) if root is not None else str(path)


def _skip_totals(index: dict[str, Any]) -> None:
    """``num_used`` / ``num_skipped`` / ``skipped_files`` of the index from its shard entries."""
    index["num_used"] = sum(e["count"] for e in index["shards"])
    index["num_skipped"] = sum(len(e.get("skipped", [])) for e in index["shards"])
    index["skipped_files"] = [f for e in index["shards"] for f in e.get("skipped_files", [])]


def _fingerprint(items: dict[str, Any]) -> str:
    return hashlib.sha1(json.dumps(items, sort_keys=True, default=str).encode()).hexdigest()


@torch.no_grad()
def _encode(model: nn.Module, x: torch.Tensor, what: Sequence[str], amp: bool) -> dict[str, torch.Tensor]:
    with maybe_autocast(x.device, enabled=amp):
        enc = model.encode(x)
        parts = {"latent": enc.latent, "bands": enc.bands}
        parts["fused"] = model.fuse(enc.bands) if "fused" in what else enc.latent
        return {k: parts[k].float() for k in EXPORTABLE if k in what}


def _new_index(
    fp: str, n: int, shard_size: int, what: list[str], dtype: str, dataset: Dataset, model: Any, metadata: Any
) -> dict[str, Any]:
    return {
        "format_version": FORMAT_VERSION,
        "fingerprint": fp,
        "num_images": n,
        "num_shards": (n + shard_size - 1) // shard_size,
        "shard_size": shard_size,
        "what": what,
        "dtype": dtype,
        "shapes": {},
        "classes": list(getattr(dataset, "classes", [])),
        "model": {
            "name": model.config.name,
            "fingerprint": tokenizer_fingerprint(model),
            "latent_shape": list(model.config.latent_shape),
            "num_bands": model.config.num_bands,
            "band_transform": model.config.band_transform,
            "img_size": model.config.img_size,
        },
        "metadata": metadata or {},
        "shards": [],
        "complete": False,
    }


def _merge_journals(out: Path, index: dict[str, Any], index_path: Path) -> None:
    """Rank 0: put the journals' committed entries into the index, write it, remove the journals."""
    records = read_journals(out)
    if not records:
        return
    for rec in records:
        _put_entry(index, rec["entry"])
        index["shapes"].update(rec.get("shapes", {}))
    _skip_totals(index)
    _atomic_json(index_path, index)
    remove_journals(out)


def _prepare(out: Path, index: dict[str, Any], index_path: Path, rank: int, world: int) -> dict[str, Any]:
    """Discard partial work before encoding: temp files, finished shards whose file is truncated, corrupt
    or altered (checked by every rank for its share, SHA-256 included), and shard files the index does not
    list. Returns the index every rank then works from."""
    if rank == 0:
        with output_errors(out, "partial files", verb="remove"):
            remove_temp_files(out)
            for p in out.glob("*.tmp"):
                logger.info("Removing partial file %s", p)
                p.unlink()
    barrier()
    mine = [e for e in index["shards"] if int(e["shard"]) % world == rank]
    with ThreadPoolExecutor(max_workers=max(1, min(4, len(mine)))) as pool:  # hashing releases the GIL
        problems = list(pool.map(lambda e: shard_problem(out, e, index["what"]), mine))
    bad_here = {int(e["shard"]): why for e, why in zip(mine, problems) if why is not None}
    bad = {k: v for part in gather_objects(bad_here) for k, v in part.items()}
    if rank == 0:
        for sid, why in sorted(bad.items()):
            logger.warning("Shard %s of %s is unusable (%s); recomputing it", sid, out, why)
        if bad:
            index["shards"] = [e for e in index["shards"] if int(e["shard"]) not in bad]
            index["complete"] = False
            index.pop("stats", None)
            _skip_totals(index)
            _atomic_json(index_path, index)
        done = {int(e["shard"]) for e in index["shards"]}
        for p in out.glob("shard-*.safetensors"):
            try:
                sid = int(p.name[len("shard-") : -len(".safetensors")])
            except ValueError:
                continue
            if sid not in done:
                logger.info("Removing uncommitted shard %s (will be recomputed)", p)
                with output_errors(out, f"the uncommitted {p.name}", verb="remove"):
                    p.unlink()
    barrier()
    return json.loads(index_path.read_text()) if world > 1 else index


def export_latents(
    model: nn.Module,
    dataset: Dataset,
    out_dir: str | os.PathLike,
    what: Sequence[str] = ("bands",),
    shard_size: int | None = None,
    batch_size: int = 64,
    num_workers: int = 0,
    dtype: str = "float32",
    device: str | torch.device = "cpu",
    amp: bool = True,
    progress: bool = True,
    metadata: dict[str, Any] | None = None,
    callback: Callable[[str, int, int], None] | None = None,
    worker_niceness: int = WORKER_NICENESS,
) -> dict[str, Any]:
    """Encode a dataset into sharded safetensors; resumable; shared by the processes of a ``torchrun`` launch.

    Args:
        model: A :class:`uae.UAE` (eval mode).
        dataset: Dict samples with ``"image"`` (and ``"label"``, ``"path"``).
        out_dir: Output folder (created). Re-running with the same arguments resumes.
        what: Any of ``"bands"`` ``(K, C, h, w)``, ``"latent"`` ``(C, h, w)``, ``"fused"`` ``(C, h, w)``
            (the band modulator's output in eval mode, i.e. what the decoder sees).
        shard_size: Images per shard; default: as many as fit in about 1 GiB of stored tensors
            (e.g. 341 images of 4 bands of a 16x16x768 grid in float32, 2730 such latents in bfloat16).
        batch_size: Encoding batch size.
        num_workers: Loader workers.
        dtype: Storage dtype of the latents (statistics are always computed in float64 first).
        device: Device.
        amp: Autocast on CUDA.
        progress: tqdm bar (rank 0's).
        metadata: Extra JSON-able entries for the index (e.g. the model spec).
        callback: Called as ``callback(event, shard, batch)`` with ``event`` ``"batch"`` (after each
            batch inside a shard) or ``"shard"`` (after a shard is committed); for progress hooks and tests.
        worker_niceness: Niceness the loader's workers add to their own on the CPU
            (:func:`uae.hardware.worker_init_beside_model`; 0: none).

    Returns:
        The final index dict (every process gets it).

    Raises:
        InputError: Bad arguments, or ``out_dir`` holds an export made with different settings.
        OutputError: A file could not be written (disk full, permissions): one line naming the folder.
    """
    from tqdm.auto import tqdm

    what = list(dict.fromkeys(what))
    bad = [w for w in what if w not in EXPORTABLE]
    if not what or bad:
        raise InputError(f"what must be some of {EXPORTABLE}, got {what}", param="what")
    if dtype not in DTYPES:
        raise InputError(f"dtype must be one of {sorted(DTYPES)}, got {dtype!r}", param="dtype")
    cfg = model.config
    if shard_size is None:
        shard_size = default_shard_size(what, cfg.num_bands, cfg.latent_shape, dtype)
    if shard_size <= 0 or batch_size <= 0:
        raise InputError(f"shard_size and batch_size must be positive, got {shard_size}, {batch_size}")
    rank, world = process_group()
    out = Path(out_dir)
    n = len(dataset)
    files = [str(f) for f in getattr(dataset, "files", [])]
    root = getattr(dataset, "root", None)
    rel_files = [_relpath(f, root) for f in files]
    settings = {
        "num_images": n,
        "shard_size": shard_size,
        "what": what,
        "dtype": dtype,
        "files_sha1": hashlib.sha1("\n".join(rel_files).encode()).hexdigest(),
        "model_config": cfg.to_dict(),
        "model_weights_sha1": weights_fingerprint(model),
    }
    fp = _fingerprint(settings)
    index_path = out / INDEX_NAME
    if rank == 0:
        with output_errors(out, "the export folder", verb="create"):
            out.mkdir(parents=True, exist_ok=True)
        if not index_path.is_file():
            with output_errors(out, FILES_NAME):
                write_text(out / FILES_NAME, "\n".join(rel_files) + ("\n" if rel_files else ""))
            _atomic_json(index_path, _new_index(fp, n, shard_size, what, dtype, dataset, model, metadata))
    barrier()
    index = json.loads(index_path.read_text())
    if index.get("fingerprint") != fp:
        raise InputError(
            f"out_dir {str(out)!r} holds an export made with different settings (model, data, shard_size, "
            "what or dtype); use a new folder",
            param="out_dir",
        )
    if rank == 0:
        if "fingerprint" not in index["model"]:  # an export begun before uae recorded it
            index["model"]["fingerprint"] = tokenizer_fingerprint(model)
            _atomic_json(index_path, index)
        _merge_journals(out, index, index_path)
    barrier()
    index = _prepare(out, json.loads(index_path.read_text()) if world > 1 else index, index_path, rank, world)
    done = {int(s["shard"]) for s in index["shards"]}
    num_shards = index["num_shards"]
    pending = [s for s in range(num_shards) if s not in done]
    if pending and rank == 0:
        logger.info("Exporting %d of %d shards to %s (%d process(es))", len(pending), num_shards, out, world)
    batches: list[list[int]] = []
    owner: list[int] = []
    for s in pending[rank::world]:
        lo, hi = s * shard_size, min((s + 1) * shard_size, n)
        for b in range(lo, hi, batch_size):
            batches.append(list(range(b, min(b + batch_size, hi))))
            owner.append(s)
    device = torch.device(device)
    loader = DataLoader(
        dataset,
        batch_sampler=batches,
        num_workers=num_workers,
        pin_memory=device.type == "cuda",
        collate_fn=collate_skipping,
        worker_init_fn=worker_init_beside_model(device.type, worker_niceness),
    )
    store = DTYPES[dtype]
    commit = _Committer(out, index, index_path, store, rank, world)
    bar = tqdm(
        total=sum(len(b) for b in batches),
        desc="encode",
        unit="img",
        disable=not progress or rank != 0,
        dynamic_ncols=True,
    )
    cur: int | None = None
    buf: ShardBuffer | None = None
    batch_in_shard = 0
    trimmer = HeapTrimmer(device)  # on growth only
    try:
        with ShardWriter(commit, callback, background=device.type == "cuda") as writer:  # GPU: overlapped
            for bi, batch in enumerate(loader):
                s = owner[bi]
                if buf is not None and s != cur:
                    writer.submit(buf, batch_in_shard)
                    buf, batch_in_shard = None, 0
                if buf is None:
                    lo, hi = s * shard_size, min((s + 1) * shard_size, n)
                    buf = ShardBuffer(s, lo, hi, store, device, path=out / shard_name(s))
                cur = s
                for u in batch["unreadable"]:
                    logger.warning("Skipped: %s", u.reason)
                    buf.skipped.append((int(u.index), _relpath(u.path, root)))
                if "image" in batch:
                    x, _ = batch_images(batch, device)
                    buf.add(_encode(model, x, what, amp), batch["index"], batch["label"])
                    del x
                trimmer.step()  # no heap growth batch after batch (glibc fragmentation)
                bar.update(len(batches[bi]))
                batch_in_shard += 1
                if callback is not None:
                    callback("batch", s, batch_in_shard)
            if buf is not None:
                writer.submit(buf, batch_in_shard)
                buf = None  # the writer holds it: its pinned buffers go back with it (ShardWriter.close)
            writer.wait()
    except BaseException:
        if buf is not None:  # a shard in progress: its streamed temp file goes
            buf.discard()
        raise
    finally:
        bar.close()
    barrier()
    if rank == 0:
        index = json.loads(index_path.read_text()) if world > 1 else commit.index
        _merge_journals(out, index, index_path)
        _finalize(out, index, index_path)
    barrier()
    return json.loads(index_path.read_text()) if world > 1 else index


def default_shard_size(
    what: Sequence[str], num_bands: int, latent_shape: Sequence[int], dtype: str, target_bytes: int = 2**30
) -> int:
    """Images per shard so that a shard's tensors take about ``target_bytes`` (at least 1)."""
    per = 1
    for d in latent_shape:
        per *= int(d)
    itemsize = torch.empty(0, dtype=DTYPES[dtype]).element_size()
    per_image = sum(per * (num_bands if w == "bands" else 1) for w in what) * itemsize
    return max(1, target_bytes // max(1, per_image))


class _Committer:
    """Writes finished shards and records them: in ``index.json`` (one process) or in the rank's journal."""

    def __init__(
        self, out: Path, index: dict[str, Any], index_path: Path, store: torch.dtype, rank: int, world: int
    ) -> None:
        self.out, self.index, self.index_path, self.store = out, index, index_path, store
        self.rank, self.world = rank, world

    def __call__(self, buf: ShardBuffer) -> None:
        """Write one complete shard (tmp + hash + rename), then record it (the commit point)."""
        index, shard, lo = self.index, buf.shard, buf.lo
        entry: dict[str, Any] = {"shard": shard, "file": shard_name(shard)}
        idx = buf.index[: buf.count]  # rows of a preallocated tensor: no copy
        skipped_pairs = sorted(buf.skipped)
        skipped = [i for i, _ in skipped_pairs]
        skipped_info = {"skipped": skipped, "skipped_files": [f for _, f in skipped_pairs]}
        hi = min(lo + index["shard_size"], index["num_images"])
        if sorted(idx.tolist() + skipped) != list(range(lo, hi)):
            raise RuntimeError(
                f"shard {shard} got indices {idx[:4].tolist()}... (skipped {skipped[:4]}) instead of {lo}..{hi - 1}"
            )
        shapes = {k: list(buf.shapes[k]) for k in EXPORTABLE if k in buf.shapes} if len(idx) else {}
        if not len(idx):  # every image of the shard is unreadable: nothing to store
            buf.discard()
            entry.update({"file": None, "start": lo, "count": 0, "bytes": 0, **skipped_info})
        else:
            name = shard_name(shard)
            with output_errors(self.out, name):
                if buf.streamed:  # on its way to the disk since its first batch
                    size, digest = buf.commit_file()
                else:
                    tensors = {**buf.row_tensors(), **buf.tail_tensors()}  # the streamed layout's order
                    buf.discard()
                    size, digest = write_shard(tensors, self.out / name, shard_metadata(len(idx), shard, lo))
            entry.update({"start": lo, "count": len(idx), "bytes": size, "sha256": digest, **skipped_info})
        if self.world > 1:
            with output_errors(self.out, "the journal"):
                append_journal(self.out, self.rank, {"entry": entry, "shapes": shapes})
            return
        index["shapes"].update(shapes)
        _put_entry(index, entry)
        _skip_totals(index)
        _atomic_json(self.index_path, index)


def _put_entry(index: dict[str, Any], entry: dict[str, Any]) -> None:
    """Put a committed shard's entry into the index (replacing an older one), sorted by shard."""
    index["shards"] = sorted(
        [*(s for s in index["shards"] if s["shard"] != entry["shard"]), entry], key=lambda e: e["shard"]
    )


def _finalize(out: Path, index: dict[str, Any], index_path: Path) -> dict[str, Any]:
    """When all shards are committed: combine the per-shard moments into per-channel mean/std."""
    if len(index["shards"]) != index["num_shards"]:
        return index
    stats: dict[str, Any] = {}
    tensors: dict[str, torch.Tensor] = {}
    for k in index["what"]:
        parts = []
        for e in index["shards"]:
            if e.get("file") is None:
                continue
            with safe_open(str(out / e["file"]), framework="pt") as f:
                get = f.get_tensor
                parts.append((int(get(f"stats.{k}.count")[0]), get(f"stats.{k}.mean"), get(f"stats.{k}.m2")))
        if not parts:
            raise InputError(f"none of the {index['num_images']} images could be read")
        count, mean, m2 = combine_moments(parts)
        std = (m2 / max(count - 1, 1)).sqrt()
        stats[k] = {"count": count, "mean": mean.tolist(), "std": std.tolist()}
        tensors[f"{k}.mean"] = mean.float().contiguous()
        tensors[f"{k}.std"] = std.float().contiguous()
    with output_errors(out, STATS_NAME):
        write_shard(tensors, out / STATS_NAME)
    index.update(stats=stats, complete=True)
    _atomic_json(index_path, index)
    return index


def encode_dataset(
    model: nn.Module,
    data: str,
    out_dir: str | os.PathLike,
    *,
    what: Sequence[str] = ("bands",),
    shard_size: int | None = None,
    dtype: str = "float32",
    metadata: dict[str, Any] | None = None,
    options: RunOptions | None = None,
) -> dict[str, Any]:
    """:func:`export_latents` of a folder or a named dataset (``options.data_root``); resumable.

    Args:
        model: A :class:`uae.UAE` (e.g. from :func:`uae.evaluation.common.prepare_model`).
        data: An image folder or a named dataset.
        out_dir: Output folder; re-running with the same arguments resumes.
        what: Tensors to store (see :func:`export_latents`).
        shard_size: Images per shard (default: about 1 GiB of stored tensors per shard).
        dtype: Storage dtype.
        metadata: Extra JSON-able entries for the index; ``data`` and ``data_path`` are added.
        options: How images are read and run (default: :class:`~uae.evaluation.options.RunOptions`'s).

    Returns:
        The final index dict.
    """
    options = options or RunOptions()
    device, cfg = model_device(model), resolve_data_config(model)  # uint8 pixels go to a GPU
    ds, root = open_dataset(
        data, model.config.img_size, options=options, data_config=cfg, uint8=device.type == "cuda"
    )
    return export_latents(
        model,
        ds,
        out_dir,
        what=what,
        shard_size=shard_size,
        batch_size=options.batch_size,
        num_workers=options.num_workers,
        dtype=dtype,
        device=device,
        amp=options.amp,
        progress=options.progress,
        metadata={**(metadata or {}), "data": data, "data_path": str(root)},
        worker_niceness=options.worker_niceness,
    )
