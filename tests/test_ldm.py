"""The latent-diffusion stage (uae.training.latent_diffusion): one Lightning step equals the original src/train.py
step (golden fixture), the originals' schedule and EMA, per-step seeds, option errors."""

from __future__ import annotations

import lightning.pytorch as pl
import pytest
import torch
from conftest import cpu_trainer
from generation_fixtures import GEN, SHIFT, config, max_err, recorded_state
from safetensors.torch import load_file

from uae.convert.dit import convert_dit_state, dit_from_original
from uae.training import LatentDiffusionModule
from uae.training.flow_optim import ParameterEMA, flow_lr_lambda, step_seed

# Training without a validation loader is the point of these tests.
pytestmark = pytest.mark.filterwarnings("ignore:You defined a `validation_step` but have no `val_dataloader`")


class _Batches(torch.utils.data.Dataset):
    def __init__(self, x: torch.Tensor, y: torch.Tensor) -> None:
        self.x, self.y = x, y

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> dict:
        return {"latent": self.x[i], "label": self.y[i]}


def _trainer(tmp_path, max_steps: int = 1) -> pl.Trainer:
    return cpu_trainer(tmp_path, max_steps, enable_checkpointing=False)


def test_one_lightning_step_matches_the_originals_train_py(tmp_path, monkeypatch) -> None:
    """uae's module through Trainer.fit on the fixture's batch and draws: loss, grad norm, weights and the
    EMA's change equal the recorded src/train.py step (fixture README: fp32, AdamW fused, clip 1.0, linear
    schedule constant during its 40 warm-up epochs, update_ema 0.9995, every parameter trained)."""
    ref = load_file(str(GEN / "rae" / "train_step.safetensors"))
    original = torch.load(GEN / "rae" / "stage2_model.pt", weights_only=True)
    cfg = config("rae")
    dit_from_original(original, cfg).save_pretrained(tmp_path / "start")
    module = LatentDiffusionModule(
        pretrained=str(tmp_path / "start"),
        time_shift_dim=196608,
        lr=2e-4,
        final_lr=2e-5,
        warmup_epochs=40,
        decay_end_epoch=800,
        ema_decay=0.9995,
        grad_clip=1.0,
        log_images_every_n_steps=0,
    )
    assert module.shift == pytest.approx(SHIFT)
    monkeypatch.setattr(module, "step_seed", lambda batch_idx: 10)  # the fixture's torch.manual_seed(10)
    seen = {}

    class Record(pl.Callback):
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            seen.update(loss=float(outputs["loss"]), lr=trainer.optimizers[0].param_groups[0]["lr"])
            seen["grad_norm"] = float(trainer.callback_metrics["train/grad_norm"])

    trainer = _trainer(tmp_path)
    trainer.callbacks.append(Record())
    loader = torch.utils.data.DataLoader(_Batches(ref["x1"], ref["y"]), batch_size=4)
    trainer.fit(module, loader)
    assert abs(seen["loss"] - float(ref["loss"])) < 1e-5
    assert abs(seen["grad_norm"] - float(ref["grad_norm"])) < 1e-4
    assert float(ref["lr"]) == pytest.approx(2e-4)

    before = convert_dit_state(original, cfg)
    after, ema_after = (recorded_state(ref, original, k, cfg) for k in ("model.", "ema."))
    for key, value in module.model.state_dict().items():
        # one AdamW step moves a weight by ~2e-4 (the lr), and by lr * g / (|g| + eps) where |g| is near eps:
        # there other torch releases' rounding of g shows (up to 7.3e-6 with torch 2.10; < 1e-6 as recorded)
        assert max_err(value, after[key]) < 2e-5, key
        if "rope" not in key:
            assert max_err(value, before[key]) > 1e-5, (
                key
            )  # moved: pos_embed and the Fourier weights train too
    for key, value in module.ema.module.state_dict().items():
        # the EMA's change (5e-4 of the step, ~1e-7): within one float32 ulp of the weights (1.5e-8 at 0.2),
        # which other torch releases' rounding of the step can flip
        assert max_err(value - before[key], ema_after[key] - before[key]) < 3e-8, key


def test_draws_follow_the_originals_order_and_differ_by_step_and_rank() -> None:
    """One CPU generator gives the noise, then the times, then the label dropout (the fixture's draws)."""
    module = LatentDiffusionModule(
        model_name="dit_dh_test", time_shift_dim=196608, log_images_every_n_steps=0
    )
    ref = load_file(str(GEN / "rae" / "train_step.safetensors"))
    x1, y = ref["x1"], ref["y"]
    noise, t, labels = module.draw(x1, y, 10)
    assert torch.equal(noise, ref["noise"]) and max_err(t, ref["t"]) < 1e-7
    assert labels.tolist() == [0, 10, 5, 8] == ref["y_model"].tolist()  # seed 10 drops label 1 (dropout 0.1)
    _, _, kept = module.draw(x1, y, 10, dropout=False)
    assert torch.equal(kept, y)
    seeds = {step_seed(0, s, m, r) for s in range(3) for m in range(2) for r in range(2)}
    assert len(seeds) == 12 and step_seed(0, 1, 0, 0) == step_seed(0, 1, 0, 0)
    assert step_seed(0, 1, 0, 0, stream=1) != step_seed(0, 1, 0, 0)


def test_schedule_is_the_originals() -> None:
    kw = {"warmup_steps": 40, "decay_end_steps": 800, "final_ratio": 0.1}
    assert (
        flow_lr_lambda(0, **kw) == flow_lr_lambda(39, **kw) == 1.0
    )  # constant "warm-up" (warmup_from_zero false)
    assert flow_lr_lambda(420, **kw) == pytest.approx(0.55)  # linear half-way
    assert flow_lr_lambda(800, **kw) == flow_lr_lambda(10**6, **kw) == pytest.approx(0.1)
    assert flow_lr_lambda(9, **kw, warmup_from_zero=True) == pytest.approx(10 / 40)
    assert flow_lr_lambda(420, **kw, schedule="cosine") == pytest.approx(0.55)
    assert flow_lr_lambda(230, **kw, schedule="cosine") > flow_lr_lambda(230, **kw)
    assert flow_lr_lambda(10**6, **kw, schedule="constant") == 1.0


def test_parameter_ema_is_update_ema_from_the_first_step() -> None:
    torch.manual_seed(0)
    net = torch.nn.Linear(3, 2)
    ema = ParameterEMA(net, 0.9)
    start = [p.detach().clone() for p in net.parameters()]
    with torch.no_grad():
        for p in net.parameters():
            p.add_(1.0)
    ema.update(net, step=1)  # timm's ModelEmaV3 would copy the model at step 1
    for e, p0, p in zip(ema.module.parameters(), start, net.parameters()):
        assert torch.equal(e, p0.clone().mul_(0.9).add_(p, alpha=1 - 0.9))
        assert not e.requires_grad


def test_train_all_parameters_and_options() -> None:
    fixed = LatentDiffusionModule(
        model_name="dit_dh_test", train_all_parameters=False, log_images_every_n_steps=0
    )
    frozen = {n for n, p in fixed.model.named_parameters() if not p.requires_grad}
    assert frozen == {"pos_embed", "t_embed.freqs"}
    everything = LatentDiffusionModule(model_name="dit_dh_test", log_images_every_n_steps=0)
    assert all(p.requires_grad for p in everything.model.parameters())
    assert not any(p.requires_grad for p in everything.ema.parameters())
    for kw, param in (
        ({"schedule": "step"}, "schedule"),
        ({"ema_decay": 1.5}, "ema_decay"),
        ({"time_dist": "normal"}, "time_dist"),
        ({"model_name": "uae_test"}, "model_name"),
        ({"time_shift_dim": 1024}, "shift_dim"),  # below 4096: the originals refuse a shift < 1
    ):
        with pytest.raises(ValueError) as e:  # ConfigError / InputError
            LatentDiffusionModule(**{"model_name": "dit_dh_test", **kw})
        assert e.value.param == param


def test_fsdp_refuses_the_ema_and_exports_the_gathered_weights(tmp_path, monkeypatch) -> None:
    """Under FSDP (sharded weights) the EMA is refused, as for the image stages; the export at the end of fit
    is built from the strategy's gathered state dict on rank 0."""
    from types import SimpleNamespace

    from lightning.pytorch.strategies import FSDPStrategy

    from uae.models.dit import DiTDH
    from uae.training.callbacks import EMAUpdate

    with_ema = LatentDiffusionModule(model_name="dit_dh_test", log_images_every_n_steps=0)
    with pytest.raises(ValueError, match="EMA needs unsharded weights"):
        EMAUpdate().setup(SimpleNamespace(strategy=FSDPStrategy()), with_ema, "fit")
    module = LatentDiffusionModule(
        model_name="dit_dh_test", ema_decay=None, export_dir=str(tmp_path / "export")
    )
    with torch.no_grad():
        module.model.final.linear.weight.add_(1.0)  # differs from a fresh model
    strategy = FSDPStrategy()
    monkeypatch.setattr(strategy, "lightning_module_state_dict", lambda: module.state_dict())
    module._trainer = SimpleNamespace(strategy=strategy, is_global_zero=True)
    module.on_train_end()
    exported = DiTDH.from_pretrained(tmp_path / "export").state_dict()
    for key, value in module.model.state_dict().items():
        assert torch.equal(exported[key], value), key
