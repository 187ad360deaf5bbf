"""RAE's SigLIP2 and MAE decoders: golden outputs of RAE's code (tests/fixtures/rae_{siglip2,mae}) reproduced,
and the encoder family never guessed (an ambiguous or mismatched encoder is refused in one line)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import uae
from uae.cli import main as cli_main
from uae.convert.hf_encoders import convert_hf_encoder, detect_family, encoder_from_hf
from uae.convert.rae import RAE_ENCODERS, encoder_family_of, load_release, rae_to_uae
from uae.data import resize_images
from uae.errors import InputError
from uae.files import read_state_dict

FIXTURES = Path(__file__).parent / "fixtures"
FAMILIES = ("siglip2", "mae")
TOL = 1e-5
#: The encoder's image-processor statistics (google/siglip2-base-patch16-256: 0.5; facebook/vit-mae-base: ImageNet).
PIXEL_STATS = {"siglip2": ((0.5,) * 3, (0.5,) * 3), "mae": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))}


def files(family: str, stats: bool = True) -> dict[str, Path]:
    d = FIXTURES / f"rae_{family}"
    out = {"decoder": d / "decoder" / "model.pt", "encoder": d / "encoder" / "model.safetensors"}
    if stats:
        out["stats"] = d / "stats" / "stat.pt"
    return out


def ref(family: str) -> dict[str, torch.Tensor]:
    return load_file(str(FIXTURES / f"rae_{family}" / "reference.safetensors"))


def convert(family: str, stats: bool = True, **kw) -> uae.UAE:
    return load_release(files(family, stats), encoder=family, encoder_heads=2, decoder_heads=4, **kw)


def max_err(a: torch.Tensor, b: torch.Tensor) -> float:
    assert a.shape == b.shape, (a.shape, b.shape)
    return float((a - b).abs().max())


@pytest.mark.parametrize("family", FAMILIES)
def test_reconstruction_matches_rae_forward(family: str) -> None:
    """Encoder latent, normalised latent and unclamped image equal RAE's ``encode`` / ``forward``."""
    r = ref(family)
    for stats in (False, True):
        model = convert(family, stats)
        c = model.config
        assert (c.encoder_family, c.img_size, c.output_size, c.grid_size) == (family, 32, 32, 8)
        assert (c.encoder_pos_grid, c.preprocess, c.latent_norm) == (6, "adm", True)  # 6x6 table -> 8x8 grid
        assert model.pretrained_cfg["pixel_mean"] == PIXEL_STATS[family][0]
        with torch.no_grad():
            out = model(r["input"], clamp=False)
        expected = r["image.per_position" if stats else "image.none"]
        assert max_err(out.latent, r["latent"]) <= TOL
        assert max_err(out.sample, expected) <= TOL
        assert (expected < 0).any() and (expected > 1).any()  # the unclamped comparison is not vacuous
        if stats:
            assert c.latent_stats == "per_position"
            zn = model.normalize_latent(out.latent)
            assert max_err(zn, r["latent_normalized.per_position"]) <= TOL


@pytest.mark.parametrize("family", FAMILIES)
def test_other_input_sizes_go_through_the_release_resize(family: str) -> None:
    """RAE's encode resizes a 40 px input bicubically without antialias: uae's data step is the same."""
    r = ref(family)
    model = convert(family, stats=False)
    x = resize_images(r["input_40"], model.config.img_size)
    with torch.no_grad():
        assert max_err(model(x, clamp=False).sample, r["image_from_40.none"]) <= TOL


@pytest.mark.parametrize("family", FAMILIES)
def test_encoder_alone_at_its_table_size(family: str) -> None:
    """At the position table's own size (24 px, 6x6 patches) no resampling happens, in RAE or in uae."""
    r = ref(family)
    state = read_state_dict(files(family)["encoder"], what="encoder")
    enc = encoder_from_hf(state, family, latent_norm=True, encoder_heads=2)
    mean, std = (torch.tensor(v).view(1, 3, 1, 1) for v in PIXEL_STATS[family])
    with torch.no_grad():
        z = enc((r["input"][:, :, :24, :24] - mean) / std)
    assert max_err(z.flatten(2).transpose(1, 2), r["encoder_tokens_24"]) <= TOL


def test_mae_transformers_5_names_and_dropped_pretraining_decoder() -> None:
    state = read_state_dict(files("mae")["encoder"], what="encoder")
    enc4 = convert_hf_encoder(state, "mae", latent_norm=True, encoder_heads=2)
    assert any(k.startswith("decoder.") for k in enc4.dropped)  # ViTMAEForPreTraining's pixel decoder
    assert all("pre-training decoder" in enc4.dropped[k] for k in enc4.dropped if k.startswith("decoder."))
    hf5 = load_file(
        str(FIXTURES / "rae_mae" / "encoder_hf5.safetensors")
    )  # vit.layers.N.attention.q_proj ...
    assert any(".layers.0.attention.q_proj." in k for k in hf5)
    enc5 = convert_hf_encoder(hf5, "mae", latent_norm=True, encoder_heads=2)
    assert enc5.state.keys() == enc4.state.keys()
    for k, v in enc4.state.items():
        assert torch.equal(enc5.state[k], v), k
    assert enc4.config["encoder_pos_resample"] == "hf_clip" and enc4.config["encoder_family"] == "mae"


def test_detect_family() -> None:
    assert detect_family(read_state_dict(FIXTURES / "rae" / "encoder" / "model.safetensors")) == "dinov2"
    for family in FAMILIES:
        assert detect_family(read_state_dict(files(family)["encoder"])) == family
    assert detect_family({"blocks.0.attn.qkv.weight": torch.zeros(1)}) is None


def test_ambiguous_encoder_is_refused_in_one_line() -> None:
    """RAE's decoders have the same shapes for every encoder: nothing states the family, nothing is built."""
    f = files("siglip2")
    with pytest.raises(InputError, match="encoder is not given and nothing says which one") as e:
        load_release(f, encoder_heads=2, decoder_heads=4)
    assert e.value.param == "encoder" and "\n" not in str(e.value)
    with pytest.raises(InputError, match="encoder is not given"):
        rae_to_uae(torch.load(f["decoder"], weights_only=True))  # no weights, no family
    with pytest.raises(InputError, match="one of dinov2, siglip2, mae"):
        encoder_family_of(encoder="clip")


def test_mismatched_encoder_weights_are_refused(tmp_path: Path) -> None:
    """The issue's case: DINOv2 weights given with a SigLIP2 (or MAE) decoder no longer build a DINOv2 model."""
    dinov2 = FIXTURES / "rae" / "encoder" / "model.safetensors"
    for family in FAMILIES:
        with pytest.raises(
            InputError,
            match=f"hold a transformers dinov2 encoder, but this RAE decoder was trained with '{family}'",
        ) as e:
            load_release(
                {**files(family), "encoder": dinov2}, encoder=family, encoder_heads=2, decoder_heads=4
            )
        assert e.value.param == "encoder_weights" and "\n" not in str(e.value)
    with pytest.raises(InputError, match="transformers siglip2 encoder, but .* trained with 'mae'"):
        load_release({**files("mae"), "encoder": files("siglip2")["encoder"]}, encoder="mae")


def test_release_path_and_config_name_the_encoder(tmp_path: Path) -> None:
    """The release layout (decoders/<family>/...) and RAE's stage-1 YAML say the family; disagreement is refused."""
    root = tmp_path / "RAE-collections" / "decoders" / "mae" / "base_p16" / "ViTXL_n08"
    root.mkdir(parents=True)
    shutil.copy(files("mae")["decoder"], root / "model.pt")
    f = {**files("mae"), "decoder": root / "model.pt"}
    model = load_release(f, encoder_heads=2, decoder_heads=4)  # the path says mae
    assert model.config.encoder_family == "mae"
    with pytest.raises(InputError, match="disagree.*given 'siglip2', decoder path 'mae'"):
        load_release(f, encoder="siglip2")

    cfg = tmp_path / "MAE.yaml"  # RAE's configs/stage1/pretrained/MAE.yaml, sizes of the fixture
    cfg.write_text(
        "stage_1:\n  target: stage1.RAE\n  params:\n    encoder_cls: 'MAEwNorm'\n    encoder_input_size: 32\n"
    )
    model = load_release({**files("mae"), "config": cfg}, encoder_heads=2, decoder_heads=4)
    assert model.config.encoder_family == "mae"
    cfg.write_text("stage_1:\n  params:\n    encoder_cls: 'MAEwNorm'\n    encoder_input_size: 256\n")
    with pytest.raises(InputError, match="encoder_input_size 256 does not match the decoder"):
        load_release({**files("mae"), "config": cfg}, encoder_heads=2, decoder_heads=4)
    cfg.write_text("stage_1:\n  params:\n    encoder_cls: 'SigLIP2wNorm'\n")
    with pytest.raises(InputError, match="config \\(encoder_cls\\) 'siglip2', decoder path 'mae'"):
        load_release({**f, "config": cfg})


def test_convert_cli_encoder_flag(tmp_path: Path, capsys) -> None:
    f = files("siglip2")
    base = ["convert", "--from", "rae", str(f["decoder"]), "--encoder-weights", str(f["encoder"])]
    tiny = ["--stats", str(f["stats"]), "--encoder-heads", "2", "--decoder-heads", "4"]
    assert cli_main([*base, "--out", str(tmp_path / "a"), *tiny]) == 2  # ambiguous: one line, exit 2
    err = capsys.readouterr().err.strip()
    assert "--encoder is not given" in err and len(err.splitlines()) == 1
    assert cli_main([*base, "--out", str(tmp_path / "b"), "--encoder", "mae", *tiny]) == 2  # mismatched
    assert "--encoder-weights hold a transformers siglip2 encoder" in capsys.readouterr().err
    assert cli_main([*base, "--out", str(tmp_path / "c"), "--encoder", "siglip2", *tiny]) == 0
    model = uae.UAE.from_pretrained(tmp_path / "c")
    assert (model.config.encoder_family, model.config.preprocess) == ("siglip2", "adm")
    with torch.no_grad():
        out = model(ref("siglip2")["input"], clamp=False).sample
    assert max_err(out, ref("siglip2")["image.per_position"]) <= TOL


def test_registered_names() -> None:
    for family, patch in (("siglip2", 16), ("mae", 16)):
        name = f"rae_base_p16_{family}_vitxl"
        c = uae.get_config(name)
        assert (c.encoder_family, c.img_size, c.patch_size, c.grid_size, c.output_size) == (
            family,
            256,
            16,
            16,
            256,
        )
        assert RAE_ENCODERS[family].input_size == c.img_size and RAE_ENCODERS[family].patch_size == patch
        cfg = uae.models.pretrained.get_pretrained_cfg(name)
        assert cfg.options["encoder"] == family and cfg.files["encoder"].repo == RAE_ENCODERS[family].hub_id
        assert cfg.files["decoder"].filename.startswith(f"decoders/{family}/")


def test_publish_local_files_like_a_registered_release(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    """``uae publish --from rae FILE --like arch.tag``: the entry's converter options (its encoder) apply."""
    import dataclasses

    from uae.models import pretrained as table

    name = "rae_base_p16_mae_vitxl.rae"
    cfg = table.get_pretrained_cfg(name)
    tiny = dataclasses.replace(cfg, options={**cfg.options, "encoder_heads": 2, "decoder_heads": 4})
    monkeypatch.setitem(table._PRETRAINED, cfg.architecture, [tiny])
    f = files("mae")
    args = ["publish", str(f["decoder"]), "--from", "rae", "--file", f"encoder={f['encoder']}"]
    args += ["--file", f"stats={f['stats']}", "--like", name, "--repo-id", "me/rae-mae", "--dry-run"]
    assert cli_main([*args, "--out", str(tmp_path / "pub")]) == 0, capsys.readouterr().err
    model = uae.UAE.from_pretrained(tmp_path / "pub")
    assert model.config.encoder_family == "mae" and model.config.preprocess == "adm"
    with torch.no_grad():
        assert (
            max_err(model(ref("mae")["input"], clamp=False).sample, ref("mae")["image.per_position"]) <= TOL
        )
