"""The authors' v2 release converter against golden outputs of their original code (tests/fixtures/authors_v2)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

import uae
from uae.cli import main as cli_main
from uae.convert import authors_v2
from uae.convert.authors_v2 import (
    RELEASE_FILES,
    load_release,
    read_checkpoint,
    read_release_config,
    v2_preprocess,
)

FIXTURES = Path(__file__).parent / "fixtures" / "authors_v2"
#: family -> release folder name (as in weepiess2383/UAE checkpoints/<encoder>/)
FAMILIES = {"dinov2": "DINOv2-B", "clip": "CLIP-L", "siglip2": "SigLIP2"}
#: The tiny fixtures use 2 heads (not visible in the weights).
HEADS = {"encoder_heads": 2, "decoder_heads": 2}
TOL = 1e-5


def release_files(family: str) -> dict[str, Path]:
    d = FIXTURES / family / "checkpoints" / FAMILIES[family]
    return {"checkpoint": d / "ep-last.pt", "config": d / "config.yaml"}


def golden(family: str) -> dict[str, torch.Tensor]:
    ref = load_file(str(FIXTURES / family / "tensors.safetensors"))
    ref["sample"] = ref["sample_unclamped"].clamp(0, 1)  # their evaluation clamps the reconstruction
    return ref


def max_err(a: torch.Tensor, b: torch.Tensor) -> float:
    assert a.shape == b.shape, (a.shape, b.shape)
    return float((a - b).abs().max())


@pytest.fixture(scope="module", params=sorted(FAMILIES))
def converted(request):
    family = request.param
    return family, load_release(release_files(family), **HEADS), golden(family)


def test_release_files_interface() -> None:
    assert RELEASE_FILES == {"checkpoint": True, "config": False, "stats": False}


def test_reconstruction_matches_the_original_code(converted) -> None:
    family, model, ref = converted
    x = ref["image"].float() / 255.0  # their pre-processing starts from the same [0, 1] image
    assert x.shape[-1] == model.config.img_size
    with torch.no_grad():
        out = model(x, clamp=False)
        assert max_err(out.latent, ref["latent"]) < TOL  # encoder
        assert max_err(out.bands[:, 0], ref["kept"]) < TOL  # kept zigzag coefficients
        assert max_err(out.bands[:, 1], ref["latent"] - ref["kept"]) < TOL  # dropped rest
        assert max_err(out.sample, ref["sample_unclamped"]) < TOL
        assert max_err(model(x).sample, ref["sample"]) < TOL  # their evaluation clamps to [0, 1]
        assert max_err(model.decode(out.latent).sample, ref["sample"]) < TOL


def test_each_stage_from_the_original_inputs(converted) -> None:
    _, model, ref = converted
    with torch.no_grad():
        bands = model.split(ref["latent"])  # their latent -> uae's band split
        assert max_err(bands[:, 0], ref["kept"]) < TOL
        rec = model.render(
            model.fuse(torch.stack([ref["kept"], ref["latent"] - ref["kept"]], 1)), clamp=False
        )
        assert max_err(rec, ref["sample_unclamped"]) < TOL  # their kept latent -> uae's decoder
        assert max_err(model.decode(ref["kept"]).sample, ref["sample"]) < TOL  # low-pass is idempotent


def test_their_evaluation_crop_size_with_v2_preprocess() -> None:
    model = load_release(release_files("dinov2"), **HEADS)
    ref = golden("dinov2")
    x = ref["image"].float() / 255.0
    x256 = torch.nn.functional.interpolate(x, size=(256, 256), mode="bilinear", align_corners=False)
    assert v2_preprocess(x, 224) is x
    with torch.no_grad():
        rec = model(v2_preprocess(x256, model.config.img_size), clamp=False).sample
    assert max_err(rec, ref["sample_unclamped_from_256"]) < TOL  # their encode resized 256 -> 224
    with pytest.raises(ValueError):
        model(x256)  # uae never resizes: 256 px is not the DINOv2 model's patch grid


def test_config_follows_the_release_yaml(converted) -> None:
    family, model, _ = converted
    c = model.config
    split = read_release_config(release_files(family)["config"])["frequency_config"]["band_split"]
    assert (c.band_scheme, c.band_transform, c.num_bands, c.band_mixing) == ("dct_zigzag", "dct", 2, True)
    assert c.zigzag_keep_count == split["count"]
    assert (c.zigzag_count_min, c.zigzag_count_max) == (split["count_min"], split["count_max"])
    assert c.zigzag_apply_prob == split["apply_prob"]
    assert c.decoder_norm_eps == 1e-12 and c.noise_std == 0.0
    assert not model.training


def test_saved_and_reloaded_model_is_identical(converted, tmp_path) -> None:
    _, model, ref = converted
    model.save_pretrained(tmp_path / "m")
    loaded = uae.UAE.from_pretrained(tmp_path / "m")
    x = ref["image"].float() / 255.0
    with torch.no_grad():
        assert torch.equal(loaded(x).sample, model(x).sample)
    assert loaded.config == model.config


def _write_release(tmp_path: Path, obj, params_update=None, family: str = "dinov2") -> dict[str, Path]:
    src = release_files(family)
    tmp_path = tmp_path / family
    tmp_path.mkdir(exist_ok=True)
    raw = yaml.safe_load(src["config"].read_text())
    for k, v in (params_update or {}).items():
        raw["stage_1"]["params"][k] = v
    cfg = tmp_path / "config.yaml"
    cfg.write_text(yaml.safe_dump(raw))
    ckpt = tmp_path / "ep-last.pt"
    torch.save(obj, ckpt)
    return {"checkpoint": ckpt, "config": cfg}


def test_ema_entry_is_the_one_loaded(tmp_path) -> None:
    ema = read_checkpoint(release_files("dinov2")["checkpoint"])
    model_entry = {k: v + 1.0 if k.startswith("decoder.decoder_pred") else v for k, v in ema.items()}
    files = _write_release(tmp_path, {"model": model_entry, "ema": ema, "step": 3})
    ref = golden("dinov2")
    x = ref["image"].float() / 255.0
    with torch.no_grad():
        assert max_err(load_release(files, **HEADS)(x).sample, ref["sample"]) < TOL
        other = load_release(files, entry="model", **HEADS)(x, clamp=False).sample
    assert max_err(other, ref["sample_unclamped"]) > 0.5
    only_model = _write_release(tmp_path, {"model": model_entry})
    with pytest.raises(ValueError, match="no 'ema'"):
        load_release(only_model, **HEADS)
    bare = _write_release(tmp_path, ema)  # a bare state dict is used as is
    assert load_release(bare, **HEADS).config.zigzag_keep_count == 36


def test_strict_keys(tmp_path) -> None:
    ema = read_checkpoint(release_files("dinov2")["checkpoint"])
    extra = dict(ema, **{"encoder.encoder.extra.weight": torch.zeros(2)})
    with pytest.raises(ValueError, match=r"encoder\.encoder\.extra\.weight"):
        load_release(_write_release(tmp_path, {"ema": extra}), **HEADS)
    missing = {k: v for k, v in ema.items() if k != "decoder.decoder_layers.1.output.dense.bias"}
    with pytest.raises(ValueError, match=r"decoder_layers\.1\.output\.dense\.bias"):
        load_release(_write_release(tmp_path, {"ema": missing}), **HEADS)


def test_eval_time_low_pass_off_and_unsupported_settings(tmp_path) -> None:
    ema = {"ema": read_checkpoint(release_files("dinov2")["checkpoint"])}
    freq = read_release_config(release_files("dinov2")["config"])["frequency_config"]
    off = dict(freq, band_split=dict(freq["band_split"], enabled=False))
    model = load_release(_write_release(tmp_path, ema, {"frequency_config": off}), **HEADS)
    assert model.config.zigzag_keep_count is None
    ref = golden("dinov2")
    with torch.no_grad():
        out = model(ref["image"].float() / 255.0)
    assert torch.equal(out.bands[:, 0], out.latent)  # nothing dropped at evaluation

    ratio = dict(
        freq, band_split={k: v for k, v in freq["band_split"].items() if k != "count"} | {"ratio": 0.25}
    )
    model = load_release(_write_release(tmp_path, ema, {"frequency_config": ratio}), **HEADS)
    assert model.config.zigzag_keep_count == 64  # round(0.25 * 16 * 16)

    stage1 = load_release(_write_release(tmp_path, ema, {"frequency_config": None}), **HEADS)
    assert stage1.config.zigzag_keep_count is None and stage1.config.zigzag_count_min is None

    for update, match in [
        ({"frequency_config": dict(freq, freq_order="radial")}, "radial"),
        ({"frequency_config": dict(freq, band_split=dict(freq["band_split"], mode="high"))}, "mode='high'"),
        ({"normalization_stat_path": "stats.pt"}, "normalization_stat_path"),
        ({"encoder_cls": "MAEwNorm"}, "MAEwNorm"),
        ({"encoder_config_path": "someone/dinov2-like"}, "pixel_mean"),
        ({"decoder_patch_size": 16}, "decoder_patch_size 16"),
        ({"encoder_input_size": 448}, "encoder_input_size 448"),
    ]:
        with pytest.raises(ValueError, match=match):
            load_release(_write_release(tmp_path, ema, update), **HEADS)


def test_load_release_argument_errors(tmp_path) -> None:
    files = release_files("dinov2")
    with pytest.raises(ValueError, match="unknown file role"):
        load_release({**files, "encoder": files["config"]})
    with pytest.raises(FileNotFoundError, match="config"):
        load_release({"checkpoint": files["checkpoint"]})
    with pytest.raises(ValueError, match="unknown option"):
        load_release(files, stats_eps=1e-5)
    with pytest.raises(FileNotFoundError, match="nope"):
        load_release({"checkpoint": tmp_path / "nope.pt", "config": files["config"]})
    junk = tmp_path / "junk.yaml"
    junk.write_text("a: [1, 2\n")
    with pytest.raises(ValueError, match="YAML"):
        load_release({"checkpoint": files["checkpoint"], "config": junk})
    junk.write_text("stage_2: {}\n")
    with pytest.raises(ValueError, match="stage_1.params"):
        load_release({"checkpoint": files["checkpoint"], "config": junk})


def test_cli_converts_v2_and_points_v1_users_to_it(tmp_path, capsys) -> None:
    files = release_files("dinov2")
    out = tmp_path / "converted"
    rc = cli_main(
        ["convert", "--from", "authors_v2", str(files["checkpoint"]), "--out", str(out)]
        + ["--encoder-heads", "2", "--decoder-heads", "2"]
    )
    assert rc == 0 and "dct_zigzag" not in capsys.readouterr().err
    ref = golden("dinov2")
    with torch.no_grad():
        sample = uae.UAE.from_pretrained(out)(ref["image"].float() / 255.0).sample
    assert max_err(sample, ref["sample"]) < TOL

    rc = cli_main(["convert", "--from", "authors", str(files["checkpoint"]), "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and err.splitlines()[-1].endswith("is a v2 checkpoint, use --from authors_v2")
    assert "Traceback" not in err

    rc = cli_main(
        ["convert", "--from", "authors_v2", str(files["checkpoint"]), "--config", str(tmp_path / "no.yaml")]
        + ["--out", str(tmp_path / "o")]
    )
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "no.yaml" in err and len(err.splitlines()) == 1


def _transformers5_names(state: dict[str, torch.Tensor], family: str) -> dict[str, torch.Tensor]:
    """The same weights as a transformers 5 encoder names them."""
    out = {}
    for k, v in state.items():
        if k.startswith("decoder."):
            pass  # their decoder is their own copy of ViT-MAE: its names do not change
        elif family == "dinov2":
            for a, b in [
                ("attention.attention.query", "attention.q_proj"),
                ("attention.attention.key", "attention.k_proj"),
            ]:
                k = k.replace(a, b)
            k = k.replace("attention.attention.value", "attention.v_proj")
            k = k.replace("attention.output.dense", "attention.o_proj")
        elif family == "clip":
            k = k.replace("encoder.model.vision_model.", "encoder.model.")
        out[k] = v
    return out


@pytest.mark.parametrize("family", ["dinov2", "clip"])
def test_transformers5_key_names_convert_the_same(family: str, tmp_path) -> None:
    state = read_checkpoint(release_files(family)["checkpoint"])
    renamed = _transformers5_names(state, family)
    assert set(renamed) != set(state)
    files = _write_release(tmp_path, {"ema": renamed}, family=family)
    ref = golden(family)
    with torch.no_grad():
        sample = load_release(files, **HEADS)(ref["image"].float() / 255.0, clamp=False).sample
    assert max_err(sample, ref["sample_unclamped"]) < TOL


def test_v2_state_detection() -> None:
    ema = read_checkpoint(release_files("dinov2")["checkpoint"])
    assert authors_v2.is_v2_state(ema)
    assert not authors_v2.is_v2_state({**ema, "freq_modulator.denoiser.0.weight": torch.zeros(1)})
