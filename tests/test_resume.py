"""Kill-and-resume gives the same weights, EMA and data order as an uninterrupted run."""

from __future__ import annotations

from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch
from conftest import cpu_trainer
from kill_resume import Indices, Kill, Killed

from uae.data import UAEDataModule
from uae.data.resumable import ResumableDataLoader, ResumableSampler, SeededDataset
from uae.training import Stage1DecoderModule, Stage2SemanticModule, Stage3GANModule
from uae.training.export import export_checkpoint

# Resuming into the killed run's checkpoint folder is the point of these tests.
pytestmark = pytest.mark.filterwarnings("ignore:Checkpoint directory .* exists and is not empty")


STAGES = {
    1: (Stage1DecoderModule, {}),
    2: (Stage2SemanticModule, {}),
    3: (Stage3GANModule, {"disc_start": 1, "diff_aug": "color,translation,cutout"}),
}


def _run(stage: int, root: Path, out: Path, max_steps: int, extra=(), ckpt_path=None, rec=None) -> tuple:
    cls, kw = STAGES[stage]
    torch.manual_seed(0)
    module = cls(model_name="uae_test", ema_decay=0.9, log_images_every_n_steps=0, lr=1e-3, **kw)
    rec = rec if rec is not None else Indices()
    ckpt = pl.callbacks.ModelCheckpoint(dirpath=str(out / "ckpt"), every_n_train_steps=1, save_last=True)
    trainer = cpu_trainer(out, max_steps, [rec, ckpt, *extra])
    data = UAEDataModule(str(root), batch_size=2, num_workers=0, val_fraction=0.0, seed=3)
    trainer.fit(module, data, ckpt_path=ckpt_path)
    return module, rec.seen, trainer


@pytest.mark.parametrize("stage", [1, 2, 3])
def test_kill_and_resume_matches_uninterrupted_run(stage, image_folder, tmp_path):
    # 8 images, batch 2: 4 batches per epoch; killed after step 3 (mid-epoch), resumed to step 6 (epoch 2).
    n, k = 6, 3
    full, full_seen, _ = _run(stage, image_folder, tmp_path / "full", n)
    cut = Indices()
    with pytest.raises(Killed):
        _run(stage, image_folder, tmp_path / "cut", n, extra=[Kill(k)], rec=cut)
    cut_seen = cut.seen[:k]  # the kill comes at the start of batch k + 1
    last = tmp_path / "cut" / "ckpt" / "last.ckpt"
    assert torch.load(last, map_location="cpu", weights_only=True)["global_step"] == k
    resumed, resumed_seen, trainer = _run(stage, image_folder, tmp_path / "cut", n, ckpt_path=str(last))
    assert trainer.global_step == n

    assert cut_seen + resumed_seen == full_seen  # no batch replayed, none skipped, same order
    assert sorted(i for b in full_seen[:4] for i in b) == list(range(8))  # one epoch = every image once
    assert full_seen[4:] != full_seen[:2]  # the second epoch is shuffled anew
    for (name, a), b in zip(full.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), name  # weights, EMA (ema.module.*), discriminator
    assert any(k.startswith("ema.module.") for k in full.state_dict())


def test_last_checkpoint_holds_the_final_ema(image_folder, tmp_path):
    """``uae export last.ckpt`` equals the export written at the end of training (EMA updated first)."""
    module, _, _ = _run(1, image_folder, tmp_path, 3)
    exported = export_checkpoint(tmp_path / "ckpt" / "last.ckpt", tmp_path / "from_ckpt")
    from uae import UAE

    from_ckpt = UAE.from_pretrained(exported).state_dict()
    for name, v in module.ema.module.state_dict().items():
        assert torch.equal(v, from_ckpt[name]), name


def test_checkpoint_loads_with_weights_only(image_folder, tmp_path):
    _run(3, image_folder, tmp_path, 2)
    ck = torch.load(tmp_path / "ckpt" / "last.ckpt", map_location="cpu", weights_only=True)
    assert ck["uae_rng"]["torch"].dtype == torch.uint8
    (state,) = ck["loops"]["fit_loop"]["state_dict"]["combined_loader"]
    assert state["epoch"] == 0 and state["samples"] == 4 and state["num_replicas"] == 1


def _epoch(sampler: ResumableSampler, epoch: int) -> list[int]:
    sampler.set_epoch(epoch)
    return [i for i, _ in sampler]


def test_resumable_sampler_shards_and_resumes():
    data = list(range(10))
    shards = [ResumableSampler(data, num_replicas=2, rank=r, seed=5) for r in range(2)]
    e0 = [_epoch(s, 0) for s in shards]
    assert sorted(e0[0] + e0[1]) == data and len(e0[0]) == len(e0[1]) == 5  # a partition of the epoch
    assert _epoch(shards[0], 1) != e0[0]  # reshuffled per epoch...
    assert _epoch(ResumableSampler(data, num_replicas=2, rank=0, seed=5), 0) == e0[0]  # ...seeded
    # Same per-sample seeds whatever the number of ranks: a sample's crop depends on its place in the epoch.
    one = list(ResumableSampler(data, num_replicas=1, rank=0, seed=5))
    two = list(shards[0]) + list(shards[1])
    shards[0].set_epoch(0), shards[1].set_epoch(0)
    assert sorted(one) == sorted(list(shards[0]) + list(shards[1])) and two
    # Mid-epoch resume through the loader's state: the rest of the epoch, then the next epoch from its start.
    loader = ResumableDataLoader(SeededDataset(data), sampler=shards[1], batch_size=2)
    it = iter(loader)
    first = next(it)
    state = loader.state_dict()
    assert state == {"epoch": 0, "samples": 2, "num_replicas": 2, "seed": 5}
    fresh = ResumableDataLoader(
        SeededDataset(data), sampler=ResumableSampler(data, 2, 1, seed=5), batch_size=2
    )
    fresh.load_state_dict(state)
    fresh.sampler.set_epoch(0)  # what Lightning calls on resume: the same epoch keeps the offset
    rest = [b.tolist() for b in fresh]
    assert [first.tolist(), *rest] == [
        b.tolist()
        for b in ResumableDataLoader(
            SeededDataset(data), sampler=ResumableSampler(data, 2, 1, seed=5), batch_size=2
        )
    ]
    assert len(fresh) == 3  # Lightning's batch count is the full epoch's
    fresh.sampler.set_epoch(1)
    assert sum(len(b) for b in fresh) == 5


def test_seeded_dataset_draws_the_same_crop_and_leaves_global_rng(image_folder):
    import random

    from uae.data import ImageFolderDataset, image_transform

    ds = SeededDataset(ImageFolderDataset(image_folder, transform=image_transform(32, train=True)))
    torch.manual_seed(1)
    random.seed(1)
    before = (torch.get_rng_state(), random.getstate())
    a, b, c = ds[0, 11], ds[0, 11], ds[0, 12]
    assert torch.equal(a["image"], b["image"]) and not torch.equal(a["image"], c["image"])
    assert torch.equal(torch.get_rng_state(), before[0]) and random.getstate() == before[1]


# ------------------------------------------------------------------------------ kills at epoch ends
def _kills(stage: int, root: Path, out: Path, n: int, kills: list[int]) -> tuple:
    """Run to ``n`` steps, killed before each step in ``kills`` and resumed from ``last.ckpt`` each time."""
    seen: list[list[int]] = []
    ckpt_path = None
    for k in kills:
        rec = Indices()
        with pytest.raises(Killed):
            _run(stage, root, out, n, extra=[Kill(k)], ckpt_path=ckpt_path, rec=rec)
        seen += rec.seen[:-1]  # the kill comes at the start of the batch of step k
        ckpt_path = str(out / "ckpt" / "last.ckpt")
    module, rest, trainer = _run(stage, root, out, n, ckpt_path=ckpt_path)
    return module, seen + rest, trainer


@pytest.mark.parametrize(
    ("stage", "kills"),
    [(3, [4, 8]), (1, [3, 4, 8, 10])],
    ids=["stage3-two-epoch-ends", "stage1-mixed"],
)
def test_kills_at_epoch_ends_resume_exactly(stage, kills, image_folder, tmp_path):
    """4 batches per epoch: steps 4 and 8 are epoch ends. Each resume at an epoch's end used to leave Lightning's
    epoch counter one behind, so the second one replayed the previous epoch's order (every tensor differed)."""
    n = 12
    full, full_seen, _ = _run(stage, image_folder, tmp_path / "full", n)
    resumed, seen, trainer = _kills(stage, image_folder, tmp_path / "cut", n, kills)
    assert trainer.global_step == n and trainer.current_epoch == 3
    assert seen == full_seen  # same batches in the same order, across three epochs
    for (name, a), b in zip(full.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), name


def test_checkpoints_written_with_the_epoch_counter_behind_are_repaired(image_folder, tmp_path, monkeypatch):
    """Checkpoints written by uae 0.1.0 after a resume at an epoch's end (epoch counter one behind) resume exactly."""
    from uae.training.callbacks import EpochBoundaryResume

    n = 12
    full, full_seen, _ = _run(1, image_folder, tmp_path / "full", n)
    out = tmp_path / "cut"
    first = Indices()
    with pytest.raises(Killed):
        _run(1, image_folder, out, n, extra=[Kill(4)], rec=first)
    last = str(out / "ckpt" / "last.ckpt")
    with monkeypatch.context() as m:  # the old behaviour: the epoch after the resume is never counted
        m.setattr(EpochBoundaryResume, "on_train_start", lambda self, trainer, pl_module: None)
        second = Indices()
        with pytest.raises(Killed):
            _run(1, image_folder, out, n, extra=[Kill(8)], ckpt_path=last, rec=second)
    epochs = torch.load(last, map_location="cpu", weights_only=True)["loops"]["fit_loop"]["epoch_progress"]
    assert epochs["total"]["ready"] == epochs["total"]["processed"] == 1  # one behind: the old checkpoints
    resumed, rest, _ = _run(1, image_folder, out, n, ckpt_path=last)
    assert first.seen[:-1] + second.seen[:-1] + rest == full_seen
    for (name, a), b in zip(full.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), name
