"""Kill-and-resume of the latent-diffusion stage gives the weights, EMA and data order of an uninterrupted run,
killed mid-epoch or right at an epoch's end (modelled on test_resume.py)."""

from __future__ import annotations

from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch
from conftest import cpu_trainer
from kill_resume import Indices, Kill, Killed
from ldm_fixtures import encode, save_tokenizer

from uae.training import LatentDataModule, LatentDiffusionModule
from uae.training.generator_io import export_training_checkpoint

pytestmark = pytest.mark.filterwarnings("ignore:Checkpoint directory .* exists and is not empty")


@pytest.fixture(scope="module")
def export(tmp_path_factory, request) -> Path:
    """8 photos encoded by a saved uae_test in 3 shards (the data of every run here)."""

    from conftest import write_photo_folder

    root = tmp_path_factory.mktemp("ldm_resume")
    images = write_photo_folder(root / "images", flip_suffix=".png")
    return encode(save_tokenizer(root / "tok"), images, root / "latents", what=("fused",))


def _run(export: Path, out: Path, max_steps: int, extra=(), ckpt_path=None, rec=None):
    torch.manual_seed(0)
    module = LatentDiffusionModule(
        model_name="dit_dh_test",
        ema_decay=0.9,
        lr=1e-3,
        warmup_steps=2,
        decay_end_steps=6,
        warmup_from_zero=True,
        log_images_every_n_steps=0,
    )
    rec = rec if rec is not None else Indices()
    ckpt = pl.callbacks.ModelCheckpoint(dirpath=str(out / "ckpt"), every_n_train_steps=1, save_last=True)
    trainer = cpu_trainer(out, max_steps, [rec, ckpt, *extra])
    data = LatentDataModule(str(export), batch_size=2, num_workers=0, seed=3)
    trainer.fit(module, data, ckpt_path=ckpt_path)
    return module, rec.seen, trainer


@pytest.mark.parametrize("kill_at", [3, 4], ids=["mid-epoch", "epoch-end"])
def test_kill_and_resume_matches_uninterrupted_run(export, tmp_path, kill_at):
    # 8 latents, batch 2: 4 batches per epoch; killed before step kill_at + 1, resumed to step 6 (epoch 2).
    n = 6
    full, full_seen, _ = _run(export, tmp_path / "full", n)
    cut = Indices()
    with pytest.raises(Killed):
        _run(export, tmp_path / "cut", n, extra=[Kill(kill_at)], rec=cut)
    last = tmp_path / "cut" / "ckpt" / "last.ckpt"
    assert torch.load(last, map_location="cpu", weights_only=True)["global_step"] == kill_at
    resumed, resumed_seen, trainer = _run(export, tmp_path / "cut", n, ckpt_path=str(last))
    assert trainer.global_step == n
    assert cut.seen[:kill_at] + resumed_seen == full_seen  # no batch replayed, none skipped, same order
    assert sorted(i for b in full_seen[:4] for i in b) == list(range(8)) and full_seen[4:] != full_seen[:2]
    for (name, a), b in zip(full.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), name  # weights and EMA (ema.module.*)
    assert any(k.startswith("ema.module.") for k in full.state_dict())
    assert full.trainer.optimizers[0].param_groups[0]["lr"] == trainer.optimizers[0].param_groups[0]["lr"]


def test_last_checkpoint_exports_the_final_ema_and_latent_space(export, tmp_path):
    module, _, _ = _run(export, tmp_path, 3)
    out = export_training_checkpoint(tmp_path / "ckpt" / "last.ckpt", tmp_path / "exported")
    from uae.generation.latent_space import LatentSpace
    from uae.models.dit import DiTDH

    loaded = DiTDH.from_pretrained(out).state_dict()
    for name, v in module.ema.module.state_dict().items():
        assert torch.equal(v, loaded[name]), name
    space = LatentSpace.load(out)
    assert space.to_dict() == module.latent_space.to_dict() and torch.equal(
        space.mean, module.latent_space.mean
    )


def test_resuming_on_the_latents_of_another_tokenizer_is_refused(export, tmp_path):
    _run(export, tmp_path, 2)
    other = encode(
        save_tokenizer(tmp_path / "other", seed=5), export.parent / "images", tmp_path / "other_latents"
    )
    with pytest.raises(ValueError, match="another tokenizer than the data's"):
        _run(other, tmp_path / "again", 4, ckpt_path=str(tmp_path / "ckpt" / "last.ckpt"))
