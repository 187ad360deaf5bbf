"""uae.layers.vit computes exactly what timm's ViT parts compute (same keys, same seeded init, same outputs).

uae builds its encoder and decoder from :mod:`uae.layers.vit` so that loading a model does not import timm
(and through it torchvision and ``torch._dynamo``: seconds of start-up). These tests hold it to timm.
"""

from __future__ import annotations

from functools import partial

import pytest
import torch
from timm.layers import trunc_normal_ as timm_trunc_normal_
from timm.layers.pos_embed_sincos import build_sincos2d_pos_embed
from timm.models.vision_transformer import Block as TimmBlock
from timm.models.vision_transformer import VisionTransformer as TimmViT
from torch import nn

from uae.layers import vit

FAMILIES = {  # the options uae.layers.encoder.ENCODER_FAMILIES passes
    "dinov2": {"class_token": True, "pre_norm": False, "act_layer": None, "eps": 1e-6, "reg_tokens": 4},
    "clip": {"class_token": True, "pre_norm": True, "act_layer": "quick_gelu", "eps": 1e-5, "reg_tokens": 0},
    "siglip2": {"class_token": False, "pre_norm": False, "act_layer": "gelu_tanh", "eps": 1e-6, "reg_tokens": 0},
}  # fmt: skip
SIZES = {"img_size": 28, "patch_size": 7, "embed_dim": 32, "depth": 2, "num_heads": 4, "mlp_ratio": 3.0}


def _pair(family: str, init_values: float | None = 1e-5) -> tuple[nn.Module, nn.Module]:
    spec = FAMILIES[family]
    norm = partial(nn.LayerNorm, eps=spec["eps"])
    common = dict(
        **SIZES,
        init_values=init_values,
        reg_tokens=spec["reg_tokens"],
        class_token=spec["class_token"],
        pre_norm=spec["pre_norm"],
        act_layer=spec["act_layer"],
        norm_layer=norm,
    )
    torch.manual_seed(0)
    ref = TimmViT(
        **common,
        no_embed_class=True,
        global_pool="token" if spec["class_token"] else "",
        num_classes=0,
        dynamic_img_size=True,
    ).eval()
    torch.manual_seed(0)
    ours = vit.VisionTransformer(**common).eval()
    return ours, ref


@pytest.mark.parametrize("family", list(FAMILIES))
def test_vit_matches_timm_keys_init_and_outputs(family: str) -> None:
    ours, ref = _pair(family)
    a, b = ours.state_dict(), ref.state_dict()
    assert list(a) == list(b)
    for k in a:
        assert torch.equal(a[k], b[k]), k  # the same seeded initialisation
    assert ours.num_prefix_tokens == ref.num_prefix_tokens
    assert ours.patch_embed.grid_size == ref.patch_embed.grid_size
    x = torch.randn(2, 3, 28, 28)
    for side in (28, 42):  # the table's grid, and a resampled one
        xs = torch.randn(2, 3, side, side)
        with torch.no_grad():
            assert torch.equal(ours.forward_features(xs), ref.forward_features(xs)), side
    for m in (*ours.modules(), *ref.modules()):  # the explicit-softmax path too
        if hasattr(m, "fused_attn"):
            m.fused_attn = False
    with torch.no_grad():
        assert torch.equal(ours.forward_features(x), ref.forward_features(x))


def test_vit_trains_like_timm() -> None:
    ours, ref = _pair("dinov2")
    x = torch.randn(2, 3, 28, 28)
    for m in (ours, ref):
        m.train()
        m.forward_features(x).square().mean().backward()
    grads = {k: p.grad for k, p in ref.named_parameters()}
    for k, p in ours.named_parameters():
        assert torch.equal(p.grad, grads[k]), k


def test_timm_filter_reads_original_dinov2_names_into_our_vit() -> None:
    """``load_dinov2_state_dict`` hands our ViT to timm's ``checkpoint_filter_fn``: it must see timm's layout."""
    from timm.models.vision_transformer import checkpoint_filter_fn

    ours, ref = _pair("dinov2")
    original = {k: v for k, v in ref.state_dict().items() if k not in ("cls_token", "reg_token", "pos_embed")}
    original |= {
        "cls_token": torch.randn(1, 1, 32),
        "register_tokens": torch.randn(1, 4, 32),
        "mask_token": torch.zeros(1, 32),
        "pos_embed": torch.randn(1, 1 + 6 * 6, 32),  # a CLS slot and a 6x6 grid (ours stores 4x4)
    }
    a = checkpoint_filter_fn(dict(original), ours)
    b = checkpoint_filter_fn(dict(original), ref)
    assert list(a) == list(b)
    for k in a:
        assert torch.equal(a[k], b[k]), k
    assert a["pos_embed"].shape == ours.pos_embed.shape


@pytest.mark.parametrize("eps", [None, 1e-12])
def test_decoder_block_matches_timm(eps: float | None) -> None:
    norm = nn.LayerNorm if eps is None else partial(nn.LayerNorm, eps=eps)
    torch.manual_seed(1)
    ref = TimmBlock(48, 4, mlp_ratio=4096 / 1152, qkv_bias=True, norm_layer=norm)
    torch.manual_seed(1)
    ours = vit.Block(48, 4, mlp_ratio=4096 / 1152, qkv_bias=True, norm_layer=norm)
    assert list(ours.state_dict()) == list(ref.state_dict())
    for k, v in ref.state_dict().items():
        assert torch.equal(ours.state_dict()[k], v), k
    x = torch.randn(2, 17, 48)
    assert torch.equal(ours(x), ref(x))


def test_sincos_table_and_trunc_normal_match_timm() -> None:
    for grid, dim in (((16, 16), 1152), ((4, 6), 32)):
        assert torch.equal(vit.sincos_2d_pos_embed(grid, dim), build_sincos2d_pos_embed(list(grid), dim=dim))
    a, b = torch.empty(1000), torch.empty(1000)
    torch.manual_seed(3)
    vit.trunc_normal_(a, std=0.02)
    torch.manual_seed(3)
    timm_trunc_normal_(b, std=0.02)
    assert torch.equal(a, b) and a.abs().max() <= 2.0


def test_bad_options_are_refused() -> None:
    with pytest.raises(ValueError, match="act_layer"):
        vit.VisionTransformer(**SIZES, act_layer="relu6")
    with pytest.raises(ValueError, match="divisible"):
        vit.Attention(30, 4)
    with pytest.raises(ValueError, match="divisible by 4"):
        vit.sincos_2d_pos_embed((2, 2), 30)
