"""Linear probe: feature caching, the BN+linear head, and learning a separable toy labelling."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from PIL import Image

from uae.evaluation.common import build_dataset
from uae.evaluation.features import extract_features, feature_fingerprint, parse_pool
from uae.evaluation.probe import LinearProbe, evaluate_head, parse_band, split_indices, train_probe

ASSETS = Path(__file__).parent / "assets"


def make_toy_folders(root: Path, n_train: int = 4, n_val: int = 2, seed: int = 0) -> tuple[Path, Path]:
    """Class = which bundled photo; samples = random crops / flips / brightness of it (train and val differ)."""
    g = torch.Generator().manual_seed(seed)
    photos = sorted(ASSETS.glob("*.png"))
    for split, n in (("train", n_train), ("val", n_val)):
        for p in photos:
            d = root / split / p.stem
            d.mkdir(parents=True)
            im = Image.open(p).convert("RGB")
            for i in range(n):
                s = int(torch.randint(80, 128, (1,), generator=g))
                x, y = (int(v) for v in torch.randint(0, 128 - s + 1, (2,), generator=g))
                crop = im.crop((x, y, x + s, y + s))
                if torch.rand(1, generator=g) < 0.5:
                    crop = crop.transpose(Image.FLIP_LEFT_RIGHT)
                factor = float(0.8 + 0.4 * torch.rand(1, generator=g))
                crop = Image.eval(crop, lambda v, f=factor: min(255, int(v * f)))
                crop.save(d / f"{i}.png")
    return root / "train", root / "val"


def test_probe_learns_separable_toy_labelling_above_chance(tiny_model, tmp_path):
    train_dir, val_dir = make_toy_folders(tmp_path / "toy")
    train = build_dataset(train_dir, 32, labels=True)
    val = build_dataset(val_dir, 32, labels=True)
    assert train.classes == val.classes and len(train.classes) == 4
    xtr, ytr = extract_features(tiny_model, train, band=0, batch_size=8, progress=False)
    xva, yva = extract_features(tiny_model, val, band=0, batch_size=8, progress=False)
    assert xtr.shape == (16, 32) and xva.shape == (8, 32)
    head, res = train_probe(
        xtr, ytr, xva, yva, num_classes=4, epochs=25, batch_size=16, progress=False, accelerator="cpu"
    )
    assert res["chance"] == 0.25
    assert res["train_top1"] == 1.0
    assert res["top1"] >= 0.75, res  # well above the 25 % chance level
    assert res["top5"] is None and res["top5_k"] is None  # no top-5 with 4 classes: it would always be 100 %
    assert res["majority_rate"] == 0.25  # balanced: always answering one class is chance
    assert res["num_train"] == 16 and res["num_val"] == 8


def test_head_is_batchnorm_without_affine_plus_linear():
    torch.manual_seed(0)
    centers = torch.randn(3, 10) * 3
    y = torch.arange(60) % 3
    x = centers[y] + 0.3 * torch.randn(60, 10)
    head, res = train_probe(
        x[:45], y[:45], x[45:], y[45:], epochs=10, batch_size=45, progress=False, accelerator="cpu"
    )
    bn, lin = head.head
    assert isinstance(bn, torch.nn.BatchNorm1d) and bn.weight is None and bn.bias is None
    assert isinstance(lin, torch.nn.Linear) and lin.out_features == 3
    assert res["top1"] == 1.0 and res["optimizer"] == "sgd"
    assert evaluate_head(head, x[45:], y[45:])["top1"] == 1.0


def test_lars_adapts_the_weight_and_reduces_the_loss():
    from timm.optim import Lars

    torch.manual_seed(0)
    y = torch.arange(64) % 4
    x = torch.randn(4, 16)[y] * 2 + 0.3 * torch.randn(64, 16)
    head = LinearProbe(16, 4, optimizer="lars", lr=10.0, max_epochs=1, steps_per_epoch=200)
    opt = head.configure_optimizers()["optimizer"]
    assert isinstance(opt, Lars)
    assert [g["always_adapt"] for g in opt.param_groups] == [True, False]
    loss0 = float(torch.nn.functional.cross_entropy(head(x), y).detach())
    for _ in range(100):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(head(x), y).backward()
        opt.step()
    assert float(torch.nn.functional.cross_entropy(head(x), y).detach()) < 0.5 * loss0


def test_cosine_schedule_warms_up_and_decays():
    head = LinearProbe(4, 2, lr=1.0, warmup_epochs=2, max_epochs=10, steps_per_epoch=5)
    cfg = head.configure_optimizers()
    opt, sched = cfg["optimizer"], cfg["lr_scheduler"]["scheduler"]
    lrs = []
    for _ in range(50):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs[0] == pytest.approx(0.1) and lrs[9] == pytest.approx(1.0)
    assert lrs[10] == pytest.approx(1.0) and lrs[-1] < 0.01
    assert all(a >= b for a, b in zip(lrs[10:], lrs[11:]))


def test_feature_cache_is_written_once_and_reused(tiny_model, image_folder, tmp_path, monkeypatch):
    ds = build_dataset(image_folder, 32)
    cache = tmp_path / "cache" / "f.safetensors"
    fp = feature_fingerprint(model="tiny", band="all")
    f1, y1 = extract_features(
        tiny_model, ds, band="all", batch_size=3, cache_path=cache, fingerprint=fp, progress=False
    )
    assert cache.is_file() and f1.shape == (8, 3 * 32) and y1.tolist() == [0, 0, 0, 0, 1, 1, 1, 1]

    def boom(*a, **k):
        raise AssertionError("the model must not run when the cache matches")

    monkeypatch.setattr(tiny_model, "features", boom)
    f2, y2 = extract_features(tiny_model, ds, band="all", cache_path=cache, fingerprint=fp, progress=False)
    assert torch.equal(f1, f2) and torch.equal(y1, y2)
    monkeypatch.undo()
    f3, _ = extract_features(
        tiny_model,
        ds,
        band="latent",
        cache_path=cache,
        fingerprint=feature_fingerprint(model="tiny", band="latent"),
        progress=False,
    )
    images = torch.stack([ds[i]["image"] for i in range(8)])
    torch.testing.assert_close(f3, tiny_model.features(images, band="latent"), rtol=1e-4, atol=1e-5)
    # Mean pooling: band 0 (first C of "all") equals the latent, the higher bands have zero mean.
    torch.testing.assert_close(f1[:, :32], f3, rtol=1e-4, atol=1e-5)
    assert f1[:, 32:].abs().max() < 1e-4
    # Grid pooling keeps spatial content: band 0 then differs from the latent.
    g0, _ = extract_features(tiny_model, ds, band=0, pool=2, progress=False)
    gl, _ = extract_features(tiny_model, ds, band="latent", pool=2, progress=False)
    assert g0.shape == (8, 32 * 4) and (g0 - gl).abs().max() > 1e-2
    grid = tiny_model.features(images, band=0, pool=None)
    torch.testing.assert_close(
        g0, torch.nn.functional.adaptive_avg_pool2d(grid, 2).flatten(1), rtol=1e-4, atol=1e-5
    )


def test_parse_band_and_split():
    assert parse_band("0") == 0 and parse_band("all") == "all" and parse_band("LATENT") == "latent"
    with pytest.raises(ValueError, match="band"):
        parse_band("low")
    assert parse_pool("mean") == "mean" and parse_pool("4") == 4
    with pytest.raises(ValueError, match="pool"):
        parse_pool("0")
    labels = [0] * 10 + [1] * 5 + [2] * 1
    tr, va = split_indices(labels, 0.2, seed=1)
    assert sorted(tr + va) == list(range(16)) and not set(tr) & set(va)
    assert sum(labels[i] == 0 for i in va) == 2 and sum(labels[i] == 1 for i in va) == 1
    assert 15 in tr  # a single-image class stays in train
    assert split_indices(labels, 0.2, seed=1) == (tr, va)
    with pytest.raises(ValueError):
        split_indices(labels, 1.5)


def test_probe_rejects_unlabelled_data():
    x = torch.randn(4, 3)
    with pytest.raises(ValueError, match="labelled"):
        train_probe(x, torch.full((4,), -1), x, torch.zeros(4, dtype=torch.long), epochs=1, progress=False)
