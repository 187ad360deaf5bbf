"""RAE releases: golden outputs of the original RAE code (tests/fixtures/rae) reproduced stage by stage."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import uae
from uae.cli import main as cli_main
from uae.convert.common import latent_stats, stats_layout
from uae.convert.rae import RAE_DECODER_NORM_EPS, RELEASE_FILES, load_release

FIXTURES = Path(__file__).parent / "fixtures" / "rae"
DECODERS = {"ViTB": 3, "ViTL": 4, "ViTXL": 4}  # decoder heads of the scaled-down configs
STATS = ("none", "per_channel", "per_position")
TOL = 1e-5


@pytest.fixture(scope="module")
def ref() -> dict[str, torch.Tensor]:
    return load_file(str(FIXTURES / "reference.safetensors"))


def release_files(decoder: str, stats: str, encoder: bool = True) -> dict[str, Path]:
    files = {"decoder": FIXTURES / "decoders" / decoder / "model.pt"}
    if encoder:
        files["encoder"] = FIXTURES / "encoder" / "model.safetensors"
    if stats != "none":
        files["stats"] = FIXTURES / "stats" / stats / "stat.pt"
    return files


def convert(decoder: str, stats: str = "none") -> uae.UAE:
    return load_release(
        release_files(decoder, stats), encoder="dinov2", encoder_heads=2, decoder_heads=DECODERS[decoder]
    )


def max_err(a: torch.Tensor, b: torch.Tensor) -> float:
    assert a.shape == b.shape
    return (a - b).abs().max().item()


def test_release_roles():
    assert RELEASE_FILES == {"decoder": True, "stats": False, "encoder": False, "config": False}


def test_encoder_stage_matches_rae_encode(ref):
    model = convert("ViTB")
    c = model.config
    assert (c.img_size, c.output_size, c.grid_size, c.latent_norm) == (24, 32, 8, True)
    with torch.no_grad():
        latent = model.encode(ref["input"]).latent
    assert max_err(latent, ref["latent"]) <= TOL


@pytest.mark.parametrize("stats", ["per_channel", "per_position"])
def test_latent_normalisation_matches_rae(ref, stats):
    model = convert("ViTB", stats)
    shape = (48,) if stats == "per_channel" else (48, 8, 8)
    assert model.config.latent_stats == stats
    assert tuple(model.latent_mean.shape) == shape and tuple(model.latent_std.shape) == shape
    src = torch.load(FIXTURES / "stats" / stats / "stat.pt", weights_only=True)
    assert torch.equal(model.latent_std.reshape(src["var"].shape), torch.sqrt(src["var"] + 1e-5))
    zn = model.normalize_latent(ref["latent"])
    assert max_err(zn, ref[f"latent_normalized.{stats}"]) <= TOL
    assert max_err(model.denormalize_latent(zn), ref["latent"]) <= TOL


@pytest.mark.parametrize("stats", STATS)
@pytest.mark.parametrize("decoder", sorted(DECODERS))
def test_decoder_stage_matches_rae_decode(ref, decoder, stats):
    """Fed RAE's own (normalised) latent, uae's decoder gives RAE's image."""
    model = convert(decoder, stats)
    z = ref["latent"] if stats == "none" else model.denormalize_latent(ref[f"latent_normalized.{stats}"])
    with torch.no_grad():
        image = model.decode(z, clamp=False).sample
    assert max_err(image, ref[f"image.{decoder}.{stats}"]) <= TOL


@pytest.mark.parametrize("stats", STATS)
@pytest.mark.parametrize("decoder", sorted(DECODERS))
def test_end_to_end_matches_rae_forward(ref, decoder, stats):
    """224-in/256-out analogue: 24 px in, 32 px out, each side with its own pre-processing."""
    model = convert(decoder, stats)
    expected = ref[f"image.{decoder}.{stats}"]
    with torch.no_grad():
        assert max_err(model(ref["input"], clamp=False).sample, expected) <= TOL
        assert max_err(model(ref["input"]).sample, expected.clamp(0, 1)) <= TOL
    assert (expected < 0).any() and (expected > 1).any()  # the unclamped comparison is not vacuous


def test_decoder_layernorm_eps_is_raes():
    model = convert("ViTXL")
    norms = [m for m in model.decoder.modules() if isinstance(m, torch.nn.LayerNorm)]
    assert len(norms) == 2 * 2 + 1 and all(m.eps == RAE_DECODER_NORM_EPS == 1e-12 for m in norms)
    default = uae.create_model("uae_test")  # existing models keep uae's eps
    assert default.config.decoder_norm_eps is None
    assert default.decoder.blocks[0].norm1.eps == 1e-5 and default.decoder.norm.eps == 1e-6


def test_per_position_model_saves_and_loads_bit_exact(ref, tmp_path):
    model = convert("ViTL", "per_position")
    model.save_pretrained(tmp_path / "m")
    cfg = json.loads((tmp_path / "m" / "config.json").read_text())
    assert cfg["latent_stats"] == "per_position" and cfg["decoder_norm_eps"] == 1e-12
    loaded = uae.UAE.from_pretrained(tmp_path / "m")
    for k, v in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[k], v), k
    with torch.no_grad():
        assert torch.equal(loaded(ref["input"]).sample, model(ref["input"]).sample)
    cfg["latent_stats"] = "per_channel"  # strict: the buffers' shape follows the config
    (tmp_path / "m" / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(uae.UAELoadError, match="latent_mean"):
        uae.UAE.from_pretrained(tmp_path / "m")


def test_set_latent_stats_shapes():
    model = uae.create_model("uae_test", latent_stats="per_position")  # C=32, 8x8 grid
    mean, std = torch.randn(1, 32, 8, 8), torch.rand(32, 8, 8) + 0.5
    model.set_latent_stats(mean, std)
    assert torch.equal(model.latent_mean, mean[0]) and torch.equal(model.latent_std, std)
    model.set_latent_stats(torch.arange(32.0), torch.ones(32, 1, 1))  # per-channel broadcast over the grid
    assert torch.equal(model.latent_mean[:, 3, 5], torch.arange(32.0))
    z = torch.randn(2, 32, 8, 8)
    assert torch.equal(model.normalize_latent(z), z - torch.arange(32.0).view(1, 32, 1, 1))
    with pytest.raises(ValueError, match=r"per-position latent statistics have shape \(32, 8, 8\)"):
        model.normalize_latent(torch.randn(1, 32, 4, 4))
    per_channel = uae.create_model("uae_test")
    assert tuple(per_channel.latent_mean.shape) == (32,)
    with pytest.raises(ValueError, match="latent_stats='per_position'"):
        per_channel.set_latent_stats(mean, std)
    with pytest.raises(ValueError, match="positive"):
        per_channel.set_latent_stats(torch.zeros(32), -torch.ones(32))


def test_stats_layouts_and_errors():
    c, g = 4, 3
    assert stats_layout({"mean": torch.zeros(c), "var": torch.ones(c, 1, 1)}, c, g) == "per_channel"
    assert stats_layout({"mean": torch.zeros(1, c, g, g), "var": torch.ones(c, 1, 1)}, c, g) == "per_position"
    out = latent_stats({"mean": torch.zeros(1, c, g, g), "var": torch.full((c, 1, 1), 3.0)}, c, 1e-5, g)
    assert out["latent_std"].shape == (c, g, g) and torch.equal(
        out["latent_std"], torch.sqrt(torch.full((c, g, g), 3.0) + 1e-5)
    )
    with pytest.raises(ValueError, match=r"per-position \(4, 3, 3\)"):
        stats_layout({"var": torch.ones(c, 2, 2)}, c, g)
    with pytest.raises(ValueError, match="per-channel"):
        stats_layout({"mean": torch.zeros(c, g, g)}, c)  # converters without a grid (authors v1)


def test_load_release_errors(tmp_path):
    files = release_files("ViTB", "none")
    with pytest.raises(ValueError, match="unknown file role"):
        load_release({**files, "ema": files["decoder"]})
    with pytest.raises(FileNotFoundError, match="decoder"):
        load_release({"encoder": files["encoder"]})
    with pytest.raises(ValueError, match="unknown option"):
        load_release(files, heads=3)
    bad = tmp_path / "stat.pt"
    torch.save({"mean": torch.zeros(48, 4, 4), "var": torch.ones(48, 4, 4)}, bad)
    with pytest.raises(ValueError, match=r"'mean' has shape \(48, 4, 4\)"):
        load_release({**files, "stats": bad}, encoder="dinov2", encoder_heads=2, decoder_heads=3)
    torch.save({"mean": torch.zeros(48), "std": torch.ones(48)}, bad)
    with pytest.raises(ValueError, match="'mean' and 'var'"):
        load_release({**files, "stats": bad}, encoder="dinov2", encoder_heads=2, decoder_heads=3)
    with pytest.raises(FileNotFoundError, match="nope.pt"):
        load_release({"decoder": tmp_path / "nope.pt"})


def test_convert_cli_rae_with_per_position_stats(ref, tmp_path):
    files = release_files("ViTXL", "per_position")
    rc = cli_main(
        [
            "convert", "--from", "rae", str(files["decoder"]), "--out", str(tmp_path / "o"),
            "--encoder", "dinov2", "--encoder-weights", str(files["encoder"]), "--stats", str(files["stats"]),
            "--encoder-heads", "2", "--decoder-heads", "4",
        ]
    )  # fmt: skip
    assert rc == 0
    model = uae.UAE.from_pretrained(tmp_path / "o")
    assert model.config.latent_stats == "per_position"
    with torch.no_grad():
        assert max_err(model(ref["input"], clamp=False).sample, ref["image.ViTXL.per_position"]) <= TOL
