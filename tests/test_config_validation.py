"""UAEConfig.validate(): every field type- and range-checked from the annotations, naming the field."""

from __future__ import annotations

import dataclasses

import pytest

from uae.models.config import UAEConfig


@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        ({"img_size": "224"}, "img_size must be an int, got str '224'"),
        ({"num_bands": 3.0}, "num_bands must be an int, got float 3.0"),
        ({"num_bands": True}, "num_bands must be an int, got bool"),
        ({"encoder_dim": -128}, "encoder_dim must be >= 1, got -128"),
        ({"patch_size": 0}, "patch_size must be >= 1, got 0"),
        ({"latent_norm": "no"}, "latent_norm must be a bool"),
        ({"band_mixing": 1}, "band_mixing must be a bool"),
        ({"encoder_init_values": "1e-5"}, "encoder_init_values must be float | None"),
        ({"encoder_init_values": 0.0}, "encoder_init_values must be > 0"),
        ({"decoder_mlp_ratio": float("inf")}, "decoder_mlp_ratio must be finite"),
        ({"band_transform": 3}, "band_transform must be a string"),
    ],
)
def test_wrong_type_or_range_names_the_field(overrides, match):
    with pytest.raises(ValueError, match=match.replace("|", r"\|").replace(".", r"\.")):
        UAEConfig(**overrides)


def test_all_problems_reported_together_and_cross_field_checks_kept():
    with pytest.raises(ValueError, match="img_size must be an int.*latent_norm must be a bool"):
        UAEConfig(img_size="224", latent_norm="no")
    with pytest.raises(ValueError, match="not divisible by patch_size"):
        UAEConfig(img_size=225)


def test_float_fields_accept_ints_and_optional_fields_none():
    c = UAEConfig(noise_std=1, encoder_mlp_ratio=4, encoder_init_values=None)
    assert c.noise_std == 1 and c.encoder_init_values is None


def test_fields_added_later_are_checked_from_their_annotations():
    @dataclasses.dataclass
    class Extended(UAEConfig):  # stands for a field another branch adds
        use_thing: bool = False
        grid: tuple[int, int] = (4, 4)
        scale: float | None = None

    Extended(use_thing=True, grid=[2, 3], scale=2)
    assert Extended(grid=[2, 3]).grid == (2, 3)  # JSON lists become tuples
    with pytest.raises(ValueError, match="use_thing must be a bool"):
        Extended(use_thing="yes")
    with pytest.raises(ValueError, match="grid must be tuple"):
        Extended(grid=(2.0, 3))
    with pytest.raises(ValueError, match=r"scale must be float \| None"):
        Extended(scale="big")


def test_enum_like_fields_are_literals_and_checked_by_value():
    import typing

    from uae.errors import ConfigError

    hints = typing.get_type_hints(UAEConfig)
    for name in ("band_transform", "band_scheme", "latent_stats", "encoder_family", "encoder_pos_resample"):
        assert typing.get_origin(hints[name]) is typing.Literal, name
        assert UAEConfig().to_dict()[name] in typing.get_args(hints[name]), name
    with pytest.raises(
        ConfigError, match=r"band_scheme must be one of \('smooth', 'authors_v1', 'dct_zigzag'\), got 'x'"
    ) as e:
        UAEConfig(band_scheme="x")
    assert e.value.param == "band_scheme"
    with pytest.raises(ConfigError, match="latent_stats must be a string, one of") as e:
        UAEConfig(latent_stats=None)
    assert e.value.param == "latent_stats"
