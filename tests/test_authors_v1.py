"""The authors' v1 release: their band split (``band_scheme="authors_v1"``) and the converter, checked
stage by stage against golden outputs of their original code (tests/fixtures/authors_v1/README.md)."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import uae
from uae.convert.authors_v1 import (
    RELEASE_FILES,
    generate_schedule,
    load_release,
    schedule_from_config,
    v1_preprocess,
)
from uae.layers.bands import build_band_scheme
from uae.layers.bands.authors_v1 import authors_v1_band_masks, authors_v1_radii

FIXTURES = Path(__file__).parent / "fixtures" / "authors_v1"
HEADS = {"encoder_heads": 2, "decoder_heads": 2}  # the fixture's (not visible in the weights)
RELEASED = (0.32, 16.0)
ATOL = 1e-5


@pytest.fixture(scope="module")
def golden() -> dict[str, torch.Tensor]:
    return load_file(str(FIXTURES / "tensors.safetensors"))


@pytest.fixture(scope="module")
def converted() -> uae.UAE:
    return load_release({"checkpoint": FIXTURES / "checkpoint.pt"}, **HEADS)


def _max_err(a: torch.Tensor, b: torch.Tensor) -> float:
    assert a.shape == b.shape, (a.shape, b.shape)
    return (a - b).abs().max().item()


# ---------------------------------------------------------------------------------------------- the band scheme
def test_released_schedule_on_16x16_band0_is_the_dc_term_alone():
    masks = authors_v1_band_masks(16, 16, 2, RELEASED)  # (K, H, W//2+1) on the real-FFT half spectrum
    assert masks.shape == (2, 16, 9)
    assert masks[0].sum() == 1 and masks[0, 0, 0] == 1  # radius 0.32 / 16 * 8 = 0.16: DC only
    assert masks[1, 0, 0] == 0 and masks[1, 0, 1] == 1 and masks[1, 8, 0] == 1  # ring 1 up to radius 8
    torch.testing.assert_close(authors_v1_radii(RELEASED, 2, 16, 16), torch.tensor([0.0, 0.16, 8.0]))


def test_corner_frequencies_belong_to_no_band_and_are_dropped():
    # Full 16x16 spectrum: integer frequencies -8..7 per axis; radius > 8 is outside every ring.
    f = torch.arange(-8, 8, dtype=torch.float32)
    outside = (f[:, None] ** 2 + f[None, :] ** 2).sqrt() > 8
    assert int(outside.sum()) == 61
    masks = authors_v1_band_masks(16, 16, 2, RELEASED)
    mult = torch.full((9,), 2.0)
    mult[0] = mult[-1] = 1.0  # half-spectrum columns 0 and 8 appear once in the full spectrum
    assert int((masks.sum(0) * mult).sum()) == 256 - 61
    assert masks.sum(0).max() == 1  # inclusive boundaries never count a frequency twice

    proj = build_band_scheme(2, grid_size=16, scheme="authors_v1", schedule=RELEASED)
    y, x = torch.meshgrid(torch.arange(16.0), torch.arange(16.0), indexing="ij")
    corner = torch.cos(torch.pi * (y + x) * 6 / 8)[None, None]  # frequency (6, 6): radius 8.49
    inside = torch.cos(2 * torch.pi * (3 * y + 5 * x) / 16)[None, None]  # (3, 5): radius 5.83
    assert proj(corner).abs().max() < 1e-5
    torch.testing.assert_close(proj(inside).sum(1), inside, atol=1e-5, rtol=0)
    torch.testing.assert_close(proj(inside)[:, 0], torch.zeros_like(inside), atol=1e-6, rtol=0)


@pytest.mark.parametrize("hw", [(16, 16), (15, 15), (8, 12), (32, 32)])
@pytest.mark.parametrize("schedule", [RELEASED, (1.0, 4.0, 9.0, 16.0), (4.0, 8.0, 16.0), None])
def test_fused_split_equals_their_literal_iteration(hw, schedule):
    k = 3 if schedule is None else len(schedule)
    proj = build_band_scheme(k, grid_size=hw[0], scheme="authors_v1", schedule=schedule)
    z = torch.randn(2, 4, *hw, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(proj(z), proj.split_iterative(z), atol=2e-6, rtol=0)


def test_scheme_equals_the_original_bands(golden):
    proj = build_band_scheme(2, grid_size=16, scheme="authors_v1", schedule=RELEASED)
    for tag in ("224", "256"):
        assert _max_err(proj(golden[f"latent_{tag}"]), golden[f"bands_{tag}"]) < ATOL
        assert _max_err(proj.split_iterative(golden[f"latent_{tag}"]), golden[f"bands_{tag}"]) < ATOL


def test_schedule_config_is_validated_and_round_trips(tmp_path):
    base = uae.create_model("uae_test").config
    cfg = base.replace(band_scheme="authors_v1", num_bands=2, band_schedule=[0.32, 16.0])
    assert cfg.band_schedule == RELEASED  # lists (JSON/YAML) become tuples
    for bad, match in (
        ({"band_schedule": (0.32, 8.0, 16.0)}, "needs num_bands=2"),
        ({"band_schedule": (16.0, 0.32)}, "non-decreasing"),
        ({"band_schedule": (0.0, 0.0)}, "end above 0"),
        ({"band_transform": "dct"}, "runs on the FFT"),
        ({"band_scheme": "smooth"}, "only used by band_scheme='authors_v1'"),
        ({"decoder_norm_eps": 0.0}, "decoder_norm_eps"),
    ):
        with pytest.raises(ValueError, match=match):
            cfg.replace(**bad)
    assert base.band_schedule is None and base.decoder_norm_eps is None  # existing models unchanged
    model = uae.UAE(cfg).eval()
    model.save_pretrained(tmp_path / "m")
    again = uae.UAE.from_pretrained(tmp_path / "m")
    assert again.config == cfg
    x = torch.rand(1, 3, 32, 32)
    assert torch.equal(again(x).sample, model(x).sample)


def test_their_default_schedule_generator():
    assert generate_schedule(0.32, 2, 16.0) == [0.32, 16.0]
    s = generate_schedule(1.0, 4, 16.0)
    assert s[0] == 1.0 and s[-1] == 16.0 and s[1] == pytest.approx((1 + 255 / 3) ** 0.5)
    assert schedule_from_config({"v_patch_nums": [0.32, 16.0], "freq_num_bands": 7}) == RELEASED
    assert schedule_from_config({"freq_num_bands": 3, "freq_first_patch": 2.0}) == tuple(
        generate_schedule(2.0, 3, 16.0)
    )
    with pytest.raises(ValueError, match="FFT projector"):
        schedule_from_config({"residual_projector": "learned_conv"})


# ---------------------------------------------------------------------------------------------- the converter
def test_converted_config_follows_the_checkpoint(converted):
    c = converted.config
    assert (c.band_scheme, c.band_schedule, c.num_bands, c.decoder_norm_eps) == (
        "authors_v1",
        RELEASED,
        2,
        1e-12,
    )
    assert (c.img_size, c.grid_size, c.output_size, c.band_mixing, c.latent_norm) == (224, 16, 64, True, True)
    assert RELEASE_FILES == {"checkpoint": True, "config": False}


@pytest.mark.parametrize("tag", ["224", "256"])
def test_each_stage_matches_the_original(converted, golden, tag):
    """Native 224 px, and their evaluation's 256 px crops (which their encode resizes to 224)."""
    x = golden[f"input_{tag}"].float() / 255.0
    with torch.no_grad():
        out = converted(v1_preprocess(x, converted.config.img_size))
        # Each later stage also on the original's own input to it (isolates the stages).
        bands = converted.split(golden[f"latent_{tag}"])
        fused = converted.fuse(golden[f"bands_{tag}"])
        image = converted.render(golden[f"fused_{tag}"])
    assert _max_err(out.latent, golden[f"latent_{tag}"]) < ATOL
    assert _max_err(out.bands, golden[f"bands_{tag}"]) < ATOL
    assert _max_err(out.fused, golden[f"fused_{tag}"]) < ATOL
    assert _max_err(out.sample, golden[f"image_{tag}"]) < ATOL  # [0, 1] pixels
    assert _max_err(bands, golden[f"bands_{tag}"]) < ATOL
    assert _max_err(fused, golden[f"fused_{tag}"]) < ATOL
    assert _max_err(image, golden[f"image_{tag}"]) < ATOL


def test_non_native_grid_encoder_and_bands_match_the_original(converted, golden):
    """448 px -> 32x32 grid: their pipeline resizes every input to 224, but its encoder (run-time
    position interpolation of the 37x37 table) and its band split (max_radius 16) run at any grid."""
    x = (golden["input_224"].float() / 255.0).repeat_interleave(2, -2).repeat_interleave(2, -1)
    assert converted.config.encoder_pos_grid == 37  # the source table is kept, resampled per input
    with torch.no_grad():
        enc = converted.encode(x)
    assert enc.latent.shape == (1, 32, 32, 32)
    assert _max_err(enc.latent, golden["latent_448"]) < ATOL
    assert _max_err(enc.bands, golden["bands_448"]) < ATOL
    assert _max_err(converted.split(golden["latent_448"]), golden["bands_448"]) < ATOL


def test_uae_smooth_split_would_not_reproduce_them(golden):
    """Guard against the fixture being insensitive to the split: uae's own split is visibly off."""
    smooth = build_band_scheme(2, grid_size=16)
    assert _max_err(smooth(golden["latent_224"]), golden["bands_224"]) > 0.1


def test_ema_entry_is_not_the_default(converted, golden):
    ema = load_release({"checkpoint": FIXTURES / "checkpoint.pt"}, entry="ema", **HEADS)
    x = golden["input_224"].float() / 255.0
    with torch.no_grad():
        assert _max_err(ema(x).sample, golden["image_224"]) > 1e-2
        assert _max_err(converted(x).sample, golden["image_224"]) < ATOL


def test_yaml_config_and_missing_config(tmp_path, golden, caplog):
    obj = torch.load(FIXTURES / "checkpoint.pt", weights_only=True)
    bare = tmp_path / "final.pt"
    torch.save({"model": obj["model"]}, bare)
    x = golden["input_224"].float() / 255.0
    with torch.no_grad():
        via_yaml = load_release({"checkpoint": bare, "config": FIXTURES / "config.yaml"}, **HEADS)
        assert _max_err(via_yaml(x).sample, golden["image_224"]) < ATOL
        with caplog.at_level(logging.WARNING, logger="uae.convert.authors_v1"):
            guessed = load_release({"checkpoint": bare}, **HEADS)  # released schedule for K=2
        assert "no embedded config" in caplog.text
        assert _max_err(guessed(x).sample, golden["image_224"]) < ATOL

    odd = tmp_path / "odd.yaml"
    odd.write_text((FIXTURES / "config.yaml").read_text().replace("- 0.32\n", "- 4.0\n"))
    other = load_release({"checkpoint": bare, "config": odd}, **HEADS)
    assert other.config.band_schedule == (4.0, 16.0)
    big = tmp_path / "big.yaml"
    big.write_text(
        (FIXTURES / "config.yaml").read_text().replace("encoder_input_size: 224", "encoder_input_size: 448")
    )
    with pytest.raises(ValueError, match="encoder_input_size=448"):
        load_release({"checkpoint": bare, "config": big}, **HEADS)


def test_release_file_errors(tmp_path):
    with pytest.raises(ValueError, match="unknown v1 release file role"):
        load_release({"checkpoint": FIXTURES / "checkpoint.pt", "decoder": "x"})
    with pytest.raises(FileNotFoundError, match="nope.pt"):
        load_release({"checkpoint": tmp_path / "nope.pt"})
    with pytest.raises(ValueError, match="no state dict entry 'teacher'"):
        load_release({"checkpoint": FIXTURES / "checkpoint.pt"}, entry="teacher")
    copy = tmp_path / "c.pt"
    shutil.copy(FIXTURES / "checkpoint.pt", copy)
    with pytest.raises(FileNotFoundError, match="missing.yaml"):
        load_release({"checkpoint": copy, "config": tmp_path / "missing.yaml"})
