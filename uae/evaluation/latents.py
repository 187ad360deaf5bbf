"""Band latents (and/or the raw or fused latent) of a whole dataset as sharded safetensors (``uae encode``).

The folder's layout, and reading and checking it, are in :mod:`uae.evaluation.shards`. Unreadable
images are never replaced by another image: each shard's index entry lists them. The index states ``num_used`` and ``num_skipped`` (and ``skipped_files``), each file
counted once. A shard is written to a hidden temp file, renamed into place, and only then recorded
in ``index.json`` (itself replaced atomically). A restart with the same arguments deletes stale temp
files (``.tmp*``, ``*.tmp``), verifies each finished shard (size and header: a truncated or corrupt
one is recomputed), skips the good ones and recomputes any shard file that the index does not list
(a crash between rename and index update), so no shard is lost or duplicated.

Per-channel statistics are exact: every shard stores its count, mean and centred sum of squares
(float64) per channel, and the totals are combined with Chan et al.'s parallel formula, so resumed
runs give the same statistics as uninterrupted ones.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from torch import nn
from torch.utils.data import DataLoader, Dataset

from uae.data.datasets import collate_skipping
from uae.data.transforms import resolve_data_config
from uae.errors import InputError
from uae.evaluation.common import batch_images, model_device, open_dataset, weights_fingerprint
from uae.evaluation.options import EXPORTABLE, RunOptions
from uae.evaluation.shards import (
    FILES_NAME,
    FORMAT_VERSION,
    INDEX_NAME,
    STATS_NAME,
    shard_name,
    shard_problem,
)
from uae.files import remove_temp_files, save_safetensors, write_json, write_text
from uae.utils import maybe_autocast

logger = logging.getLogger(__name__)

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def channel_moments(x: torch.Tensor, channel_dim: int) -> tuple[int, torch.Tensor, torch.Tensor]:
    """``(count, mean, M2)`` per channel in float64; ``channel_dim`` and the dims before it are kept.

    For ``latent (n, C, h, w)`` use ``channel_dim=1`` -> ``(C,)`` moments; for ``bands (n, K, C, h, w)``
    use ``channel_dim=2`` -> ``(K, C)`` moments (dim 0, the samples, is always reduced).
    """
    x = x.double()
    keep = list(range(1, channel_dim + 1))
    red = [0] + list(range(channel_dim + 1, x.ndim))
    count = x.numel() // int(torch.tensor([x.shape[d] for d in keep]).prod())
    mean = x.mean(dim=red)
    shape = [1] + [x.shape[d] for d in keep] + [1] * (x.ndim - channel_dim - 1)
    m2 = (x - mean.view(shape)).pow(2).sum(dim=red)
    return count, mean, m2


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


def _atomic_json(path: Path, data: dict[str, Any]) -> None:
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
        out: dict[str, torch.Tensor] = {}
        if "latent" in what:
            out["latent"] = enc.latent.float()
        if "bands" in what:
            out["bands"] = enc.bands.float()
        if "fused" in what:
            out["fused"] = model.fuse(enc.bands).float()
    return out


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
) -> dict[str, Any]:
    """Encode a dataset into sharded safetensors; resumable.

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
        progress: tqdm bar.
        metadata: Extra JSON-able entries for the index (e.g. the model spec).
        callback: Called as ``callback(event, shard, batch)`` with ``event`` ``"batch"`` (after each
            batch inside a shard) or ``"shard"`` (after a shard is committed); for progress hooks and tests.

    Returns:
        The final index dict.

    Raises:
        InputError: Bad arguments, or ``out_dir`` holds an export made with different settings.
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
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
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
    if index_path.is_file():
        index = json.loads(index_path.read_text())
        if index.get("fingerprint") != fp:
            raise InputError(
                f"out_dir {str(out)!r} holds an export made with different settings (model, data, shard_size, "
                "what or dtype); use a new folder",
                param="out_dir",
            )
    else:
        index = {
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
                "name": cfg.name,
                "latent_shape": list(cfg.latent_shape),
                "num_bands": cfg.num_bands,
                "band_transform": cfg.band_transform,
                "img_size": cfg.img_size,
            },
            "metadata": metadata or {},
            "shards": [],
            "complete": False,
        }
        write_text(out / FILES_NAME, "\n".join(rel_files) + ("\n" if rel_files else ""))
        _atomic_json(index_path, index)
    # Discard partial work: temp files (ours and safetensors' hidden ones), finished shards whose file
    # is truncated or corrupt, and shard files the index does not list.
    remove_temp_files(out)
    for p in out.glob("*.tmp"):
        logger.info("Removing partial file %s", p)
        p.unlink()
    bad = {}
    for e in index["shards"]:
        why = shard_problem(out, e, index["what"])
        if why is not None:
            bad[int(e["shard"])] = why
            logger.warning("Shard %s of %s is unusable (%s); recomputing it", e["shard"], out, why)
    if bad:
        index["shards"] = [e for e in index["shards"] if int(e["shard"]) not in bad]
        index["complete"] = False
        index.pop("stats", None)
        _atomic_json(index_path, index)
    done = {int(s["shard"]) for s in index["shards"]}
    for p in out.glob("shard-*.safetensors"):
        try:
            sid = int(p.name[len("shard-") : -len(".safetensors")])
        except ValueError:
            continue
        if sid not in done:
            logger.info("Removing uncommitted shard %s (will be recomputed)", p)
            p.unlink()
    num_shards = index["num_shards"]
    pending = [s for s in range(num_shards) if s not in done]
    if pending:
        logger.info("Exporting %d of %d shards to %s", len(pending), num_shards, out)
    batches: list[list[int]] = []
    owner: list[int] = []
    for s in pending:
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
    )
    store = DTYPES[dtype]
    bar = tqdm(
        total=sum(len(b) for b in batches),
        desc="encode",
        unit="img",
        disable=not progress,
        dynamic_ncols=True,
    )
    cur: int | None = None
    buf: dict[str, list[torch.Tensor]] = {}
    batch_in_shard = 0
    try:
        for bi, batch in enumerate(loader):
            s = owner[bi]
            if cur is not None and s != cur:
                _commit(out, index, index_path, cur, buf, store)
                if callback is not None:
                    callback("shard", cur, batch_in_shard)
                buf, batch_in_shard = {}, 0
            cur = s
            for u in batch["unreadable"]:
                logger.warning("Skipped: %s", u.reason)
                buf.setdefault("skipped", []).append((int(u.index), _relpath(u.path, root)))
            if "image" in batch:
                x, _ = batch_images(batch, device)
                for k, v in _encode(model, x, what, amp).items():
                    buf.setdefault(k, []).append(v.cpu())
                buf.setdefault("index", []).append(torch.as_tensor(batch["index"]).long())
                buf.setdefault("label", []).append(torch.as_tensor(batch["label"]).long())
            bar.update(len(batches[bi]))
            batch_in_shard += 1
            if callback is not None:
                callback("batch", s, batch_in_shard)
        if cur is not None:
            _commit(out, index, index_path, cur, buf, store)
            if callback is not None:
                callback("shard", cur, batch_in_shard)
    finally:
        bar.close()
    return _finalize(out, index, index_path)


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


def _commit(
    out: Path,
    index: dict[str, Any],
    index_path: Path,
    shard: int,
    buf: dict[str, list[torch.Tensor]],
    store: torch.dtype,
) -> None:
    """Write one complete shard (tmp + rename), then record it in the index (atomic)."""
    tensors: dict[str, torch.Tensor] = {}
    entry: dict[str, Any] = {"shard": shard, "file": shard_name(shard)}
    idx = torch.cat(buf["index"]) if "index" in buf else torch.zeros(0, dtype=torch.long)
    skipped_pairs = sorted(buf.get("skipped", []))
    skipped = [i for i, _ in skipped_pairs]
    skipped_info = {"skipped": skipped, "skipped_files": [f for _, f in skipped_pairs]}
    lo = shard * index["shard_size"]
    hi = min(lo + index["shard_size"], index["num_images"])
    if sorted(idx.tolist() + skipped) != list(range(lo, hi)):
        raise RuntimeError(
            f"shard {shard} got indices {idx[:4].tolist()}... (skipped {skipped[:4]}) instead of {lo}..{hi - 1}"
        )
    if not len(idx):  # every image of the shard is unreadable: nothing to store
        entry.update({"file": None, "start": lo, "count": 0, "bytes": 0, **skipped_info})
        _record(index, index_path, entry)
        return
    tensors["index"] = idx
    tensors["label"] = torch.cat(buf["label"])
    for k in EXPORTABLE:
        if k not in buf:
            continue
        full = torch.cat(buf[k])
        count, mean, m2 = channel_moments(full, channel_dim=2 if k == "bands" else 1)
        tensors[k] = full.to(store).contiguous()
        tensors[f"stats.{k}.mean"] = mean
        tensors[f"stats.{k}.m2"] = m2
        tensors[f"stats.{k}.count"] = torch.tensor([count], dtype=torch.int64)
        index["shapes"][k] = list(full.shape[1:])
    final = out / shard_name(shard)
    save_safetensors(tensors, final, metadata={"shard": str(shard), "start": str(lo), "count": str(len(idx))})
    entry.update({"start": lo, "count": len(idx), "bytes": final.stat().st_size, **skipped_info})
    _record(index, index_path, entry)


def _record(index: dict[str, Any], index_path: Path, entry: dict[str, Any]) -> None:
    """Put a committed shard's entry into the index (replacing an older one) and write it atomically."""
    index["shards"] = sorted(
        [*(s for s in index["shards"] if s["shard"] != entry["shard"]), entry], key=lambda e: e["shard"]
    )
    _skip_totals(index)
    _atomic_json(index_path, index)


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
                parts.append(
                    (
                        int(f.get_tensor(f"stats.{k}.count")[0]),
                        f.get_tensor(f"stats.{k}.mean"),
                        f.get_tensor(f"stats.{k}.m2"),
                    )
                )
        if not parts:
            raise InputError(f"none of the {index['num_images']} images could be read")
        count, mean, m2 = combine_moments(parts)
        std = (m2 / max(count - 1, 1)).sqrt()
        stats[k] = {"count": count, "mean": mean.tolist(), "std": std.tolist()}
        tensors[f"{k}.mean"] = mean.float().contiguous()
        tensors[f"{k}.std"] = std.float().contiguous()
    save_safetensors(tensors, out / STATS_NAME)
    index["stats"] = stats
    index["complete"] = True
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
    ds, root = open_dataset(
        data, model.config.img_size, options=options, labels=None, data_config=resolve_data_config(model)
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
        device=model_device(model),
        amp=options.amp,
        progress=options.progress,
        metadata={**(metadata or {}), "data": data, "data_path": str(root)},
    )
