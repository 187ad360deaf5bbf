"""Preprocessing that travels with the weights: ``model.pretrained_cfg`` (timm's fields), ``uae.data.resolve_data_config``
/ ``create_transform``, and each converted release's own evaluation crop and resize, checked against the
original code (tests/fixtures/preprocess, tests/fixtures/authors_v1)."""

from __future__ import annotations

from pathlib import Path

import pytest
import timm.data
import torch
from PIL import Image
from safetensors.torch import load_file
from torchvision.transforms.functional import pil_to_tensor

import uae
from uae.convert.authors_v1 import load_release as load_v1
from uae.convert.authors_v1 import v1_preprocess
from uae.convert.authors_v2 import v2_preprocess
from uae.convert.rae import load_release as load_rae
from uae.data import create_transform, resize_images, resolve_data_config
from uae.data.image_io import read_image
from uae.data.transforms import AdmTransform, ImageTransform, Normalized, adm_center_crop
from uae.errors import InputError
from uae.evaluation.common import build_dataset
from uae.inference import load_images, reconstruct_files
from uae.models.preprocess import TIMM_FIELDS

FIXTURES = Path(__file__).parent / "fixtures"
ASSETS = Path(__file__).parent / "assets"
TIMM_KEYS = set(TIMM_FIELDS)


@pytest.fixture(scope="module")
def golden() -> dict[str, torch.Tensor]:
    return load_file(str(FIXTURES / "preprocess" / "golden.safetensors"))


@pytest.fixture(scope="module")
def v1() -> uae.UAE:
    return load_v1(
        {"checkpoint": FIXTURES / "authors_v1" / "checkpoint.pt"}, encoder_heads=2, decoder_heads=2
    )


def adm_config(img_size: int = 224, output: int = 256) -> dict:
    """The data config of a converted release with these sizes (the released DINOv2-B: 224 in, 256 out)."""
    cfg = uae.get_config("uae_base_p14_dinov2").replace(preprocess="adm")
    return resolve_data_config(cfg, args={"img_size": img_size, "target_size": output, "resize_size": output})


# ---------------------------------------------------------------------------------------------- pretrained_cfg
@pytest.mark.parametrize("name", uae.list_models(family="tokenizer"))
def test_every_registered_name_describes_its_input(name: str) -> None:
    """Every tokenizer (generators take latents, not images) has timm's fields; timm's own resolver reads uae's values, not its 224 / 0.875."""
    c = uae.get_config(name)
    model = uae.create_model(name) if c.encoder_dim <= 128 else None  # big ones: the config alone
    cfg = model.pretrained_cfg if model is not None else resolve_data_config(c)
    assert TIMM_KEYS <= set(cfg)
    assert cfg["input_size"] == (3, c.img_size, c.img_size) and cfg["target_size"] == c.output_size
    assert (cfg["crop_pct"], cfg["crop_mode"], cfg["preprocess"]) == (1.0, "center", c.preprocess)
    if model is not None:
        assert timm.data.resolve_data_config(model=model) == {k: cfg[k] for k in TIMM_FIELDS}


def test_timm_resolver_and_transform_on_a_uae_model() -> None:
    """The issue's case: timm used to answer 224 px and crop 0.875 for uae_demo (64 px, whole crop)."""
    model = uae.create_model("uae_demo", pretrained=True)
    cfg = timm.data.resolve_data_config(model=model)
    assert cfg["input_size"] == (3, 64, 64) and cfg["crop_pct"] == 1.0
    assert cfg["mean"] == (0.0, 0.0, 0.0) and cfg["std"] == (1.0, 1.0, 1.0)  # uae models take [0, 1] images
    x = timm.data.create_transform(**cfg)(Image.open(ASSETS / "chelsea.png").convert("RGB"))
    assert x.shape == (3, 64, 64) and 0 <= x.min() and x.max() <= 1
    ours = uae.load_image(ASSETS / "chelsea.png", model=model)
    assert (x - ours).abs().max() < 0.02  # timm's resize-then-crop vs uae's crop-then-resize: sub-pixel only
    assert model.pretrained_cfg["pixel_mean"] == (0.485, 0.456, 0.406)  # what the model normalises with


def test_saved_models_keep_their_preprocessing(tmp_path: Path) -> None:
    model = uae.create_model("uae_test", preprocess="adm")
    assert model.pretrained_cfg["preprocess"] == "adm" and model.pretrained_cfg["resize_size"] == 32
    assert model.pretrained_cfg["antialias"] is False
    model.save_pretrained(tmp_path / "m")
    loaded = uae.UAE.from_pretrained(tmp_path / "m")
    assert loaded.pretrained_cfg == model.pretrained_cfg
    assert uae.create_model("uae_test").pretrained_cfg["preprocess"] == "uae"  # a new model: uae's own


def test_converted_releases_carry_their_evaluation(v1) -> None:
    """Converters set preprocess='adm': crop at the output size, torch bicubic without antialias to the input."""
    assert (v1.config.preprocess, v1.pretrained_cfg["resize_size"]) == ("adm", v1.config.output_size)
    rae = load_rae(
        {
            "decoder": FIXTURES / "rae_mae" / "decoder" / "model.pt",
            "encoder": FIXTURES / "rae_mae" / "encoder" / "model.safetensors",
        },
        encoder="mae",
        encoder_heads=2,
        decoder_heads=4,
    )
    assert rae.pretrained_cfg["preprocess"] == "adm" and rae.pretrained_cfg["antialias"] is False
    assert uae.get_config("uae_base_p14_dinov2").preprocess == "uae"  # the architecture without weights


# ---------------------------------------------------------------------------------------------- the original pipeline
@pytest.mark.parametrize("name", ["wide", "tall"])
def test_adm_transform_matches_the_original_evaluation(golden, name: str) -> None:
    """The authors' (v1, v2) and RAE's crop, and their encode's resize, to 1e-6 (measured: 0)."""
    out = create_transform(adm_config())(read_image(FIXTURES / "preprocess" / f"{name}.png"))
    assert torch.equal(out["target"], golden[f"{name}.crop_256"].float() / 255)
    assert (out["image"] - golden[f"{name}.input_224"]).abs().max() <= 1e-6
    assert out["image"].min() < 0  # bicubic overshoot is kept (not clamped), as theirs
    old = ImageTransform(224, out_size=256)(read_image(FIXTURES / "preprocess" / f"{name}.png"))
    assert (old["image"] - golden[f"{name}.input_224"]).abs().max() > 1e-2  # uae's own crop is not theirs


def test_authors_v1_crop_of_the_fixture_photo() -> None:
    ref = load_file(str(FIXTURES / "authors_v1" / "tensors.safetensors"))
    im = read_image(ASSETS / "chelsea.png")
    for side in (224, 256):  # their eval_uae.py crops at --image-size
        crop = adm_center_crop(im, side)
        assert torch.equal(pil_to_tensor(crop), ref[f"input_{side}"][0])


def test_release_reconstruction_from_a_file_is_the_authors(v1, tmp_path: Path) -> None:
    """A photo read with the release's data config reproduces the original code's reconstruction of it."""
    ref = load_file(str(FIXTURES / "authors_v1" / "tensors.safetensors"))
    cfg = resolve_data_config(
        v1, args={"resize_size": 256}
    )  # their --image-size (the tiny decoder gives 64 px)
    x = create_transform(cfg, target=False)(read_image(ASSETS / "chelsea.png"))
    with torch.no_grad():
        out = v1(x[None]).sample
    assert (out - ref["image_256"]).abs().max() < 1e-5


def test_commands_read_images_with_the_models_config(v1, tmp_path: Path, golden) -> None:
    """load_images (uae reconstruct, bands, the app) and build_dataset (eval, encode, probe) take the data config."""
    cfg = adm_config()
    path = FIXTURES / "preprocess" / "wide.png"
    images, targets = load_images([path], data_config=cfg)
    assert (images[0] - golden["wide.input_224"]).abs().max() <= 1e-6
    assert torch.equal(targets[0], golden["wide.crop_256"].float() / 255)
    (tmp_path / "d").mkdir()
    Image.open(path).save(tmp_path / "d" / "wide.png")
    ds = build_dataset(tmp_path / "d", 224, out_size=256, data_config=cfg)
    assert (ds[0]["image"] - golden["wide.input_224"]).abs().max() <= 1e-6
    assert torch.equal(ds[0]["target"], golden["wide.crop_256"].float() / 255)
    assert (
        "target" not in build_dataset(tmp_path / "d", 224, data_config=cfg)[0]
    )  # probe / encode: input only

    res = reconstruct_files([path], model=v1, out_dir=tmp_path / "out", band_picture=False)
    x, t = load_images([path], data_config=resolve_data_config(v1))
    with torch.no_grad():
        expected = uae.inference.psnr(v1(x).sample, t)
    assert res.images[0].psnr == pytest.approx(float(expected[0]), abs=1e-4)


# ---------------------------------------------------------------------------------------------- one way to resize
def test_v1_and_v2_preprocess_are_resize_images() -> None:
    x = torch.rand(2, 3, 256, 256)
    expected = torch.nn.functional.interpolate(x, size=(224, 224), mode="bicubic", align_corners=False)
    for fn in (v1_preprocess, lambda t, s: v2_preprocess(t, s), resize_images):
        assert torch.equal(fn(x, 224), expected)
    assert resize_images(x, 256) is x
    assert resize_images(x[0], 224).shape == (3, 224, 224)
    with pytest.raises(InputError, match="bicubic' or 'bilinear'"):
        resize_images(x, 224, interpolation="lanczos")


def test_create_transform_options_and_errors() -> None:
    im = read_image(ASSETS / "coffee.png")
    cfg = adm_config(32, 64)
    assert isinstance(create_transform(cfg), AdmTransform)
    assert create_transform(cfg, target=False)(im).shape == (3, 32, 32)
    tr = create_transform(cfg, train=True)  # training: uae's random crop + flip at the config's sizes
    assert isinstance(tr, ImageTransform) and tr.train and tr(im)["target"].shape == (3, 64, 64)
    norm = create_transform(cfg, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))  # timm's keywords on top
    assert isinstance(norm, Normalized)
    a, b = norm(im), create_transform(cfg)(im)
    assert torch.allclose(a["image"], (b["image"] - 0.5) / 0.5) and torch.equal(a["target"], b["target"])
    plain = {
        "input_size": (3, 32, 32),
        "crop_pct": 0.875,
        "interpolation": "bilinear",
    }  # a timm model's config
    got = create_transform(resolve_data_config(pretrained_cfg=plain))(im)
    assert torch.equal(
        got, timm.data.create_transform(**timm.data.resolve_data_config(pretrained_cfg=plain))(im)
    )
    with pytest.raises(InputError, match="pretrained_cfg") as e:
        resolve_data_config(object())
    assert e.value.param == "model"
    with pytest.raises(InputError, match="preprocess must be one of"):
        resolve_data_config(pretrained_cfg={"preprocess": "squash"})
    with pytest.raises(InputError, match="crop_pct=1.0"):
        create_transform(resolve_data_config(uae.get_config("uae_test")), crop_pct=0.875)
    with pytest.raises(InputError, match=r"input_size must be \(3, S, S\)"):
        resolve_data_config(pretrained_cfg={"input_size": (3, 32, 48)})
    with pytest.raises(ValueError, match="size or data_config"):
        uae.load_image(ASSETS / "coffee.png")
