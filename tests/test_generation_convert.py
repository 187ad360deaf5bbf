"""Strict conversion of the released generator checkpoints (uae.convert.dit)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from generation_fixtures import GEN, TOL, config, max_err, reference, release_params

from uae.convert.dit import (
    config_from_original_params,
    convert_dit_state,
    dit_from_original,
    load_original_dit,
    original_key,
    read_dit_checkpoint,
    unwrap_checkpoint,
)
from uae.errors import (
    ConfigError,
    DamagedFileError,
    InputError,
    MissingFileError,
    UAELoadError,
    UnsafeFileError,
)
from uae.models.dit_config import dit_dh_xl


def rae_state() -> dict[str, torch.Tensor]:
    return torch.load(GEN / "rae" / "stage2_model.pt", weights_only=True)  # a bare state dict


def forward_error(m, source: str = "rae") -> float:
    ref = reference(source)
    with torch.no_grad():
        return max_err(m(ref["forward.x"], ref["forward.t"], ref["forward.y"]), ref["forward.out"])


def test_release_layouts_load() -> None:
    assert read_dit_checkpoint(GEN / "rae" / "stage2_model.pt").keys() == rae_state().keys()  # bare
    guide = torch.load(GEN / "rae" / "guidance_model.pt", weights_only=True)
    assert set(guide) == {"ema"}
    authors = torch.load(GEN / "authors" / "stage_2.pt", weights_only=True)
    assert set(authors) == {"step", "epoch", "ema"}
    m = load_original_dit(GEN / "authors" / "stage_2.pt", config("authors"), layout="authors")
    assert forward_error(m, "authors") < TOL
    assert sum(p.numel() for p in m.parameters()) == sum(
        v.numel() for k, v in authors["ema"].items() if "feat_rope" not in k
    )  # every stored weight is used (the RoPE tables are checked, not kept)


def test_training_checkpoint_entries(tmp_path: Path) -> None:
    ema = rae_state()
    model_weights = {k: v + 1 if "feat_rope" not in k else v for k, v in ema.items()}
    path = tmp_path / "ep-0000010.pt"
    torch.save({"step": 5, "epoch": 10, "model": model_weights, "ema": ema, "optimizer": {}}, path)
    cfg = config("rae")
    assert forward_error(load_original_dit(path, cfg)) < TOL  # "ema" by default, as the originals
    shifted = load_original_dit(path, cfg, entry="model")
    assert torch.equal(shifted.y_embed.weight, ema["y_embedder.embedding_table.weight"] + 1)
    torch.save({"model": model_weights}, path)
    with pytest.raises(UAELoadError, match="entry='model'") as info:
        load_original_dit(path, cfg)  # the originals refuse a "model"-only file too
    assert info.value.param == "entry"
    with pytest.raises(UAELoadError, match="no 'ema' entry"):
        load_original_dit(path, cfg, entry="ema")
    with pytest.raises(InputError, match="entry"):
        unwrap_checkpoint(ema, entry="best")
    ddp = {f"module.{k}": v for k, v in ema.items()}
    assert forward_error(dit_from_original(ddp, cfg)) < TOL


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda sd: sd.pop("blocks.2.mlp.w3.weight"), "missing key.*blocks.2.mlp.w3.weight"),
        (lambda sd: sd.pop("enc_feat_rope.freqs_sin"), "missing key.*enc_feat_rope.freqs_sin"),
        (
            lambda sd: sd.update({"blocks.3.norm1.weight": torch.ones(64)}),
            "unexpected key.*blocks.3.norm1.weight",
        ),
        (lambda sd: sd.update({"x_pos_embed": torch.zeros(1, 64, 64)}), "unexpected key.*x_pos_embed"),
        (lambda sd: sd.update({"pos_embed": torch.zeros(1, 63, 32)}), r"mis-shaped.*pos_embed \(1, 63, 32\)"),
        (
            lambda sd: sd.update(
                {"y_embedder.embedding_table.weight": torch.zeros(11, 32, dtype=torch.long)}
            ),
            "dtype",
        ),
        (
            lambda sd: sd.update({"dec_feat_rope.freqs_cos": torch.zeros(64, 32)}),
            "dec_feat_rope.freqs_cos differs",
        ),
    ],
)
def test_converter_names_bad_keys(edit, message: str) -> None:
    sd = rae_state()
    edit(sd)
    with pytest.raises(UAELoadError, match=message):
        convert_dit_state(sd, config("rae"))


def test_converter_detects_a_wrong_config() -> None:
    sd = rae_state()
    with pytest.raises(UAELoadError, match="RoPE"):  # same weights, the other RoPE mode
        convert_dit_state(sd, config("rae").replace(rope="1d"))
    with pytest.raises(UAELoadError, match="RoPE"):  # heads are only visible in the RoPE tables
        convert_dit_state(sd, config("rae").replace(num_heads=1))
    with pytest.raises(UAELoadError, match="missing key.*blocks.3"):
        convert_dit_state(sd, config("rae").replace(depth=3, head_depth=1))
    with pytest.raises(UAELoadError, match="unexpected key.*blocks.2"):
        convert_dit_state(sd, config("rae").replace(depth=1, head_depth=1))


def test_key_map() -> None:
    assert original_key("trunk.1.mlp.fc_in.weight", 2) == "blocks.1.mlp.w12.weight"
    assert original_key("head.0.modulation.bias", 2) == "blocks.2.adaLN_modulation.1.bias"
    assert original_key("t_embed.freqs", 2) == "t_embedder.W"
    assert original_key("final.norm.weight", 2) == "final_layer.norm_final.weight"
    with pytest.raises(KeyError):
        original_key("trunk.0.nothing", 2)


def test_config_from_the_release_yaml() -> None:
    cfg = config_from_original_params(release_params()["rae_guidance"], name="g")
    assert (cfg.hidden_size, cfg.head_hidden_size, cfg.depth, cfg.head_depth) == (16, 64, 1, 1)
    assert (cfg.num_heads, cfg.head_num_heads, cfg.latent_shape) == (1, 2, (48, 8, 8))
    xl = config_from_original_params(
        {
            "input_size": 16,
            "in_channels": 768,
            "hidden_size": [1152, 2048],
            "depth": [28, 2],
            "num_heads": [16, 16],
        }
    )
    assert xl.replace(name="dit_dh_xl") == dit_dh_xl()  # the released DiT-DH-XL params
    assert (
        config_from_original_params({"use_swiglu": False, "use_rmsnorm": False, "use_pos_embed": False}).mlp
        == "gelu"
    )


@pytest.mark.parametrize(
    ("params", "param"),
    [
        ({"wo_shift": True}, "wo_shift"),
        ({"use_rope": False}, "use_rope"),
        ({"patch_size": 2}, "patch_size"),
        ({"hidden_size": [1, 2, 3]}, "hidden_size"),
    ],
)
def test_config_from_params_refuses_what_the_original_cannot_run(params: dict, param: str) -> None:
    with pytest.raises(ConfigError, match=param) as info:
        config_from_original_params(params)
    assert info.value.param == param
    with pytest.raises(ConfigError, match="learn_sigma"):
        config_from_original_params({"learn_sigma": True})


def test_unreadable_files(tmp_path: Path) -> None:
    cfg = config("rae")
    with pytest.raises(MissingFileError, match="nope.pt"):
        load_original_dit(tmp_path / "nope.pt", cfg)
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(DamagedFileError, match="junk.pt"):
        load_original_dit(tmp_path / "junk.pt", cfg)
    torch.save({"ema": rae_state(), "config": Path("x")}, tmp_path / "pickle.pt")  # needs code to unpickle
    with pytest.raises(UnsafeFileError, match="pickle.pt"):
        load_original_dit(tmp_path / "pickle.pt", cfg)
