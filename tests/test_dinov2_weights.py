"""Initialising the encoder from DINOv2 weights: original and timm key names, resizing, errors."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file
from timm.layers import resample_abs_pos_embed
from timm.models.vision_transformer import VisionTransformer

import uae


def _source_vit(grid: int = 6) -> VisionTransformer:
    """A random timm DINOv2-shaped ViT matching uae_test's encoder at another resolution."""
    torch.manual_seed(7)
    vit = VisionTransformer(
        img_size=4 * grid,
        patch_size=4,
        embed_dim=32,
        depth=2,
        num_heads=2,
        init_values=1e-5,
        reg_tokens=4,
        no_embed_class=True,
        num_classes=0,
    )
    with torch.no_grad():
        for p in vit.parameters():
            p.normal_(std=0.05)
    return vit.eval()


def _to_original_keys(vit: VisionTransformer) -> dict[str, torch.Tensor]:
    """The facebookresearch/dinov2 key layout: CLS slot in pos_embed, register_tokens, mask_token."""
    sd = {k: v.clone() for k, v in vit.state_dict().items()}
    reg = sd.pop("reg_token")
    pos = sd.pop("pos_embed")
    sd["pos_embed"] = torch.cat([torch.zeros(1, 1, pos.shape[-1]), pos], dim=1)
    sd["register_tokens"] = reg
    sd["mask_token"] = torch.zeros(1, pos.shape[-1])
    return sd


def test_original_keys_convert_and_resize(tmp_path: Path) -> None:
    src = _source_vit(grid=6)
    path = tmp_path / "dinov2_tiny_reg4_pretrain.pth"
    torch.save(_to_original_keys(src), path)
    model = uae.create_model("uae_test")  # 8x8 grid: the 6x6 position table must be resized
    model.load_encoder_weights(path)
    vit = model.encoder.vit
    assert torch.equal(vit.patch_embed.proj.weight, src.patch_embed.proj.weight)
    assert torch.equal(vit.blocks[1].attn.qkv.weight, src.blocks[1].attn.qkv.weight)
    assert torch.equal(vit.blocks[0].ls1.gamma, src.blocks[0].ls1.gamma)
    assert torch.equal(vit.reg_token, src.reg_token)
    expected_pos = resample_abs_pos_embed(src.pos_embed, [8, 8], num_prefix_tokens=0)
    torch.testing.assert_close(vit.pos_embed, expected_pos)


@pytest.mark.parametrize("fmt", ["original_pth", "timm_safetensors"])
def test_loaded_encoder_matches_source_model(tmp_path: Path, fmt: str) -> None:
    src = _source_vit(grid=6)
    if fmt == "original_pth":
        path = tmp_path / "w.pth"
        torch.save({"model": _to_original_keys(src)}, path)
    else:
        path = tmp_path / "model.safetensors"
        save_file({k: v.contiguous() for k, v in src.state_dict().items()}, str(path))
    model = uae.create_model("uae_test", img_size=24).eval().load_encoder_weights(path)
    x = torch.rand(2, 3, 24, 24)
    with torch.no_grad():
        src.norm = torch.nn.Identity()  # uae replaces DINOv2's final norm by a non-affine LayerNorm
        raw = src.forward_features(model.normalize(x))[:, src.num_prefix_tokens :]
        expected = torch.nn.functional.layer_norm(raw, (32,), eps=1e-6)
        z = model.encode(x).latent
    torch.testing.assert_close(z.flatten(2).transpose(1, 2), expected, rtol=1e-5, atol=1e-5)


def test_mismatched_checkpoint_names_keys(tmp_path: Path) -> None:
    sd = _to_original_keys(_source_vit())
    sd.pop("blocks.1.mlp.fc2.bias")
    sd["blocks.2.norm1.weight"] = torch.ones(32)
    path = tmp_path / "bad.pth"
    torch.save(sd, path)
    with pytest.raises(ValueError) as e:
        uae.create_model("uae_test").load_encoder_weights(path)
    assert "blocks.1.mlp.fc2.bias" in str(e.value) and "blocks.2.norm1.weight" in str(e.value)


def test_wrong_width_is_a_shape_error(tmp_path: Path) -> None:
    path = tmp_path / "w.pth"
    torch.save(_to_original_keys(_source_vit()), path)
    with pytest.raises(ValueError, match="shape mismatches"):
        uae.create_model("uae_test", encoder_dim=64, encoder_heads=2).load_encoder_weights(path)


def test_offline_hub_name_without_cache_fails_fast_naming_the_file(tmp_path: Path, monkeypatch) -> None:
    model = uae.create_model("uae_test", encoder_weights="timm/vit_base_patch14_reg4_dinov2.lvd142m")
    t = time.time()
    with pytest.raises(FileNotFoundError) as e:
        model.load_encoder_weights()
    assert time.time() - t < 1.0
    msg = str(e.value)
    assert "model.safetensors" in msg and "timm/vit_base_patch14_reg4_dinov2.lvd142m" in msg
    assert "load_encoder_weights(" in msg


def test_missing_local_file() -> None:
    with pytest.raises(FileNotFoundError, match="not found: /nonexistent/dinov2.pth"):
        uae.create_model("uae_test").load_encoder_weights("/nonexistent/dinov2.pth")


def test_frozen_teacher_copy() -> None:
    model = uae.create_model("uae_test")
    teacher = model.encoder.frozen_copy()
    assert not teacher.training
    assert all(not p.requires_grad for p in teacher.parameters())
    assert all(p.requires_grad for p in model.encoder.parameters())
    x = torch.rand(1, 3, 32, 32)
    torch.testing.assert_close(teacher(model.normalize(x)), model.eval().encode(x).latent)


def test_truncated_or_foreign_weight_files_are_one_line_errors(tmp_path: Path) -> None:
    from uae import files
    from uae.layers.encoder import read_state_dict

    good = tmp_path / "w.safetensors"
    save_file({"a": torch.zeros(64, 64)}, str(good))
    cut = tmp_path / "cut.safetensors"
    cut.write_bytes(good.read_bytes()[:-100])
    pickle_file = tmp_path / "w.pt"
    pickle_file.write_bytes(b"not a torch file")
    for reader in (read_state_dict, files.read_state_dict):
        with pytest.raises(ValueError, match=r"cut\.safetensors.*truncated or not a safetensors file"):
            reader(cut)
        with pytest.raises(ValueError, match=r"w\.pt.*weights_only=True"):
            reader(pickle_file)
