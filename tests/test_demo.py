"""The embedded demo checkpoint (checkpoints/uae_demo): loads offline and beats bicubic on a held-out photo."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import uae
from uae.cli import main
from uae.inference import bicubic_round_trip, load_image, psnr
from uae.models.pretrained import checkpoint_root, get_pretrained_cfg
from uae.models.registry import get_entry

DEMO = Path(__file__).resolve().parents[1] / "checkpoints" / "uae_demo"
HELDOUT = Path(__file__).parent / "assets" / "chelsea.png"  # skimage's chelsea: held out of the demo's data
MARGIN_DB = 6.0  # measured: 34.9 dB vs 21.3 dB on tests/assets/chelsea.png


@pytest.fixture(scope="module")
def demo():
    return uae.create_model("uae_demo", pretrained=True)


def test_demo_is_embedded_and_registered(monkeypatch):
    monkeypatch.delenv("UAE_CHECKPOINT_DIR", raising=False)
    assert get_entry("uae_demo").pretrained_tags == ["embedded"]
    assert "uae_demo.embedded" in uae.list_models(pretrained=True)
    cfg = get_pretrained_cfg("uae_demo")
    assert cfg.source == "uae" and checkpoint_root() / cfg.local_dir == DEMO
    size = (DEMO / "model.safetensors").stat().st_size
    assert 1e6 < size < 10e6  # a few MB
    card = (DEMO / "README.md").read_text()
    for needle in ("recipes/demo.yaml", "PSNR", "SSIM", "random", "teacher", "bicubic", "chelsea"):
        assert needle in card, needle


def test_demo_config_is_the_registered_one(demo):
    assert demo.config == uae.get_config("uae_demo")
    assert not demo.training
    assert (demo.config.img_size, demo.config.output_size, demo.config.latent_shape) == (64, 64, (128, 8, 8))


def test_demo_beats_bicubic_on_a_heldout_photo(demo):
    x = load_image(HELDOUT, 64)["image"][None]
    with torch.no_grad():
        rec = demo(x).sample
    ours = float(psnr(rec, x))
    grid = float(psnr(bicubic_round_trip(x, demo.config.grid_size), x))
    assert ours > grid + MARGIN_DB, (ours, grid)


def test_demo_metrics_file_records_the_margin():
    metrics = json.loads((DEMO / "metrics.json").read_text())["heldout"]
    assert metrics["uae"]["psnr"] > metrics["bicubic_grid"]["psnr"] + MARGIN_DB
    assert metrics["bicubic_grid"]["side"] == 8


def test_reconstruct_cli_uses_the_demo_by_default(tmp_path, capsys):
    assert main(["reconstruct", str(HELDOUT), "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "uae_demo" in out and (tmp_path / "chelsea.png").is_file() and (tmp_path / "bands.png").is_file()
