"""Registry and config: names, overrides, every registered config at tiny sizes, errors."""

from __future__ import annotations

import pytest
import torch

import uae
from uae.models.config import UAEConfig
from uae.models.registry import register_model

TINY = {
    "encoder_dim": 32,
    "encoder_depth": 1,
    "encoder_heads": 2,
    "decoder_dim": 32,
    "decoder_depth": 1,
    "decoder_heads": 2,
    "modulator_hidden_dim": 16,
}


def test_list_models_has_the_zoo() -> None:
    names = uae.list_models()
    for n in ("uae_test", "uae_small_p14_dinov2", "uae_base_p14_dinov2", "uae_large_p14_dinov2"):
        assert n in names
    assert uae.list_models("*large*") == ["uae_large_p14_clip", "uae_large_p14_dinov2"]
    assert names == sorted(names)


@pytest.mark.parametrize("name", uae.list_models(family="tokenizer"))
def test_every_registered_config_builds_at_tiny_size(name: str) -> None:
    cfg = uae.get_config(name)
    assert cfg.name == name
    img = cfg.patch_size * 4
    model = uae.create_model(name, img_size=img, **TINY).eval()
    x = torch.rand(2, 3, img, img)
    out = model(x)
    k = cfg.num_bands
    assert out.latent.shape == (2, 32, 4, 4)
    assert out.bands.shape == (2, k, 32, 4, 4)
    assert out.sample.shape == (2, 3, 4 * cfg.decoder_patch_size, 4 * cfg.decoder_patch_size)


def test_paper_configs() -> None:
    b = uae.get_config("uae_base_p14_dinov2")
    assert (b.img_size, b.patch_size, b.latent_shape, b.output_size) == (224, 14, (768, 16, 16), 256)
    assert (b.decoder_dim, b.decoder_depth, b.decoder_heads) == (1152, 28, 16)
    assert b.encoder_reg_tokens == 4 and b.encoder_weights.startswith("timm/vit_base_patch14_reg4_dinov2")
    large = uae.get_config("uae_large_p14_dinov2")
    assert large.latent_shape == (1024, 16, 16)


def test_register_twice_raises() -> None:
    with pytest.raises(ValueError, match="already registered"):

        @register_model("uae_test")
        def _dup() -> UAEConfig:
            return UAEConfig()


def test_unknown_name_and_field() -> None:
    with pytest.raises(ValueError, match="unknown model name 'nope'"):
        uae.create_model("nope")
    with pytest.raises(TypeError, match="Unknown UAEConfig field"):
        uae.create_model("uae_test", num_bandz=3)


def test_untrained_pretrained_names_point_to_recipe() -> None:
    with pytest.raises(FileNotFoundError, match="recipes/"):
        uae.create_model("uae_large_p14_dinov2", pretrained=True)


@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        ({"img_size": 30}, "not divisible"),
        ({"band_transform": "wavelet"}, "band_transform"),
        ({"num_bands": 0}, "num_bands"),
        ({"noise_min_band": 0}, "never noised"),
        ({"num_semantic_bands": 9}, "num_semantic_bands"),
        ({"modulator_out_kernel": 2}, "odd"),
    ],
)
def test_invalid_config(overrides: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        uae.get_config("uae_test", **overrides)


def test_config_dict_round_trip() -> None:
    cfg = uae.get_config("uae_test")
    assert UAEConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match="architecture"):
        UAEConfig.from_dict({"architecture": "VAE"})
    with pytest.raises(ValueError, match="does not know"):
        UAEConfig.from_dict({"bogus": 1})


def test_every_weights_entry_names_a_known_source() -> None:
    """The weights table sits below the converters, so it does not check sources when registering:
    every entry must name uae's own layout or a format of the one release table."""
    from uae.convert.release import canonical_source, get_converter
    from uae.models.pretrained import NATIVE_SOURCE, pretrained_cfgs

    for cfg in pretrained_cfgs():
        if cfg.source != NATIVE_SOURCE:
            assert canonical_source(cfg.source) == cfg.source, cfg.name
            assert set(cfg.files) <= set(get_converter(cfg.source).files), cfg.name


def test_release_table_aliases_resolve_to_one_converter() -> None:
    from uae.convert.release import canonical_source, get_converter, release_sources
    from uae.errors import InputError

    assert release_sources() == ["authors_v1", "authors_v2", "dit", "rae"]
    assert release_sources(aliases=True) == ["authors", "authors_v1", "authors_v2", "dit", "rae"]
    assert canonical_source("authors") == "authors_v1"
    assert get_converter("authors").load_release is get_converter("authors_v1").load_release
    assert get_converter("rae").main_role == "decoder"
    with pytest.raises(InputError, match="unknown release format 'nope'") as e:
        canonical_source("nope")
    assert e.value.param == "source"


def test_the_package_root_and_models_export_the_same_objects() -> None:
    import uae.models
    from uae import errors
    from uae.models import hub

    assert uae.UAELoadError is uae.models.UAELoadError is hub.UAELoadError is errors.UAELoadError
    assert uae.UAE is uae.models.UAE and uae.UAEConfig is uae.models.UAEConfig
    assert {"UAE", "create_model", "list_models", "__version__"} <= set(dir(uae))
    with pytest.raises(AttributeError):
        uae.not_a_public_name  # noqa: B018
