"""Losses: pixel, LPIPS (offline error, explicit backbone file), semantic, GAN pieces, schedule."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from uae.networks.lpips import LPIPSLoss, lpips_backbone_path
from uae.training.diffaug import diff_augment
from uae.training.discriminators import DinoDiscriminator, PatchDiscriminator, build_discriminator
from uae.training.losses import (
    adaptive_weight,
    discriminator_loss,
    generator_loss,
    pixel_loss,
    semantic_loss,
)
from uae.training.optim import cosine_schedule


def test_pixel_loss_l1_l2(photos32):
    a, b = photos32[:2], photos32[2:4]
    l1 = (a - b).abs().mean()
    l2 = (a - b).pow(2).mean()
    assert torch.allclose(pixel_loss(a, b), l1)
    assert torch.allclose(pixel_loss(a, b, 0.5, 2.0), 0.5 * l1 + 2.0 * l2)
    assert pixel_loss(a, a) == 0
    with pytest.raises(ValueError, match="differ"):
        pixel_loss(a, b[:, :, :16])


def test_semantic_loss_uses_only_lowest_bands():
    torch.manual_seed(0)
    s = torch.randn(2, 3, 8, 4, 4)
    t = s.clone()
    assert semantic_loss(s, t, 1) == 0
    t[:, 2] += 5.0  # a high band differs: no effect with K_base = 1 or 2
    assert semantic_loss(s, t, 1) == 0 and semantic_loss(s, t, 2) == 0
    assert torch.allclose(semantic_loss(s, t, 3), torch.tensor(25.0 / 3))
    t[:, 0] += 1.0
    assert torch.allclose(semantic_loss(s, t, 1), torch.tensor(1.0))
    assert semantic_loss(s, t, 0) == 0


def test_gan_losses_known_values():
    real, fake = torch.full((4, 1), 2.0), torch.full((4, 1), -2.0)
    assert discriminator_loss(real, fake, "hinge") == 0  # both beyond the margin
    assert torch.allclose(discriminator_loss(-real, -fake, "hinge"), torch.tensor(3.0))
    v = discriminator_loss(real, fake, "vanilla")
    assert torch.allclose(v, torch.nn.functional.softplus(torch.tensor(-2.0)))
    assert generator_loss(fake, "hinge") == 2.0
    assert torch.allclose(generator_loss(fake, "vanilla"), torch.nn.functional.softplus(torch.tensor(2.0)))
    with pytest.raises(ValueError):
        discriminator_loss(real, fake, "wgan")


def test_adaptive_weight_is_grad_norm_ratio():
    torch.manual_seed(0)
    layer = nn.Linear(4, 4)
    x = torch.randn(8, 4)
    y = layer(x)
    rec = y.pow(2).mean()
    gan = 3.0 * y.mean()
    w = adaptive_weight(rec, gan, layer.weight)
    g_rec = torch.autograd.grad(rec, layer.weight, retain_graph=True)[0]
    g_gan = torch.autograd.grad(gan, layer.weight, retain_graph=True)[0]
    assert torch.allclose(w, g_rec.norm() / (g_gan.norm() + 1e-4))
    assert not w.requires_grad
    assert adaptive_weight(rec, gan, layer.weight, max_weight=1e-3) == pytest.approx(1e-3)


def test_diff_augment_shapes_gradients_and_policies(photos32):
    x = photos32.clone().requires_grad_(True)
    g = torch.Generator().manual_seed(0)
    y = diff_augment(x, "color,translation,cutout", generator=g)
    assert y.shape == x.shape and not torch.allclose(y, x)
    y.sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert diff_augment(photos32, "") is photos32
    # Cutout zeroes a square of half the side in every image.
    c = diff_augment(photos32 + 1.0, "cutout", generator=g)
    zero_frac = (c == 0).all(dim=1).float().mean(dim=(1, 2))
    assert bool(((zero_frac > 0.05) & (zero_frac <= 0.26)).all())
    with pytest.raises(ValueError, match="unknown DiffAugment"):
        diff_augment(photos32, "rotate")


def test_patch_discriminator_logits(photos32):
    d = PatchDiscriminator(base_channels=8, num_layers=2)
    out = d(photos32)
    assert out.shape[:2] == (photos32.shape[0], 1) and out.ndim == 4
    assert isinstance(build_discriminator(None, patch_channels=8), PatchDiscriminator)


def test_dino_discriminator_frozen_backbone_trainable_heads(tmp_path, photos32):
    import timm

    kw = {"embed_dim": 32, "depth": 4, "num_heads": 2, "patch_size": 8}
    vit = timm.create_model("vit_small_patch8_224", pretrained=False, num_classes=0, img_size=32, **kw)
    torch.save(vit.state_dict(), tmp_path / "dino.pth")
    d = build_discriminator(str(tmp_path / "dino.pth"), img_size=32, arch_kwargs=kw)
    assert isinstance(d, DinoDiscriminator)
    assert not any(p.requires_grad for p in d.backbone.parameters())
    assert all(p.requires_grad for p in d.heads.parameters())
    assert torch.equal(d.backbone.blocks[0].attn.qkv.weight, vit.blocks[0].attn.qkv.weight)
    d.train()
    assert not d.backbone.training
    out = d(photos32)
    assert out.shape == (photos32.shape[0], len(d.layers) * 16)  # 4x4 tokens per layer
    out.mean().backward()
    assert d.heads[0][0].weight.grad is not None
    with pytest.raises(FileNotFoundError):
        build_discriminator(str(tmp_path / "missing.pth"))


def test_lpips_missing_backbone_is_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    expected = tmp_path / "hub" / "checkpoints" / "vgg16-397923af.pth"
    assert lpips_backbone_path("vgg") == expected
    with pytest.raises(FileNotFoundError, match="vgg16-397923af.pth") as e:
        LPIPSLoss("vgg")
    assert str(expected.parent) in str(e.value) and "lpips_weight: 0" in str(e.value)
    with pytest.raises(FileNotFoundError, match="not found"):
        LPIPSLoss("vgg", backbone_weights=str(tmp_path / "nope.pth"))


def test_lpips_with_explicit_backbone_file(tmp_path, monkeypatch, photos32):
    import torchvision

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty_home"))
    torch.manual_seed(0)
    path = tmp_path / "squeeze.pth"
    ref = torchvision.models.squeezenet1_1()
    torch.save(ref.state_dict(), path)  # stands in for the real ImageNet weights (same keys)
    hub_before = torch.hub.get_dir()
    loss = LPIPSLoss("squeeze", backbone_weights=str(path))
    assert torch.hub.get_dir() == hub_before
    # torch.hub still follows $TORCH_HOME afterwards (nothing pinned for the tests that run later)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "other_home"))
    assert torch.hub.get_dir() == str(tmp_path / "other_home" / "hub")
    assert torch.equal(next(loss.net.net.parameters()), ref.features[0].weight)  # our file was loaded
    assert not any(p.requires_grad for p in loss.parameters())
    a, b = photos32[:2], photos32[2:4]
    assert float(loss(a, a)) == pytest.approx(0.0, abs=1e-6)
    assert float(loss(a, b)) > 0


def test_cosine_schedule_warmup_and_floor():
    vals = [cosine_schedule(s, total=100, warmup=10, min_ratio=0.1) for s in range(101)]
    assert vals[0] == pytest.approx(0.1) and vals[9] == pytest.approx(1.0)
    assert vals[10] == pytest.approx(1.0) and vals[100] == pytest.approx(0.1)
    assert all(a >= b - 1e-12 for a, b in zip(vals[10:], vals[11:]))  # non-increasing after warm-up
    assert vals[55] == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 0.5)))


def test_one_lpips_backbone_resolver(tmp_path, monkeypatch):
    """Training and metrics find the backbone file the same way: explicit file, cache, download, or an error."""
    from uae.errors import InputError, MissingFileError
    from uae.evaluation.metrics import MetricUnavailable, resolve_lpips_backbone
    from uae.networks.lpips import find_lpips_backbone

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    expected = tmp_path / "hub" / "checkpoints" / "alexnet-owt-7be5be79.pth"
    mine = tmp_path / "mine.pth"
    mine.write_bytes(b"x")
    assert find_lpips_backbone("alex", mine) == mine
    with pytest.raises(MissingFileError, match="alexnet-owt-7be5be79.pth") as e:
        find_lpips_backbone("alex")
    assert str(expected.parent) in str(e.value)
    with pytest.raises(MetricUnavailable, match="alexnet-owt-7be5be79.pth.*downloads disabled"):
        resolve_lpips_backbone("alex", allow_download=False)
    monkeypatch.setattr("uae.online.may_download", lambda url: url.endswith(expected.name))
    assert find_lpips_backbone("alex", allow_download=True) == expected  # torchvision downloads it there
    assert resolve_lpips_backbone("alex", allow_download=True) is None
    monkeypatch.setattr("uae.online.may_download", lambda url: False)
    with pytest.raises(MetricUnavailable, match="offline"):
        resolve_lpips_backbone("alex", allow_download=True)
    expected.parent.mkdir(parents=True)
    expected.write_bytes(b"x")
    assert find_lpips_backbone("alex") == expected  # cached: no network asked
    with pytest.raises(InputError, match="lpips_net must be one of") as e:
        resolve_lpips_backbone("resnet")
    assert e.value.param == "lpips_net"


def test_clipping_under_fsdp_goes_through_the_sharded_module():
    from lightning.pytorch.strategies import DDPStrategy, FSDPStrategy

    from uae.training.optim import clip_grad_norm

    layer = nn.Linear(4, 4)
    layer(torch.ones(2, 4)).sum().backward()
    full = torch.cat([p.grad.flatten() for p in layer.parameters()]).norm()

    class Sharded(nn.Module):
        def clip_grad_norm_(self, max_norm: float) -> torch.Tensor:
            return torch.tensor(-max_norm)  # stands in for FSDP's collective norm

    fsdp = FSDPStrategy()
    fsdp.model = Sharded()
    assert clip_grad_norm(list(layer.parameters()), 0.5, fsdp) == -0.5
    assert torch.allclose(torch.cat([p.grad.flatten() for p in layer.parameters()]).norm(), full)  # untouched
    assert torch.allclose(clip_grad_norm(list(layer.parameters()), 0.5, DDPStrategy()), full)
    assert torch.cat([p.grad.flatten() for p in layer.parameters()]).norm() == pytest.approx(0.5, rel=1e-4)


def test_param_groups_decay_matrices_only():
    from uae.training.optim import param_groups

    named = [
        ("blocks.0.weight", nn.Parameter(torch.ones(3, 3))),
        ("blocks.0.bias", nn.Parameter(torch.ones(3))),
        ("pos_embed", nn.Parameter(torch.ones(1, 4, 3))),
        ("reg_token", nn.Parameter(torch.ones(1, 1, 3))),
    ]
    decay, no_decay = param_groups(named, lr=0.1, weight_decay=0.05)
    assert [id(p) for p in decay["params"]] == [id(named[0][1])] and decay["weight_decay"] == 0.05
    assert [id(p) for p in no_decay["params"]] == [id(p) for _, p in named[1:]] and no_decay[
        "weight_decay"
    ] == 0
    assert len(param_groups(named[:1], lr=0.1, weight_decay=0.05)) == 1
