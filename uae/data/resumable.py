"""Training data that resumes exactly: a seeded, sharded, resumable sampler and a stateful DataLoader.

A kill-and-resume run must see the same samples, in the same order and with the same random crops, as
an uninterrupted run. Three pieces make that so:

* :class:`ResumableSampler` (a :class:`~torch.utils.data.distributed.DistributedSampler`, so Lightning
  never wraps it again): the order of epoch ``e`` is a permutation seeded by ``(seed, e)``, sharded over
  the ranks; it can start an epoch part-way through (``start``).
* Each index travels with a per-sample seed derived from ``(seed, epoch, position)``;
  :class:`SeededDataset` draws the sample's augmentation (crop, flip) under that seed, so crops do not
  depend on the number of workers, on the process's random state, or on a restart.
* :class:`ResumableDataLoader` counts the batches it delivered and has ``state_dict`` /
  ``load_state_dict``: Lightning stores that state in every checkpoint (``loops.fit_loop.state_dict
  .combined_loader``) and loads it into the new loader on ``fit(ckpt_path=...)``, which then skips the
  batches the interrupted run had already trained on.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Iterator
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset
from torch.utils.data.distributed import DistributedSampler

logger = logging.getLogger(__name__)

_MIX = 0x9E3779B97F4A7C15  # golden-ratio constant: spreads (seed, epoch, position) over 63 bits
_MASK = (1 << 63) - 1


def sample_seed(seed: int, epoch: int, position: int) -> int:
    """Deterministic 63-bit seed of the sample at ``position`` of epoch ``epoch``'s global order."""
    x = (int(seed) * _MIX + int(epoch) * 1_000_003 + int(position)) & _MASK
    x ^= x >> 31
    x = (x * 0xBF58476D1CE4E5B9) & _MASK
    return x ^ (x >> 29)


class ResumableSampler(DistributedSampler):
    """Seeded per-epoch shuffle, sharded over ``num_replicas`` ranks, resumable in the middle of an epoch.

    Yields ``(index, sample_seed)`` pairs for :class:`SeededDataset`. The global order of epoch ``e`` is
    ``torch.randperm(n, generator=seed + e)`` (as :class:`DistributedSampler`), padded to a multiple of
    ``num_replicas`` and split by ``rank::num_replicas``. ``len()`` is always the full shard, so
    Lightning's batch counting is unchanged after a resume; only the first iteration after
    :meth:`skip` yields fewer samples.

    Args:
        dataset: The (sized) dataset.
        num_replicas: Number of ranks (``trainer.world_size``).
        rank: This rank (``trainer.global_rank``).
        shuffle: Shuffle each epoch (else the dataset order).
        seed: Seed of the shuffle and of the per-sample augmentation seeds.
        drop_last: Drop the tail instead of padding it to a multiple of ``num_replicas``.
    """

    def __init__(
        self,
        dataset: Dataset,
        num_replicas: int = 1,
        rank: int = 0,
        shuffle: bool = True,
        seed: int = 0,
        drop_last: bool = False,
    ) -> None:
        super().__init__(
            dataset, num_replicas=num_replicas, rank=rank, shuffle=shuffle, seed=seed, drop_last=drop_last
        )
        self.start = 0

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch's order; a new epoch starts at its first sample."""
        if epoch != self.epoch:
            self.start = 0
        super().set_epoch(epoch)

    def skip(self, epoch: int, start: int) -> None:
        """Make the next iteration be epoch ``epoch`` from its ``start``-th sample (of this rank)."""
        self.epoch, self.start = int(epoch), max(0, int(start))

    def __iter__(self) -> Iterator[tuple[int, int]]:  # type: ignore[override]
        order = list(super().__iter__())  # this rank's shard of the epoch's (padded) global order
        start, self.start = self.start, 0
        for j in range(start, len(order)):
            position = self.rank + j * self.num_replicas
            yield order[j], sample_seed(self.seed, self.epoch, position)


class SeededDataset(Dataset):
    """Wraps a dataset whose transform draws from ``random`` / ``torch``: item ``(i, seed)`` is drawn
    under ``seed`` (the process's random state is left as it was); a plain ``i`` is passed through."""

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, item: int | tuple[int, int]) -> Any:
        if not isinstance(item, tuple):
            return self.dataset[item]
        i, seed = item
        state = random.getstate()
        try:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                random.seed(seed)
                return self.dataset[i]
        finally:
            random.setstate(state)


class ResumableDataLoader(DataLoader):
    """A DataLoader over a :class:`ResumableSampler` that Lightning can checkpoint mid-epoch.

    ``state_dict()`` says which epoch it is in and how many samples of this rank's shard were
    delivered; ``load_state_dict()`` makes the next iteration continue from there. The underlying
    iterator (and its worker processes) is created on the first ``next()``, i.e. after Lightning has
    called ``set_epoch``.
    """

    def __init__(self, dataset: Dataset, *args: Any, **kwargs: Any) -> None:
        super().__init__(dataset, *args, **kwargs)
        if not isinstance(self.sampler, ResumableSampler):
            raise ValueError("ResumableDataLoader needs sampler=ResumableSampler(...)")
        self._delivered = 0  # batches delivered in the current epoch

    def __iter__(self) -> Iterator[Any]:  # type: ignore[override]
        sampler: ResumableSampler = self.sampler  # type: ignore[assignment]
        self._delivered = -(-sampler.start // self.batch_size) if self.batch_size else 0
        for batch in super().__iter__():
            self._delivered += 1
            yield batch

    def state_dict(self) -> dict[str, Any]:
        """Epoch, samples of this rank delivered in it, and the sampler's settings."""
        sampler: ResumableSampler = self.sampler  # type: ignore[assignment]
        return {
            "epoch": int(sampler.epoch),
            "samples": int(self._delivered * (self.batch_size or 1)),
            "num_replicas": int(sampler.num_replicas),
            "seed": int(sampler.seed),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from ``state`` (written by :meth:`state_dict` of the interrupted run)."""
        sampler: ResumableSampler = self.sampler  # type: ignore[assignment]
        epoch, samples = int(state["epoch"]), int(state["samples"])
        if int(state.get("seed", sampler.seed)) != sampler.seed:
            logger.warning(
                "Resuming with data seed %d, the checkpoint used %d: keeping the checkpoint's seed",
                sampler.seed,
                state["seed"],
            )
            sampler.seed = int(state["seed"])
        replicas = int(state.get("num_replicas", sampler.num_replicas))
        if replicas != sampler.num_replicas:  # same global order; this rank's share of what is left
            logger.warning(
                "Resuming on %d ranks from a checkpoint written on %d: the rest of the epoch is "
                "re-sharded (approximately the same samples)",
                sampler.num_replicas,
                replicas,
            )
            samples = samples * replicas // sampler.num_replicas
        if samples >= len(sampler):
            epoch, samples = epoch + 1, 0
        sampler.skip(epoch, samples)
        self._delivered = 0


__all__ = ["ResumableDataLoader", "ResumableSampler", "SeededDataset", "sample_seed"]
