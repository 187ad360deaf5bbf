"""Training data of a latent generator: the shards written by ``uae encode``, streamed, checked, resumable.

:class:`LatentShards` is a map-style dataset over the readable samples of an export (shard ``s`` holds the
rows ``count`` of its index entry); each item is read from its shard through ``safetensors``' memory map,
and at most ``max_open`` shard files are open per process (an LRU), so memory does not grow with the
export: ImageNet's 1.28 M 16x16x768 latents (about 1 TB in float32) train like the four bundled photos.
Items are ``{"latent": (C, h, w) float32, "label": int, "index": int}`` (``index``: the image's position
in the encoded folder, ``label`` -1 -> 0 for unlabelled folders).

:class:`LatentDataModule` checks the export against the tokenizer the generator is paired with (the
tokenizer fingerprint ``uae encode`` records in ``index.json``; a mismatch is refused in one line), builds
the :class:`~uae.generation.latent_space.LatentSpace` (which tensor, which bands, which statistics), and
loads the training split with :class:`~uae.data.resumable.ResumableSampler` /
:class:`~uae.data.resumable.ResumableDataLoader`: the order of epoch ``e`` is a permutation seeded by
``(seed, e)``, and a killed run resumes mid-epoch exactly as the image stages do.

This module lives in :mod:`uae.training` rather than :mod:`uae.data` because it reads the export layout of
:mod:`uae.evaluation.shards` (a layer above the data package).
"""

from __future__ import annotations

import bisect
import logging
import math
import os
import random
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import lightning.pytorch as pl
import torch
from torch.utils.data import DataLoader, Dataset

from uae.data.datamodule import auto_num_workers
from uae.data.resumable import ResumableDataLoader, ResumableSampler
from uae.errors import ConfigError, InputError, MissingFileError
from uae.evaluation.common import tokenizer_fingerprint
from uae.evaluation.shards import read_index
from uae.generation.latent_space import LATENT_KINDS, STATS_SOURCES, LatentSpace, parse_bands, tokenizer_stats

logger = logging.getLogger(__name__)


class LatentShards(Dataset):
    """The readable samples of a ``uae encode`` export, read shard by shard (LRU of open files).

    Args:
        root: The export folder.
        index: Its ``index.json`` (default: read it).
        key: The stored tensor: ``"bands"``, ``"latent"`` or ``"fused"``.
        bands: For ``key="bands"``: the bands summed into the item's latent (``None``: all).
        positions: Use only these samples (positions in the export's readable samples, in order).
        max_open: Shard files kept open per process.

    Raises:
        MissingFileError: No export at ``root``.
        InputError: ``key`` is not stored there.
    """

    def __init__(
        self,
        root: str | os.PathLike,
        index: dict[str, Any] | None = None,
        key: str = "fused",
        bands: Sequence[int] | None = None,
        positions: Sequence[int] | None = None,
        max_open: int = 8,
    ) -> None:
        self.root = Path(root).expanduser()
        self.index = index if index is not None else read_index(self.root)
        if key not in self.index["what"]:
            raise InputError(
                f"the export {str(self.root)!r} stores {self.index['what']}, not {key!r} (run uae encode with "
                f"--what {key})",
                param="what",
            )
        self.key = key
        self.bands = list(bands) if bands is not None else None
        entries = [e for e in self.index["shards"] if e.get("file") and int(e.get("count", 0)) > 0]
        self.files = [str(e["file"]) for e in entries]
        self.starts: list[int] = []
        total = 0
        for e in entries:
            self.starts.append(total)
            total += int(e["count"])
        self.total = total
        self.positions = list(positions) if positions is not None else None
        self.max_open = max(1, int(max_open))
        self._open: OrderedDict[int, Any] = OrderedDict()

    def __len__(self) -> int:
        return len(self.positions) if self.positions is not None else self.total

    def __getstate__(self) -> dict[str, Any]:  # DataLoader workers open their own files
        state = dict(self.__dict__)
        state["_open"] = OrderedDict()
        return state

    def _shard(self, s: int) -> Any:
        from safetensors import safe_open

        f = self._open.pop(s, None)
        if f is None:
            f = safe_open(str(self.root / self.files[s]), framework="pt")
            while len(self._open) >= self.max_open:
                self._open.popitem(last=False)  # least recently used: dropped (its map is released)
        self._open[s] = f
        return f

    def locate(self, i: int) -> tuple[int, int]:
        """``(shard number among the non-empty shards, row)`` of sample ``i``."""
        p = self.positions[i] if self.positions is not None else i
        if not 0 <= p < self.total:
            raise IndexError(f"sample {p} of an export with {self.total}")
        s = bisect.bisect_right(self.starts, p) - 1
        return s, p - self.starts[s]

    def __getitem__(self, item: int | tuple[int, int]) -> dict[str, Any]:
        i = item[0] if isinstance(item, tuple) else item  # (index, sample seed) from ResumableSampler
        s, row = self.locate(int(i))
        f = self._shard(s)
        x = f.get_slice(self.key)[row].float()
        if self.bands is not None:
            x = x[self.bands].sum(dim=0)
        label = int(f.get_slice("label")[row])
        return {"latent": x, "label": max(label, 0), "index": int(f.get_slice("index")[row])}


def export_stats(
    index: dict[str, Any], key: str, bands: Sequence[int] | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel ``(mean, std)`` ``(C,)`` of the modelled latent from an export's statistics.

    For a band subset: the sum of the band means and the square root of the sum of the band variances.

    Raises:
        InputError: The export is not complete (no statistics yet).
    """
    stats = index.get("stats", {}).get(key)
    if stats is None:
        raise InputError(
            "the export has no latent statistics yet (it is incomplete: re-run the same uae encode command to "
            "finish it)",
            param="root",
        )
    mean = torch.tensor(stats["mean"], dtype=torch.float64)
    std = torch.tensor(stats["std"], dtype=torch.float64)
    if key == "bands":
        picked = list(bands) if bands is not None else list(range(mean.shape[0]))
        mean, std = mean[picked].sum(0), std[picked].pow(2).sum(0).sqrt()
    return mean.float(), std.float()


class LatentDataModule(pl.LightningDataModule):
    """Latents of a ``uae encode`` export for :class:`~uae.training.latent_diffusion.LatentDiffusionModule`.

    Args:
        root: The export folder (``uae encode --what fused`` for the releases' latent space; ``--what
            bands`` to train on band subsets).
        val_root: A second export for validation (e.g. the encoded ImageNet validation set); may be
            ``root`` itself (the validation loss and the FID reference then use training latents).
        val_fraction: Without ``val_root``: a seeded fraction of ``root``'s samples held out.
        max_val_samples: Use at most this many validation samples (the first ones).
        what: The modelled tensor: ``"fused"`` (the decoder's input; the releases' space), ``"latent"``
            or ``"bands"`` (see :mod:`uae.generation.latent_space`).
        bands: With ``what="bands"``: the bands summed, e.g. ``0``, ``[0, 1]``, ``"0:2"``; ``None``: all.
        stats: Normalisation: ``"auto"`` (the tokenizer's statistics where it has some and they apply, else
            the export's per-channel ones), ``"tokenizer"``, ``"export"`` or ``"none"``.
        tokenizer: The tokenizer the generator is paired with (a ``--model``-style spec); default: the one
            ``uae encode`` recorded (``metadata.model`` of ``index.json``).
        check_tokenizer: Refuse an export whose tokenizer fingerprint is not the tokenizer's.
        batch_size: Batch per device (global batch = batch_size x devices x nodes x accumulation).
        val_batch_size: Validation batch per device (default ``batch_size``).
        num_workers: DataLoader workers per device; ``None``: from the CPU cores.
        pin_memory: ``None``: when training on CUDA.
        max_open_shards: Shard files kept open per process.
        seed: Seed of the held-out split and of the epoch orders (``seed_everything``'s when set).

    Raises:
        ConfigError: Invalid options (naming the parameter).
        MissingFileError: No export at ``root`` / ``val_root``.
    """

    def __init__(
        self,
        root: str,
        val_root: str | None = None,
        val_fraction: float = 0.0,
        max_val_samples: int | None = None,
        what: Literal["fused", "latent", "bands"] = "fused",
        bands: int | str | list[int] | None = None,
        stats: Literal["auto", "tokenizer", "export", "none"] = "auto",
        tokenizer: str | None = None,
        check_tokenizer: bool = True,
        batch_size: int = 32,
        val_batch_size: int | None = None,
        num_workers: int | None = None,
        pin_memory: bool | None = None,
        max_open_shards: int = 8,
        seed: int = 0,
    ) -> None:
        super().__init__()
        if what not in LATENT_KINDS:
            raise ConfigError(f"what must be one of {LATENT_KINDS}, got {what!r}", param="what")
        if stats not in STATS_SOURCES:
            raise ConfigError(f"stats must be one of {STATS_SOURCES}, got {stats!r}", param="stats")
        if bands is not None and what != "bands":
            raise ConfigError(f"bands needs what='bands' (what is {what!r})", param="bands")
        if not 0.0 <= val_fraction < 1.0:
            raise ConfigError(f"val_fraction must be in [0, 1), got {val_fraction}", param="val_fraction")
        if batch_size < 1:
            raise ConfigError(f"batch_size must be >= 1, got {batch_size}", param="batch_size")
        self.save_hyperparameters()
        self.root = Path(root).expanduser()
        self.val_root = Path(val_root).expanduser() if val_root else None
        for name, path in (("root", self.root), ("val_root", self.val_root)):
            if path is not None and not (path / "index.json").is_file():
                raise MissingFileError(
                    f"{name} {str(path)!r} is not a uae encode export (no index.json)", param=name
                )
        self.val_fraction, self.max_val_samples = val_fraction, max_val_samples
        self.what, self.bands_spec, self.stats = what, bands, stats
        self.tokenizer, self.check_tokenizer = tokenizer, check_tokenizer
        self.batch_size, self.val_batch_size = batch_size, val_batch_size or batch_size
        self.num_workers, self.pin_memory = num_workers, pin_memory
        self.max_open_shards, self.seed = max_open_shards, seed
        self.train_set: LatentShards | None = None
        self.val_set: LatentShards | None = None
        #: The modelled latent space (set by :meth:`setup`).
        self.latent_space: LatentSpace | None = None
        #: The tokenizer (a :class:`uae.UAE` in eval mode, set by :meth:`setup`; not a submodule of anything).
        self.tokenizer_model: Any = None

    # ------------------------------------------------------------------ checks
    def _tokenizer_spec(self, index: dict[str, Any]) -> str:
        spec = self.tokenizer or index.get("metadata", {}).get("model")
        if not spec:
            raise ConfigError(
                f"which tokenizer made {str(self.root)!r}? Its index names none: set tokenizer",
                param="tokenizer",
            )
        return str(spec)

    def _check_pairing(self, index: dict[str, Any], root: Path, fingerprint: str) -> None:
        recorded = index.get("model", {}).get("fingerprint")
        if not self.check_tokenizer:
            return
        if recorded is None:
            raise ConfigError(
                f"{str(root)!r} was written by a uae encode that did not record the tokenizer's fingerprint: "
                "run the same uae encode command again (it adds it), or set check_tokenizer to false",
                param="root",
            )
        if recorded != fingerprint:
            raise ConfigError(
                f"the latents in {str(root)!r} were not made by tokenizer {self._tokenizer_spec(index)!r} "
                f"(fingerprint {recorded[:12]}..., the tokenizer's is {fingerprint[:12]}...): encode the data "
                "with the tokenizer the generator is paired with, or set tokenizer to the one that made them",
                param="tokenizer",
            )

    def _space(self, index: dict[str, Any], tok: Any, spec: str, fingerprint: str) -> LatentSpace:
        num_bands = int(index["model"]["num_bands"])
        bands = parse_bands(self.bands_spec, num_bands) if self.what == "bands" else None
        shape = (
            tuple(index["shapes"][self.what])[-3:]
            if index.get("shapes")
            else tuple(index["model"]["latent_shape"])
        )
        source = self.stats
        own = tokenizer_stats(tok)
        fits = self.what == "fused" or num_bands == 1
        if source == "auto":
            source = "tokenizer" if own is not None and fits else "export"
        if source == "tokenizer":
            if own is None or not fits:
                why = (
                    "has no latent statistics"
                    if own is None
                    else "has statistics of its decoder's input (what='fused')"
                )
                raise ConfigError(
                    f"stats='tokenizer': the tokenizer {why}; use stats='export'", param="stats"
                )
            mean, std = own
        elif source == "export":
            mean, std = export_stats(index, self.what, bands)
        else:
            mean = std = None
        return LatentSpace(self.what, bands, source, mean, std, shape, spec, fingerprint)

    # ------------------------------------------------------------------ set-up
    def setup(self, stage: str | None = None) -> None:
        """Read the index, load and check the tokenizer, build the latent space and the datasets."""
        if self.train_set is not None:
            return
        from uae.factory import load_model

        index = read_index(self.root)
        if not index.get("complete"):
            done = len(index.get("shards", []))
            raise InputError(
                f"the export {str(self.root)!r} is incomplete ({done}/{index.get('num_shards')} shards): re-run the "
                "same uae encode command to finish it",
                param="root",
            )
        spec = self._tokenizer_spec(index)
        tok = load_model(spec, family="tokenizer")
        fingerprint = tokenizer_fingerprint(tok)
        self._check_pairing(index, self.root, fingerprint)
        self.tokenizer_model = tok
        self.latent_space = self._space(index, tok, spec, fingerprint)
        key = "bands" if self.what == "bands" else self.what
        kw = {"key": key, "bands": self.latent_space.bands, "max_open": self.max_open_shards}
        full = LatentShards(self.root, index, **kw)
        if len(full) == 0:
            raise InputError(f"the export {str(self.root)!r} holds no readable sample", param="root")
        if self.val_root is not None:
            val_index = read_index(self.val_root)
            self._check_pairing(val_index, self.val_root, fingerprint)
            val = LatentShards(self.val_root, val_index, **kw)
            train = full
        elif self.val_fraction > 0 and len(full) >= 2:
            order = list(range(len(full)))
            random.Random(self.seed).shuffle(order)
            n_val = min(len(full) - 1, max(1, round(len(full) * self.val_fraction)))
            val = LatentShards(self.root, index, positions=sorted(order[:n_val]), **kw)
            train = LatentShards(self.root, index, positions=sorted(order[n_val:]), **kw)
        else:
            val, train = None, full
        if val is not None and self.max_val_samples is not None:
            keep = range(min(len(val), int(self.max_val_samples)))
            val.positions = [val.positions[i] for i in keep] if val.positions is not None else list(keep)
        self.train_set, self.val_set = train, val
        logger.info(
            "LatentDataModule(%s): %d train / %d val latents %s, %s statistics, tokenizer %s",
            self.root,
            len(train),
            len(val) if val is not None else 0,
            self.latent_space.latent_shape,
            self.latent_space.stats,
            spec,
        )

    def num_classes(self) -> int:
        """Classes of the encoded folder (1 when it had no class sub-folders)."""
        assert self.train_set is not None
        return max(1, len(self.train_set.index.get("classes", [])))

    # ------------------------------------------------------------------ loaders
    def _workers_and_pin(self) -> tuple[int, bool]:
        trainer = getattr(self, "trainer", None)
        from lightning.pytorch.accelerators import CPUAccelerator, CUDAAccelerator

        cpu = trainer is None or isinstance(trainer.accelerator, CPUAccelerator)
        workers = self.num_workers
        if workers is None:
            devices = max(1, int(getattr(trainer, "num_devices", 1) or 1)) if trainer is not None else 1
            workers = auto_num_workers(devices, "cpu" if cpu else "gpu")
        pin = self.pin_memory
        if pin is None:
            pin = trainer is not None and isinstance(trainer.accelerator, CUDAAccelerator)
        return int(workers), bool(pin)

    def data_seed(self) -> int:
        """``seed_everything``'s seed when one was set (``PL_GLOBAL_SEED``), else ``seed``."""
        return int(os.environ.get("PL_GLOBAL_SEED", self.seed))

    def train_dataloader(self) -> DataLoader:
        if self.train_set is None:
            self.setup("fit")
        assert self.train_set is not None
        workers, pin = self._workers_and_pin()
        trainer = getattr(self, "trainer", None)
        replicas = int(trainer.world_size) if trainer is not None else 1
        rank = int(trainer.global_rank) if trainer is not None else 0
        seed = self.data_seed()
        sampler = ResumableSampler(self.train_set, num_replicas=replicas, rank=rank, shuffle=True, seed=seed)
        return ResumableDataLoader(
            self.train_set,
            sampler=sampler,
            batch_size=self.batch_size,
            drop_last=len(self.train_set) // replicas >= self.batch_size,
            num_workers=workers,
            pin_memory=pin,
            persistent_workers=workers > 0,
            generator=torch.Generator().manual_seed(seed),
        )

    def val_dataloader(self) -> DataLoader | list:
        if self.train_set is None:
            self.setup("validate")
        if self.val_set is None:
            return []
        workers, pin = self._workers_and_pin()
        return DataLoader(
            self.val_set,
            batch_size=self.val_batch_size,
            shuffle=False,
            num_workers=workers,
            pin_memory=pin,
            persistent_workers=workers > 0,
        )

    def steps_per_epoch(self, world_size: int = 1) -> int:
        """Batches per epoch and rank (``drop_last`` as the training loader)."""
        assert self.train_set is not None
        per_rank = math.ceil(len(self.train_set) / world_size)
        return per_rank // self.batch_size if per_rank >= self.batch_size else 1


__all__ = ["LatentDataModule", "LatentShards", "export_stats"]
