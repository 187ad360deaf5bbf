"""Training stages on CPU with the tiny ``uae_test`` model and real photographs."""

from __future__ import annotations

import shutil
from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch
from conftest import cpu_trainer

import uae
from uae.data import UAEDataModule
from uae.training import Stage1DecoderModule, Stage2SemanticModule, Stage3GANModule
from uae.training.export import export_checkpoint, load_lightning_checkpoint


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny models train several times faster on one thread, above all on a shared, busy CPU."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


class Recorder(pl.Callback):
    """Collects per-step losses, global steps and module modes during training."""

    def __init__(self) -> None:
        self.losses: list[float] = []
        self.steps: list[int] = []
        self.modes: list[tuple[bool, bool]] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.steps.append(trainer.global_step)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        loss = outputs["loss"] if isinstance(outputs, dict) else outputs
        self.losses.append(float(loss))
        self.modes.append((pl_module.model.encoder.training, pl_module.model.decoder.training))


def make_trainer(tmp_path: Path, max_steps: int, callbacks=(), **kw) -> pl.Trainer:
    return cpu_trainer(tmp_path, max_steps, callbacks, **{"enable_checkpointing": False, **kw})


def make_data(root: Path, **kw) -> UAEDataModule:
    kw.setdefault("batch_size", 2)
    return UAEDataModule(str(root), num_workers=0, pin_memory=False, **kw)


def test_stage1_encoder_frozen_and_unchanged(image_folder, tmp_path):
    torch.manual_seed(0)
    module = Stage1DecoderModule(model_name="uae_test", ema_decay=None, log_images_every_n_steps=0)
    enc_before = {k: v.clone() for k, v in module.model.encoder.state_dict().items()}
    dec_before = {k: v.clone() for k, v in module.model.decoder.state_dict().items()}
    assert not any(p.requires_grad for p in module.model.encoder.parameters())
    rec = Recorder()
    trainer = make_trainer(tmp_path, 2, [rec])
    trainer.fit(module, make_data(image_folder, val_fraction=0.0))
    assert trainer.global_step == 2
    opt_params = {id(p) for g in trainer.optimizers[0].param_groups for p in g["params"]}
    assert not opt_params & {id(p) for p in module.model.encoder.parameters()}
    assert {id(p) for p in module.model.decoder.parameters()} <= opt_params
    assert all(enc is False and dec is True for enc, dec in rec.modes)  # encoder in eval mode while training
    for k, v in module.model.encoder.state_dict().items():
        assert torch.equal(v, enc_before[k]), k
    assert any(not torch.equal(v, dec_before[k]) for k, v in module.model.decoder.state_dict().items())
    assert module.model.modulator.noise_std == 0.0


def test_stage1_loss_decreases_on_one_image(tmp_path, photo_paths):
    root = tmp_path / "one"
    root.mkdir()
    shutil.copy(photo_paths[0], root / "only.png")
    torch.manual_seed(0)
    module = Stage1DecoderModule(
        model_name="uae_test",
        lr=2e-3,
        min_lr=2e-3,
        ema_decay=None,
        log_images_every_n_steps=0,
        grad_clip=None,
    )
    rec = Recorder()
    trainer = make_trainer(tmp_path, 50, [rec])
    trainer.fit(module, make_data(root, batch_size=1, val_fraction=0.0, hflip=False, train_repeats=25))
    first, last = sum(rec.losses[:5]) / 5, sum(rec.losses[-5:]) / 5
    assert len(rec.losses) == 50
    assert last < 0.6 * first, (first, last)


@pytest.mark.parametrize("cls", [Stage1DecoderModule, Stage2SemanticModule, Stage3GANModule])
def test_each_stage_trains_and_validates(cls, image_folder, tmp_path):
    torch.manual_seed(0)
    kw = {"disc_start": 1, "diff_aug": "translation"} if cls is Stage3GANModule else {}
    module = cls(model_name="uae_test", log_images_every_n_steps=2, num_log_images=2, **kw)
    trainer = make_trainer(
        tmp_path,
        3,
        limit_val_batches=1,
        val_check_interval=3,
        check_val_every_n_epoch=None,
        logger=pl.loggers.CSVLogger(str(tmp_path)),
    )
    if cls is Stage3GANModule:
        disc_before = [p.clone() for p in module.discriminator.parameters()]
    trainer.fit(module, make_data(image_folder, val_fraction=0.25))
    m = trainer.callback_metrics
    assert trainer.global_step == 3
    assert torch.isfinite(m["train/loss"]) and torch.isfinite(m["val/psnr"]) and 0 < float(m["val/l1"]) < 1
    if cls is Stage1DecoderModule:
        assert "train/semantic" not in m
    else:
        assert "train/semantic" in m and module.teacher is not None
        assert not any(p.requires_grad for p in module.teacher.parameters())
    if cls is Stage3GANModule:
        assert module.model.modulator.noise_std == module.model.config.noise_std > 0
        assert "train/disc" in m and float(m["train/gan_weight"]) > 0
        assert any(not torch.equal(a, b) for a, b in zip(disc_before, module.discriminator.parameters()))
    images = sorted(p.name for p in (Path(trainer.log_dir) / "images").glob("*.png"))
    assert "val_step0000003.png" in images and any(n.startswith("train_") for n in images)


def test_stage2_semantic_loss_starts_at_zero(image_folder, tmp_path):
    """The teacher is a frozen copy of the starting encoder: band-0 loss is 0 at step 0, then grows."""
    torch.manual_seed(0)
    module = Stage2SemanticModule(model_name="uae_test", ema_decay=None, log_images_every_n_steps=0, lr=1e-3)
    x = torch.stack([_ds(image_folder)[i]["image"] for i in range(2)])
    out = module.reconstruction_losses(x, x)
    assert float(out["semantic"]) < 1e-10
    trainer = make_trainer(tmp_path, 5)
    trainer.fit(module, make_data(image_folder, val_fraction=0.0))
    out = module.reconstruction_losses(x, x)
    assert float(out["semantic"]) > 1e-8


def _ds(root: Path):
    from uae.data import ImageFolderDataset, image_transform

    return ImageFolderDataset(root, transform=image_transform(32))


def test_resume_continues_step_count_and_export_roundtrip(image_folder, tmp_path):
    torch.manual_seed(0)
    ckpt_dir = tmp_path / "ckpt"
    cb = pl.callbacks.ModelCheckpoint(dirpath=str(ckpt_dir), save_last=True, every_n_train_steps=3)
    module = Stage1DecoderModule(model_name="uae_test", ema_decay=0.9, log_images_every_n_steps=0)
    trainer = cpu_trainer(tmp_path, 3, [cb])
    trainer.fit(module, make_data(image_folder, val_fraction=0.0))
    last = ckpt_dir / "last.ckpt"
    assert last.is_file()

    rec = Recorder()
    resumed = Stage1DecoderModule(model_name="uae_test", ema_decay=0.9, log_images_every_n_steps=0)
    trainer2 = make_trainer(tmp_path, 5, [rec])
    trainer2.fit(resumed, make_data(image_folder, val_fraction=0.0), ckpt_path=str(last))
    assert rec.steps == [3, 4] and trainer2.global_step == 5

    # Export (EMA weights) -> from_pretrained gives identical outputs; same through the checkpoint path.
    x = torch.stack([_ds(image_folder)[i]["image"] for i in range(2)])
    out_dir = resumed.export_pretrained(tmp_path / "export")
    loaded = uae.UAE.from_pretrained(out_dir)
    ema_model = resumed.ema.module.eval()
    with torch.no_grad():
        assert torch.equal(loaded(x).sample, ema_model(x).sample)
        assert not torch.equal(loaded(x).sample, resumed.model.eval()(x).sample)  # EMA differs from raw
    exported = uae.UAE.from_pretrained(export_checkpoint(last, tmp_path / "from_ckpt"))
    ck = load_lightning_checkpoint(last)
    ema_state = {
        k[len("ema.module.") :]: v for k, v in ck["state_dict"].items() if k.startswith("ema.module.")
    }
    for k, v in exported.state_dict().items():
        assert torch.equal(v, ema_state[k]), k


def test_input_and_output_resolution_differ(image_folder, tmp_path):
    """32 px in, 64 px out: the DataModule adds a 64 px target cut from the same crop."""
    torch.manual_seed(0)
    module = Stage1DecoderModule(
        model_name="uae_test",
        model_overrides={"decoder_patch_size": 8},
        ema_decay=None,
        log_images_every_n_steps=0,
    )
    assert module.model.config.output_size == 64
    dm = make_data(image_folder, val_fraction=0.0)
    trainer = make_trainer(tmp_path, 1)
    trainer.fit(module, dm)
    assert dm.train_set[0]["target"].shape == (3, 64, 64) and dm.train_set[0]["image"].shape == (3, 32, 32)
    assert trainer.global_step == 1


def test_invalid_stage_options(tmp_path, monkeypatch):
    with pytest.raises(ValueError, match="freezes the encoder"):
        Stage1DecoderModule(model_name="uae_test", semantic_weight=0.1)
    with pytest.raises(ValueError, match="noise_std is for stage 3"):
        Stage2SemanticModule(model_name="uae_test", noise_std=0.3)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="vgg16-397923af.pth"):
        Stage1DecoderModule(model_name="uae_test", lpips_weight=1.0)
    m = Stage3GANModule(model_name="uae_test", noise_std=0.3, ema_decay=None)
    assert m.model.modulator.noise_std == 0.3 and m.model.config.noise_std == 0.3


def test_image_grid_rows_and_frozen_parts_stay_frozen(photos32):
    from uae.training.callbacks import image_grid

    torch.manual_seed(0)
    module = Stage1DecoderModule(model_name="uae_test", ema_decay=None, log_images_every_n_steps=0)
    module.train()
    model = module.model
    x = photos32[:3]
    grid = image_grid(model, x, x, num_images=2)
    k, side = model.config.num_bands, model.config.output_size
    assert grid.shape == (3, (k + 1) * (side + 1) + 1, 2 * (side + 1) + 1)  # targets, recon, bands 0..K-2
    assert not model.encoder.training and model.decoder.training  # each part's mode is back
    with torch.no_grad():
        recon = model.eval()(x[:1]).sample.clamp(0, 1)
    row = 1  # the reconstructions
    y0 = row * (side + 1) + 1
    assert torch.allclose(grid[:, y0 : y0 + side, 1 : 1 + side], recon[0], atol=1e-6)


def test_ema_and_gan_stage_refuse_fsdp():
    from types import SimpleNamespace

    from lightning.pytorch.strategies import FSDPStrategy

    from uae.errors import ConfigError
    from uae.training.callbacks import EMAUpdate

    trainer = SimpleNamespace(strategy=FSDPStrategy())
    module = Stage1DecoderModule(model_name="uae_test", ema_decay=0.9, log_images_every_n_steps=0)
    with pytest.raises(ConfigError, match="EMA needs unsharded weights") as e:
        EMAUpdate().setup(trainer, module, "fit")
    assert e.value.param == "ema_decay"
    EMAUpdate().setup(SimpleNamespace(strategy=pl.strategies.SingleDeviceStrategy("cpu")), module, "fit")
    gan = Stage3GANModule(model_name="uae_test", ema_decay=None, log_images_every_n_steps=0)
    gan._trainer = trainer
    with pytest.raises(ConfigError, match="does not support FSDP") as e:
        gan.setup("fit")
    assert e.value.param == "strategy"


def test_export_checkpoint_names_the_model_and_picks_the_weights(tmp_path):
    torch.manual_seed(0)
    raw, ema = uae.create_model("uae_test"), uae.create_model("uae_test")
    state = {f"model.{k}": v for k, v in raw.state_dict().items()}
    state |= {f"ema.module.{k}": v for k, v in ema.state_dict().items()}
    ckpt = tmp_path / "last.ckpt"
    torch.save({"uae_config": raw.config.to_dict(), "state_dict": state, "global_step": 3}, ckpt)
    named = uae.UAE.from_pretrained(export_checkpoint(ckpt, tmp_path / "a", name="cats"))
    assert named.config.name == "cats"
    assert all(torch.equal(v, ema.state_dict()[k]) for k, v in named.state_dict().items())
    unnamed = uae.UAE.from_pretrained(export_checkpoint(ckpt, tmp_path / "b", ema=False))
    assert unnamed.config.name == raw.config.name
    assert all(torch.equal(v, raw.state_dict()[k]) for k, v in unnamed.state_dict().items())


class GradsAtBatchStart(pl.Callback):
    """Records, at the start of each training step, whether any trainable parameter still holds a gradient."""

    def __init__(self) -> None:
        self.held: list[bool] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.held.append(any(p.grad is not None for p in pl_module.parameters()))


@pytest.mark.parametrize("stage", [Stage2SemanticModule, Stage3GANModule])
def test_gradients_are_released_after_each_step_not_kept_through_the_next_forward(
    stage, image_folder, tmp_path
):
    torch.manual_seed(0)
    kw = {"disc_start": 0} if stage is Stage3GANModule else {}
    module = stage(model_name="uae_test", ema_decay=None, log_images_every_n_steps=0, **kw)
    seen = GradsAtBatchStart()
    make_trainer(tmp_path, 3, [seen]).fit(module, make_data(image_folder, val_fraction=0.0))
    assert seen.held == [False, False, False]  # Lightning alone frees them only before the next backward
