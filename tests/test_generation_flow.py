"""Flow matching (uae.generation.flow): the path, the time shift, the loss and one training step of the originals."""

from __future__ import annotations

import copy

import pytest
import torch
from generation_fixtures import GEN, SHIFT, TOL, config, max_err, model, recorded_state, reference
from safetensors.torch import load_file

from uae.convert.dit import convert_dit_state, dit_from_original
from uae.errors import InputError
from uae.generation.flow import (
    drop_labels,
    flow_matching_loss,
    interpolate,
    sample_training_times,
    shift_times,
    time_shift,
    velocity_from_x_start,
)


def test_time_shift() -> None:
    assert time_shift(196608) == pytest.approx(SHIFT) and SHIFT == pytest.approx(6.9282, abs=1e-4)
    assert time_shift(786432) == pytest.approx(13.856, abs=1e-3)  # 32x32x768 at 512 px
    with pytest.raises(InputError, match="below 1"):
        time_shift(48 * 8 * 8)
    t = torch.tensor([0.0, 0.25, 1.0])
    assert torch.equal(shift_times(t, 1.0), t)
    shifted = shift_times(t, SHIFT)
    assert shifted[0] == 0 and shifted[2] == 1 and shifted[1] > 0.25  # towards the noise end


def test_linear_path() -> None:
    x, noise = torch.randn(2, 3, 4, 4), torch.randn(2, 3, 4, 4)
    xt, ut = interpolate(x, noise, torch.tensor([0.0, 1.0]))
    assert torch.equal(xt[0], x[0]) and torch.equal(xt[1], noise[1]) and torch.equal(ut, noise - x)
    t = torch.tensor([0.3, 0.7])
    xt, ut = interpolate(x, noise, t)
    assert torch.allclose(velocity_from_x_start(x, xt, t), ut, atol=1e-5)  # an exact clean prediction


@torch.no_grad()
def test_losses_match_the_original() -> None:
    ref = reference("rae")
    loss = flow_matching_loss(
        model("rae"), ref["loss.x1"], ref["loss.y"], t=ref["loss.t"], noise=ref["loss.noise"]
    )
    assert max_err(loss, ref["loss.per_sample"]) < TOL
    gen = torch.Generator().manual_seed(21)  # the originals' draw order: noise, then times
    assert torch.equal(torch.randn(ref["loss.x1"].shape, generator=gen), ref["loss.noise"])
    assert max_err(sample_training_times(3, shift=SHIFT, generator=gen), ref["loss.t"]) < 1e-7
    ref = reference("authors")
    loss = flow_matching_loss(
        model("authors"),
        ref["loss_xstart.x1"],
        ref["loss_xstart.y"],
        t=ref["loss_xstart.t"],
        noise=ref["loss_xstart.noise"],
        prediction="x",
    )
    assert max_err(loss, ref["loss_xstart.per_sample"]) < TOL
    gen = torch.Generator().manual_seed(31)
    torch.randn(ref["loss_xstart.x1"].shape, generator=gen)
    times = sample_training_times(2, shift=SHIFT, prediction="x", generator=gen)
    assert max_err(times, ref["loss_xstart.t"]) < 1e-7


def test_training_times() -> None:
    gen = torch.Generator().manual_seed(0)
    t = sample_training_times(4096, time_dist="logit-normal_0_1", generator=gen)
    assert t.min() >= 0 and t.max() <= 0.999 and abs(float(t.median()) - 0.5) < 0.05
    assert (
        float(sample_training_times(4096, time_dist="logit-normal_0_1", shift=SHIFT, generator=gen).median())
        > 0.8
    )
    for bad in ("normal", "logit-normal_0", "logit-normal_0_-1"):
        with pytest.raises(InputError, match="time_dist"):
            sample_training_times(2, time_dist=bad)


def test_drop_labels() -> None:
    y = torch.arange(6)
    assert torch.equal(drop_labels(y, prob=0.0, null_class=10), y)
    assert torch.equal(drop_labels(y, prob=1.0, null_class=10), torch.full((6,), 10))
    gen = torch.Generator().manual_seed(1)
    a = drop_labels(y, prob=0.5, null_class=10, generator=gen)
    assert set(a.tolist()) <= set(range(6)) | {10} and (a == 10).any() and (a != 10).any()


def test_one_training_step_matches_the_originals_train_py() -> None:
    """The recipe of src/train.py (fixture README): same draws from one CPU generator, AdamW, clip, EMA."""
    ref = load_file(str(GEN / "rae" / "train_step.safetensors"))
    original = torch.load(GEN / "rae" / "stage2_model.pt", weights_only=True)
    cfg = config("rae")
    net = dit_from_original(original, cfg)
    ema = copy.deepcopy(net)
    net.train().requires_grad_(True)  # train.py trains every parameter (pos_embed, Fourier weights too)
    opt = torch.optim.AdamW(
        net.parameters(), lr=2e-4, betas=(0.9, 0.95), weight_decay=0.0, eps=1e-8, fused=True
    )
    gen = torch.Generator().manual_seed(10)
    noise = torch.randn(ref["x1"].shape, generator=gen)
    t = sample_training_times(4, time_dist="logit-normal_0_1", shift=SHIFT, generator=gen)
    y = drop_labels(ref["y"], prob=cfg.class_dropout_prob, null_class=cfg.null_class, generator=gen)
    assert torch.equal(noise, ref["noise"]) and torch.equal(y, ref["y_model"])
    assert max_err(t, ref["t"]) < 1e-7
    loss = flow_matching_loss(net, ref["x1"], y, t=t, noise=noise).mean()
    loss.backward()
    grad_norm = torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
    opt.step()
    with torch.no_grad():
        for e, p in zip(ema.parameters(), net.parameters()):
            e.mul_(0.9995).add_(p, alpha=1 - 0.9995)
    assert (
        abs(float(loss.detach()) - float(ref["loss"])) < 1e-5
        and abs(float(grad_norm) - float(ref["grad_norm"])) < 1e-4
    )

    before = convert_dit_state(original, cfg)
    after, ema_after = (recorded_state(ref, original, k, cfg) for k in ("model.", "ema."))
    for key, value in net.state_dict().items():
        # one AdamW step moves a weight by ~2e-4 (the lr), and by lr * g / (|g| + eps) where |g| is near eps:
        # there other torch releases' rounding of g shows (up to 7.3e-6 with torch 2.10; < 1e-6 as recorded)
        assert max_err(value, after[key]) < 2e-5, key
        assert max_err(value, before[key]) > 1e-5, key  # the step moved it
    for key, value in ema.state_dict().items():
        # the EMA's change (5e-4 of the step, ~1e-7): within one float32 ulp of the weights (1.5e-8 at 0.2),
        # which other torch releases' rounding of the step can flip
        assert max_err(value - before[key], ema_after[key] - before[key]) < 3e-8, key
