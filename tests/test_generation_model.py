"""The DiT-DH generator (uae.models.dit) and its config against the original code (tests/fixtures/generation)."""

from __future__ import annotations

import json

import pytest
import torch
from generation_fixtures import GEN, TOL, config, max_err, model, reference

from uae.errors import ConfigError, InputError
from uae.layers.dit import RMSNorm, sincos_table, swiglu_hidden
from uae.layers.rope import rope_table, rotate_pairs
from uae.models.dit import DiTDH
from uae.models.dit_config import RELEASED_CONFIGS, DiTDHConfig, dit_dh_s, dit_dh_xl, uae_64token_dit

#: Parameters of the originals' DiTwDDTHead at the released sizes (counted with the original code).
ORIGINAL_PARAM_COUNTS = {"dit_dh_xl": 838_675_796, "dit_dh_s": 196_455_764, "dit_dh_xl_512": 839_560_532}


@torch.no_grad()
def test_forward_matches_the_original_rae() -> None:
    ref = reference("rae")
    x, t, y = ref["forward.x"], ref["forward.t"], ref["forward.y"]
    assert max_err(model("rae")(x, t, y), ref["forward.out"]) < TOL
    assert max_err(model("rae")(x, t, torch.full_like(y, 10)), ref["forward.out_null"]) < TOL
    assert max_err(model("rae_guidance")(x, t, y), ref["forward.guidance_out"]) < TOL


@torch.no_grad()
def test_forward_matches_the_original_authors_and_1d_rope() -> None:
    ref = reference("authors")
    t, y = ref["forward.t"], ref["forward.y"]
    assert max_err(model("authors")(ref["forward.x"], t, y), ref["forward.out"]) < TOL
    m = model("authors_rope1d")  # rectangular 4x8 grid, 1-D RoPE
    assert m.config.rope == "1d" and m.config.input_size == (4, 8)
    assert max_err(m(ref["rope1d.x"], t, y), ref["rope1d.out"]) < TOL


def test_rope_tables_equal_the_originals_buffers() -> None:
    sd = torch.load(GEN / "rae" / "stage2_model.pt", weights_only=True)
    cos, sin = rope_table(16, (8, 8), "2d")  # trunk: 32 wide, 2 heads
    assert torch.equal(cos, sd["enc_feat_rope.freqs_cos"]) and torch.equal(sin, sd["enc_feat_rope.freqs_sin"])
    cos, _ = rope_table(32, (8, 8), "2d")  # head: 64 wide, 2 heads
    assert torch.equal(cos, sd["dec_feat_rope.freqs_cos"])
    sd1 = torch.load(GEN / "authors" / "rope1d_stage_2.pt", weights_only=True)["ema"]
    _, sin = rope_table(24, (4, 8), "1d")
    assert torch.equal(sin, sd1["dec_feat_rope.freqs_sin"])
    # 2-D: the first half of a head rotates with the row, the second with the column
    cos, _ = rope_table(8, (3, 3), "2d")
    assert torch.equal(cos[1, :4], cos[0, :4]) and not torch.equal(cos[1, 4:], cos[0, 4:])
    assert torch.equal(cos[3, 4:], cos[0, 4:]) and not torch.equal(cos[3, :4], cos[0, :4])
    assert torch.equal(rotate_pairs(torch.tensor([1.0, 2.0, 3.0, 4.0])), torch.tensor([-2.0, 1.0, -4.0, 3.0]))
    with pytest.raises(ValueError, match="square"):
        rope_table(8, (2, 4), "2d")


def test_sincos_table_layout() -> None:
    table = sincos_table(4, 1, 2)  # one row, two columns: [sin x, cos x, sin y, cos y], w = 1
    expected = torch.tensor(
        [[0.0, 1.0, 0.0, 1.0], [torch.sin(torch.tensor(1.0)), torch.cos(torch.tensor(1.0)), 0, 1]]
    )
    assert torch.allclose(table, expected)


def test_rmsnorm_keeps_the_input_layout_and_torchs_values() -> None:
    x = torch.randn(2, 6, 5).transpose(1, 2)  # a transposed view, like patch-embedding tokens
    ours, theirs = RMSNorm(6), torch.nn.RMSNorm(6, eps=1e-6)
    with torch.no_grad():
        ours.weight.uniform_(0.5, 1.5)
        theirs.weight.copy_(ours.weight)
        out = ours(x)
        assert torch.equal(out, theirs(x))
    assert (
        out.stride() == x.stride()
    )  # torch's returns a contiguous tensor (the matmuls then round otherwise)


def test_released_sizes_have_the_originals_parameter_counts() -> None:
    for name, count in ORIGINAL_PARAM_COUNTS.items():
        with torch.device("meta"):
            m = DiTDH(RELEASED_CONFIGS[name]())
        assert sum(p.numel() for p in m.parameters()) == count, name
    assert (
        swiglu_hidden(1152, 4.0) == 3072
        and swiglu_hidden(2048, 4.0) == 5461
        and swiglu_hidden(384, 4.0) == 1024
    )
    xl, s = dit_dh_xl(), dit_dh_s()
    assert (xl.hidden_size, xl.depth, xl.num_heads, xl.head_hidden_size, xl.head_depth) == (
        1152,
        28,
        16,
        2048,
        2,
    )
    assert (s.hidden_size, s.depth, s.num_heads, s.head_num_heads) == (384, 12, 6, 16)
    assert xl.latent_shape == (768, 16, 16) and RELEASED_CONFIGS["dit_dh_xl_512"]().latent_shape == (
        768,
        32,
        32,
    )
    assert uae_64token_dit().rope == "2d" and uae_64token_dit().null_class == 1000


def test_config_round_trips_through_json() -> None:
    cfg = config("authors_rope1d")
    again = DiTDHConfig.from_dict(json.loads(json.dumps(cfg.to_dict())))
    assert again == cfg and again.input_size == (4, 8)
    assert again.replace(num_classes=20).num_classes == 20


@pytest.mark.parametrize(
    ("changes", "param"),
    [
        ({"hidden_size": 0}, "hidden_size"),
        ({"depth": 2.0}, "depth"),
        ({"num_heads": 5}, "num_heads"),  # 1152 / 5
        ({"head_num_heads": 24}, "head_num_heads"),  # 2048 / 24
        ({"num_heads": 64}, "num_heads"),  # head size 18, not a multiple of 4 for 2-D RoPE
        ({"input_size": (16, 8)}, "rope"),  # 2-D RoPE needs a square grid
        ({"input_size": (16,)}, "input_size"),
        ({"patch_size": 3}, "input_size"),
        ({"class_dropout_prob": 1.0}, "class_dropout_prob"),
        ({"mlp": "relu"}, "mlp"),
        ({"rope": "3d"}, "rope"),
        ({"pos_embed": "rope"}, "pos_embed"),
        ({"qk_norm": "yes"}, "qk_norm"),
        ({"mlp_ratio": float("nan")}, "mlp_ratio"),
    ],
)
def test_config_validation_names_the_field(changes: dict, param: str) -> None:
    with pytest.raises(ConfigError, match=param) as info:
        dit_dh_xl(**changes)
    assert info.value.param == param


def test_config_from_dict_refuses_unknown_fields() -> None:
    with pytest.raises(ConfigError, match="hidden"):
        DiTDHConfig.from_dict({"hidden": 3})
    with pytest.raises(ConfigError, match="architecture"):
        DiTDHConfig.from_dict({"architecture": "UAE"})


def test_new_model_starts_like_the_originals() -> None:
    torch.manual_seed(0)
    cfg = config("rae")
    m = DiTDH(cfg).eval()
    x = torch.randn(2, *cfg.latent_shape)
    with torch.no_grad():
        out = m(x, torch.rand(2), torch.tensor([1, 10]))
    assert torch.equal(out, torch.zeros_like(out))  # adaLN-Zero: zero output layer
    assert torch.equal(m.pos_embed[0], sincos_table(cfg.hidden_size, 8, 8))
    assert not m.pos_embed.requires_grad and not m.t_embed.freqs.requires_grad
    assert DiTDH(cfg.replace(pos_embed="learned")).pos_embed.requires_grad
    assert DiTDH(cfg.replace(pos_embed="none")).pos_embed is None
    gelu = DiTDH(cfg.replace(mlp="gelu", norm="layernorm", qk_norm=True))
    assert "trunk.0.mlp.fc1.weight" in gelu.state_dict() and "trunk.0.attn.q_norm.weight" in gelu.state_dict()


def test_forward_validates_its_inputs() -> None:
    m = model("rae")
    x = torch.zeros(2, 48, 8, 8)
    with pytest.raises(InputError, match=r"\(B, 48, 8, 8\)"):
        m(torch.zeros(2, 32, 8, 8), torch.zeros(2), torch.zeros(2, dtype=torch.long))
    with pytest.raises(InputError, match="times"):
        m(x, torch.zeros(3), torch.zeros(2, dtype=torch.long))
    with pytest.raises(InputError, match="labels"):
        m(x, torch.zeros(2), torch.zeros(2))
