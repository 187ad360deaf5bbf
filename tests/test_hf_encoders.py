"""transformers encoders (DINOv2 with registers, CLIP, SigLIP2) converted to uae match golden outputs.

The fixtures (tests/fixtures/hf_encoders/README.md) hold tiny randomly drawn transformers models in
4.57 and 5.x key names, fixed inputs, and ``last_hidden_state`` at the native and other sizes.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors import safe_open

import uae
from uae.convert.common import Source
from uae.convert.hf_encoders import convert_encoder, convert_hf_encoder, encoder_from_hf, find_prefix
from uae.layers.encoder import ENCODER_FAMILIES, POS_RESAMPLE_RULES, resample_pos_table
from uae.models.config import ENCODER_FAMILIES as CONFIG_FAMILIES
from uae.models.config import POS_RESAMPLE_RULES as CONFIG_RULES

FIXTURES = Path(__file__).parent / "fixtures" / "hf_encoders"
FAMILIES = ("dinov2", "clip", "siglip2")
#: Prefix tokens transformers returns in last_hidden_state (CLS + registers).
PREFIX = {"dinov2": 5, "clip": 1, "siglip2": 0}
#: The source's final-norm weights (absent from the authors' checkpoints).
FINAL_NORM = {
    "dinov2": "layernorm.",
    "clip": "vision_model.post_layernorm.",
    "siglip2": "vision_model.post_layernorm.",
}
ATOL = 1e-5

_CACHE: dict[str, tuple[dict[str, torch.Tensor], dict[str, str]]] = {}


def fixture(family: str) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    if family not in _CACHE:
        with safe_open(str(FIXTURES / f"{family}.safetensors"), "pt") as f:
            _CACHE[family] = ({k: f.get_tensor(k) for k in f.keys()}, f.metadata())
    t, meta = _CACHE[family]
    return dict(t), meta


def hf_state(t: dict[str, torch.Tensor], version: str = "hf") -> dict[str, torch.Tensor]:
    return {k[len(version) + 1 :]: v for k, v in t.items() if k.startswith(version + ".")}


def sizes(t: dict[str, torch.Tensor]) -> list[str]:
    return sorted(k.split(".", 1)[1] for k in t if k.startswith("pixel_values."))


def check_outputs(enc, t: dict[str, torch.Tensor], family: str, ref: str) -> None:
    for size in sizes(t):
        x, expected = t[f"pixel_values.{size}"], t[f"{ref}.{size}"]
        with torch.no_grad():
            tokens = enc.forward_tokens(x)
            latent = enc(x)
        err = (tokens - expected).abs().max().item()
        assert err <= ATOL, f"{family} {ref} at {size}: max abs error {err:.2e}"
        h, w = (int(s) // enc.patch_size for s in size.split("x"))
        assert latent.shape == (x.shape[0], enc.embed_dim, h, w)
        patches = expected[:, PREFIX[family] :].transpose(1, 2).reshape(latent.shape)
        assert (latent - patches).abs().max().item() <= ATOL


def test_family_and_rule_names_agree_with_the_config() -> None:
    assert tuple(ENCODER_FAMILIES) == CONFIG_FAMILIES and POS_RESAMPLE_RULES == CONFIG_RULES


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("version", ["hf", "hf5"])
def test_converted_encoder_matches_transformers_at_all_sizes(family: str, version: str) -> None:
    t, meta = fixture(family)
    assert len(sizes(t)) >= 3  # native, a smaller and a larger grid (positions resampled both ways)
    enc = encoder_from_hf(hf_state(t, version), family, latent_norm=False, encoder_heads=2)
    assert enc.num_prefix_tokens == PREFIX[family]
    assert enc.pos_grid == json.loads(meta["config"])["image_size"] // 4
    check_outputs(enc, t, family, "last_hidden_state")


@pytest.mark.parametrize("family", FAMILIES)
def test_authors_encoder_without_final_norm_affine(family: str) -> None:
    """The authors' v2 encoders remove the final norm's affine; their checkpoints lack its weights."""
    t, _ = fixture(family)
    state = {k: v for k, v in hf_state(t).items() if not k.startswith(FINAL_NORM[family])}
    conv = convert_hf_encoder(state, family)
    assert conv.config["latent_norm"] == (family != "clip")  # CLIP's last_hidden_state has no final norm
    enc = encoder_from_hf(state, family, encoder_heads=2)
    check_outputs(enc, t, family, "authors_last_hidden_state")


def test_dinov2_keeps_the_table_and_records_dropped_keys() -> None:
    t, _ = fixture("dinov2")
    conv = convert_hf_encoder(hf_state(t), "dinov2", latent_norm=True, encoder_heads=2)
    assert conv.state["encoder.vit.pos_embed"].shape == (1, 144, 32)  # 12x12 kept, CLS slot folded
    assert conv.config["encoder_pos_grid"] == 12 and conv.config["encoder_pos_resample"] == "hf_dinov2"
    assert conv.config["img_size"] == 48 and conv.config["encoder_reg_tokens"] == 4
    assert set(conv.dropped) == {"embeddings.mask_token", "layernorm.weight", "layernorm.bias"}
    assert all(conv.dropped.values())


def test_prefixed_and_two_tower_files() -> None:
    t, _ = fixture("dinov2")
    authors = {f"encoder.encoder.{k}": v for k, v in hf_state(t).items()}
    assert find_prefix(authors, "dinov2") == "encoder.encoder."
    enc = encoder_from_hf(authors, "dinov2", latent_norm=False, encoder_heads=2)
    check_outputs(enc, t, "dinov2", "last_hidden_state")

    t, _ = fixture("clip")
    two_tower = dict(hf_state(t), **{"text_model.embeddings.token_embedding.weight": torch.zeros(3, 4)})
    two_tower["logit_scale"] = torch.ones(())
    conv = convert_hf_encoder(two_tower, "clip")
    assert "text_model.embeddings.token_embedding.weight" in conv.dropped and "logit_scale" in conv.dropped
    assert "vision_model.post_layernorm.weight" in conv.dropped


@pytest.mark.parametrize("family", FAMILIES)
def test_conversion_is_strict(family: str) -> None:
    state = hf_state(fixture(family)[0])
    prefix = find_prefix(state, family)
    extra = dict(state, **{f"{prefix}encoder.layers.0.unknown.weight": torch.zeros(1)})
    with pytest.raises(ValueError, match=r"not understood.*unknown\.weight"):
        convert_hf_encoder(extra, family)
    missing = dict(state)
    key = next(k for k in state if k.endswith("mlp.fc2.bias"))
    missing.pop(key)
    with pytest.raises(ValueError, match=key.replace(".", r"\.")):
        convert_hf_encoder(missing, family)
    with pytest.raises(ValueError, match=r"decoder\.x"):  # outside the prefix, or not understood
        convert_hf_encoder(dict(state, **{"decoder.x": torch.zeros(1)}), family, prefix=prefix)
    with pytest.raises(ValueError, match="not one transformers"):
        convert_hf_encoder({"a.b": torch.zeros(1)}, family)


def test_convert_encoder_gives_release_converters_weights_and_config() -> None:
    """What the release converters use (it replaced convert_hf_dinov2, whose grid argument was unused)."""
    state = hf_state(fixture("dinov2")[0])
    src = Source(state, "test")
    enc, cfg = convert_encoder(src, "dinov2", "", latent_norm=False)
    src.check_consumed()
    assert enc["encoder.vit.pos_embed"].shape == (1, 144, 32) and "encoder.vit.norm.weight" in enc
    assert cfg["encoder_pos_grid"] == 12 and cfg["latent_norm"] is False and "img_size" not in cfg


@pytest.mark.parametrize("family", FAMILIES)
def test_uae_with_a_converted_encoder_runs(family: str, tmp_path: Path) -> None:
    """A full UAE built from the converted config: encoder latent equals transformers' tokens."""
    t, _ = fixture(family)
    state = {k: v for k, v in hf_state(t).items() if not k.startswith(FINAL_NORM[family])}
    conv = convert_hf_encoder(state, family, encoder_heads=2)
    cfg = uae.get_config("uae_test").replace(encoder_weights="", **conv.config)
    cfg = cfg.replace(img_size=32, decoder_patch_size=4)
    model = uae.UAE(cfg).eval()
    own = model.state_dict()
    model.load_state_dict({**own, **conv.state}, strict=True)
    x = t["pixel_values.32x32"]  # already normalised
    with torch.no_grad():
        latent = model.encoder(x)
        out = model(torch.rand(2, 3, 32, 32))
    expected = t["authors_last_hidden_state.32x32"][:, PREFIX[family] :]
    assert (latent.flatten(2).transpose(1, 2) - expected).abs().max() <= ATOL
    assert out.sample.shape == (2, 3, 32, 32)
    # config.json carries the family and the table: a saved model reloads and still matches at 2x size.
    model.save_pretrained(tmp_path)
    loaded = uae.UAE.from_pretrained(tmp_path)
    assert (
        loaded.config.encoder_family == family
        and loaded.config.encoder_pos_grid == conv.config["encoder_pos_grid"]
    )
    x2 = t["pixel_values.64x64"]
    with torch.no_grad():
        latent2 = loaded.encoder(x2)
    expected2 = t["authors_last_hidden_state.64x64"][:, PREFIX[family] :]
    assert (latent2.flatten(2).transpose(1, 2) - expected2).abs().max() <= ATOL


@pytest.mark.parametrize("family", ["clip", "siglip2"])
def test_uae_builds_for_each_family_from_the_config(family: str) -> None:
    cfg = uae.get_config("uae_test").replace(
        encoder_family=family, encoder_reg_tokens=0, encoder_init_values=None, encoder_weights=""
    )
    model = uae.UAE(cfg).eval()
    vit = model.encoder.vit
    assert (vit.cls_token is None) == (family == "siglip2")
    assert isinstance(vit.norm_pre, torch.nn.LayerNorm) == (family == "clip")
    assert vit.patch_embed.proj.bias is None if family == "clip" else vit.patch_embed.proj.bias is not None
    mean = {"clip": 0.48145466, "siglip2": 0.5}[family]
    assert model.pixel_mean.flatten()[0].item() == pytest.approx(mean)
    with torch.no_grad():
        out = model(torch.rand(2, 3, 32, 32))
    assert out.latent.shape == (2, cfg.encoder_dim, cfg.grid_size, cfg.grid_size)
    with pytest.raises(ValueError, match="cannot initialise"):
        model.encoder.load_dinov2_state_dict({})


def test_config_validates_the_encoder_fields() -> None:
    with pytest.raises(ValueError, match="encoder_family"):
        uae.UAEConfig(encoder_family="vit")
    with pytest.raises(ValueError, match="encoder_pos_resample"):
        uae.UAEConfig(encoder_pos_resample="bilinear")
    with pytest.raises(ValueError, match="encoder_pos_grid"):
        uae.UAEConfig(encoder_pos_grid=0)


def test_resample_rules() -> None:
    """HF's CLIP/SigLIP rule is not antialiased; DINOv2's is; all skip the native square size."""
    torch.manual_seed(0)
    table = torch.randn(1, 64, 8)
    for rule in POS_RESAMPLE_RULES:
        assert resample_pos_table(table, (8, 8), (8, 8), rule) is table
    down = {r: resample_pos_table(table, (4, 4), (8, 8), r) for r in POS_RESAMPLE_RULES}
    assert torch.equal(down["timm"], down["hf_dinov2"]) and torch.equal(down["hf_clip"], down["hf_siglip"])
    assert (down["timm"] - down["hf_clip"]).abs().max() > 0.05
    grid = table.reshape(1, 8, 8, 8).permute(0, 3, 1, 2)
    plain = torch.nn.functional.interpolate(grid, size=(4, 4), mode="bicubic", align_corners=False)
    assert torch.equal(down["hf_clip"], plain.permute(0, 2, 3, 1).reshape(1, 16, 8))
    with pytest.raises(ValueError, match="unknown position resampling rule"):
        resample_pos_table(table, (4, 4), (8, 8), "nearest")
