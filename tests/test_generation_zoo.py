"""Generators in the zoo: one registry over model families, the weights table with paired tokenizers and
sampling defaults, DiTDH's Hub mixin, create_model(..., pretrained=True) end to end from a Hub cache, and the
authors' 64-token tokenizer (per-position statistics; decoding a latent that did not come from encode)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from generation_fixtures import (
    AUTHORS_V2_DINOV2,
    GEN,
    TOL,
    lay_out_authors_generation,
    lay_out_rae_generation,
    max_err,
    reference,
    stage1_params_64token,
)
from safetensors.torch import load_file, save_file

import uae
from uae.cli import main as cli_main
from uae.errors import DamagedFileError, InputError, UAELoadError
from uae.factory import load_model
from uae.models.dit import DiTDH
from uae.models.dit_config import DiTDHConfig
from uae.models.hub import PROVENANCE_NAME
from uae.models.pretrained import get_pretrained_cfg
from uae.models.registry import FAMILIES, get_entry

COMMIT = "aaaabbbbccccddddeeeeffff0000111122223333"
GENERATORS = [
    "dit_dh_xl.rae",
    "dit_dh_s.rae",
    "dit_dh_xl_512.rae",
    "dit_dh_s_512.rae",
    "uae_64token_dit.authors_v2",
]


# ---------------------------------------------------------------------------------------------- registry
def test_one_registry_over_families() -> None:
    gens = uae.list_models(family="generator")
    assert {
        "dit_dh_xl",
        "dit_dh_s",
        "dit_dh_xl_512",
        "dit_dh_s_512",
        "uae_64token_dit",
        "dit_dh_test",
    } <= set(gens)
    toks = uae.list_models(family="tokenizer")
    assert "uae_test" in toks and not set(gens) & set(toks)
    assert sorted(gens + toks) == uae.list_models()
    assert get_entry("dit_dh_xl").model_class() is DiTDH and get_entry("uae_test").model_class() is uae.UAE
    assert set(FAMILIES) == {"tokenizer", "generator"}
    assert uae.list_models("dit_*", pretrained=True, family="generator")[0].startswith("dit_dh_")
    assert "uae_base_p14_dinov2.authors_v2_64token" in uae.list_models(pretrained=True, family="tokenizer")
    with pytest.raises(InputError, match="unknown model family 'vae'"):
        uae.list_models(family="vae")


def test_create_model_builds_each_family() -> None:
    torch.manual_seed(0)
    tiny = uae.create_model("dit_dh_test")
    assert isinstance(tiny, DiTDH) and tiny.config.latent_shape == uae.get_config("uae_test").latent_shape
    # the released sizes, shrunk by overrides (an XL is 675M parameters)
    small = uae.create_model(
        "dit_dh_xl", hidden_size=32, depth=1, num_heads=2, head_hidden_size=32, head_depth=1, head_num_heads=2
    )
    assert (
        isinstance(small, DiTDH) and small.config.input_size == (16, 16) and small.config.in_channels == 768
    )
    assert uae.get_config("dit_dh_xl_512").input_size == (32, 32)
    assert uae.get_config("dit_dh_s").hidden_size == 384
    with pytest.raises(TypeError):
        uae.create_model("dit_dh_test", img_size=32)  # a tokenizer field


def test_weights_table_pairs_each_generator_with_its_tokenizer() -> None:
    for name in GENERATORS:
        cfg = get_pretrained_cfg(name)
        gen = cfg.generation
        assert cfg.source == "dit" and gen is not None, name
        assert all(f.verified for f in cfg.files.values()), (
            name
        )  # every path is named by the release's config
        tok = get_pretrained_cfg(gen.tokenizer)
        assert tok is not None and get_entry(tok.architecture).family == "tokenizer", name
        arch = uae.get_config(cfg.architecture)
        c, h, w = arch.latent_shape
        assert gen.shift_dim == c * h * w and gen.shift_base == 4096, name  # sqrt(C*H*W / 4096), as released
        if gen.guidance_model:
            guide = get_pretrained_cfg(gen.guidance_model)
            assert uae.get_config(guide.architecture).latent_shape == arch.latent_shape
            assert guide.generation.tokenizer == gen.tokenizer
        assert cfg.to_dict()["generation"]["tokenizer"] == gen.tokenizer
    xl = get_pretrained_cfg("dit_dh_xl.rae")
    assert xl.files["checkpoint"].filename == "DiTs/Dinov2/wReg_base/ImageNet256/DiTDH-XL/stage2_model.pt"
    assert xl.hf_hub_id == "nyu-visionx/RAE-collections"
    g = xl.generation
    assert (g.tokenizer, g.guidance_model, g.guidance_method, g.guidance_scale) == (
        "rae_base_p14_dinov2_vitxl.rae",
        "dit_dh_s.rae",
        "autoguidance",
        1.42,
    )
    assert "imagenet1k/stat.pt" in g.latent_stats
    assert (
        get_pretrained_cfg("dit_dh_s.rae")
        .files["checkpoint"]
        .filename.endswith("DiTDH-S_ep14/stage2_model.pt")
    )
    x512 = get_pretrained_cfg("dit_dh_xl_512.rae")
    assert (
        x512.generation.tokenizer == "rae_base_p14_dinov2_vitxl.rae_i512"
        and x512.generation.guidance_scale == 1.5
    )
    assert (
        get_pretrained_cfg("dit_dh_s_512.rae")
        .files["checkpoint"]
        .filename.endswith("DiTDH-S_ep20/stage2_model.pt")
    )
    a = get_pretrained_cfg("uae_64token_dit").generation
    assert (a.tokenizer, a.method, a.num_steps, a.guidance_scale) == (
        "uae_base_p14_dinov2.authors_v2_64token",
        "rk4",
        50,
        1.0,
    )
    tok = get_pretrained_cfg("uae_base_p14_dinov2.authors_v2_64token")
    assert {f.filename for f in tok.files.values()} == {
        "checkpoints/Generative_Modeling/Latent_Modeling/64_tokens/stage_1.pt",
        "checkpoints/Generative_Modeling/Latent_Modeling/64_tokens/normalization_stats.pt",
    }
    assert get_pretrained_cfg("uae_base_p14_dinov2").tag == "authors_v2"  # the default tag is unchanged


def test_models_command_lists_generators(capsys) -> None:
    assert cli_main(["models", "dit_*"]) == 0
    out = capsys.readouterr().out
    assert "dit_dh_xl " in out and "generator; weights: rae" in out
    assert cli_main(["models", "--family", "generator"]) == 0
    out = capsys.readouterr().out
    assert "uae_64token_dit" in out and "uae_demo" not in out
    assert cli_main(["models", "--pretrained", "uae_64token*"]) == 0
    assert "uae_64token_dit.authors_v2" in capsys.readouterr().out


# ---------------------------------------------------------------------------------------------- Hub mixin
def _tiny() -> DiTDH:
    torch.manual_seed(1)
    return uae.create_model("dit_dh_test")


def test_save_and_load_pretrained(tmp_path: Path) -> None:
    model = _tiny()
    model.save_pretrained(tmp_path / "g")
    raw = json.loads((tmp_path / "g" / "config.json").read_text())
    assert raw["architecture"] == "DiTDH" and raw["input_size"] == [8, 8] and "uae_version" in raw
    assert all(not isinstance(v, dict) for v in raw.values())  # flat
    assert "diffusion-transformer" in (tmp_path / "g" / "README.md").read_text()
    loaded = DiTDH.from_pretrained(tmp_path / "g")
    assert loaded.config == model.config and not loaded.training
    sa, sb = model.state_dict(), loaded.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    # the one resolver dispatches on config.json's architecture
    assert isinstance(load_model(str(tmp_path / "g"), family="generator"), DiTDH)
    assert isinstance(load_model(str(tmp_path / "g"), family=None), DiTDH)
    with pytest.raises(InputError, match="is a generator, not a tokenizer"):
        load_model(str(tmp_path / "g"))  # the default: a tokenizer, as every tokenizer command needs
    with pytest.raises(UAELoadError, match="architecture 'DiTDH', expected 'UAE'"):
        uae.UAE.from_pretrained(tmp_path / "g")
    uae.create_model("uae_test").save_pretrained(tmp_path / "t")
    with pytest.raises(UAELoadError, match="not a DiTDH config"):
        DiTDH.from_pretrained(tmp_path / "t")


def test_a_trained_generator_card_names_its_tokenizer_without_local_paths(tmp_path: Path) -> None:
    from huggingface_hub import ModelCard

    from uae.generation.latent_space import LatentSpace
    from uae.training.generator_io import save_generator

    g = uae.create_model("dit_dh_test")
    local = tmp_path / "tokenizers" / "my_tok"
    local.mkdir(parents=True)
    for tokenizer, shown in ((str(local), "`local folder my_tok`"), ("org/uae-tok", "`org/uae-tok`")):
        out = save_generator(g, tmp_path / "g", LatentSpace(latent_shape=(32, 8, 8), tokenizer=tokenizer))
        text = (out / "README.md").read_text()
        assert f"| tokenizer | {shown} |" in text, text
        assert str(tmp_path) not in text
        card = ModelCard(text, ignore_metadata_errors=False)
        assert card.data.library_name == "uae" and "diffusion-transformer" in card.data.tags
    assert LatentSpace.load(tmp_path / "g").mean is None  # saved without statistics, read back so
    g.save_pretrained(tmp_path / "plain")
    assert "| tokenizer | not recorded in this card |" in (tmp_path / "plain" / "README.md").read_text()


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda s: s.pop("final.linear.bias"), "missing"),
        (lambda s: s.__setitem__("extra.weight", torch.zeros(1)), "unexpected"),
        (lambda s: s.__setitem__("y_embed.weight", s["y_embed.weight"].long()), "must be floating point"),
        (lambda s: s["head.0.attn.qkv.weight"].__setitem__((0, 0), float("nan")), "NaN or inf"),
        (lambda s: s.__setitem__("s_embed.bias", torch.zeros(3)), "shapes do not match"),
    ],
    ids=["missing", "unexpected", "dtype", "nan", "shape"],
)
def test_strict_loading_names_the_problem(tmp_path: Path, edit, message: str) -> None:
    _tiny().save_pretrained(tmp_path)
    state = load_file(str(tmp_path / "model.safetensors"))
    edit(state)
    save_file(state, str(tmp_path / "model.safetensors"))
    with pytest.raises(DamagedFileError if message == "NaN or inf" else UAELoadError, match=message):
        DiTDH.from_pretrained(tmp_path)


def test_config_json_strictness(tmp_path: Path) -> None:
    _tiny().save_pretrained(tmp_path)
    raw = json.loads((tmp_path / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps({**raw, "bogus": 1}))
    with pytest.raises(UAELoadError, match="bogus"):
        DiTDH.from_pretrained(tmp_path)
    assert DiTDH.from_pretrained(tmp_path, strict=False).config.name == "dit_dh_test"
    assert DiTDHConfig.from_dict({**raw, "bogus": 1}, strict=False).input_size == (8, 8)


# ---------------------------------------------------------------------------------------------- pretrained
def test_rae_generators_end_to_end(
    hf_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    """create_model("dit_dh_xl.rae", pretrained=True): the fixture's stage2_model.pt at the table's Hub path,
    converted strictly, equal to the original code's forward; the second load comes from the cache."""
    lay_out_rae_generation(hf_home, monkeypatch, COMMIT)
    import uae.convert.dit as conv

    calls = []
    real = conv.load_release
    monkeypatch.setattr(
        conv, "load_release", lambda files, **kw: calls.append(kw["name"]) or real(files, **kw)
    )
    ref = reference("rae")
    x, t, y = ref["forward.x"], ref["forward.t"], ref["forward.y"]
    gen = uae.create_model("dit_dh_xl.rae", pretrained=True)
    assert isinstance(gen, DiTDH) and not gen.training and gen.config.name == "dit_dh_xl"
    with torch.no_grad():
        assert max_err(gen(x, t, y), ref["forward.out"]) < TOL
    guide = uae.create_model("dit_dh_s", pretrained=True)  # the default tag
    with torch.no_grad():
        assert max_err(guide(x, t, y), ref["forward.guidance_out"]) < TOL
    assert calls == ["dit_dh_xl", "dit_dh_s"]
    cached = list((tmp_path / "uae_cache").glob(f"models--*/{COMMIT}/dit_dh_xl.rae-*"))
    assert len(cached) == 1
    prov = json.loads((cached[0] / PROVENANCE_NAME).read_text())
    assert (
        prov["generation"]["tokenizer"] == "rae_base_p14_dinov2_vitxl.rae"
        and prov["converter_version"] == "1"
    )
    again = uae.create_model("dit_dh_xl.rae", pretrained=True)
    assert len(calls) == 2  # served by the converted cache
    with torch.no_grad():
        assert torch.equal(again(x, t, y), gen(x, t, y))
    # uae publish writes tokenizer cards only: a generator is one clear error
    out = tmp_path / "pub"
    assert cli_main(["publish", "dit_dh_xl.rae", "--repo-id", "me/x", "--dry-run", "--out", str(out)]) == 2
    assert "is a generator: uae publish writes tokenizer cards" in capsys.readouterr().err


def test_authors_generator_end_to_end(hf_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    lay_out_authors_generation(hf_home, monkeypatch, COMMIT)
    ref = reference("authors")
    gen = uae.create_model("uae_64token_dit", pretrained=True)
    with torch.no_grad():
        assert max_err(gen(ref["forward.x"], ref["forward.t"], ref["forward.y"]), ref["forward.out"]) < TOL


def test_missing_generator_file_offline_is_one_error(hf_home: Path) -> None:
    with pytest.raises(FileNotFoundError) as err:
        uae.create_model("dit_dh_xl_512.rae", pretrained=True)
    msg = str(err.value)
    assert "DiTs/Dinov2/wReg_base/ImageNet512/DiTDH-XL_ep400/stage2_model.pt" in msg and "\n" not in msg
    assert "nyu-visionx/RAE-collections" in msg


def test_dit_release_format_needs_an_architecture(tmp_path: Path) -> None:
    from uae.convert.release import load_release

    ckpt = GEN / "rae" / "stage2_model.pt"
    with pytest.raises(InputError, match="does not say its architecture") as e:
        load_release("dit", {"checkpoint": ckpt})
    assert e.value.param == "config"
    model = load_release("dit", {"checkpoint": ckpt, "config": GEN / "rae" / "DiTDH_AG.yaml"}, name="x")
    guide = load_release(
        "dit",
        {"checkpoint": GEN / "rae" / "guidance_model.pt", "config": GEN / "rae" / "DiTDH_AG.yaml"},
        section="guidance_model",
    )
    ref = reference("rae")
    with torch.no_grad():
        assert max_err(model(ref["forward.x"], ref["forward.t"], ref["forward.y"]), ref["forward.out"]) < TOL
        assert (
            max_err(guide(ref["forward.x"], ref["forward.t"], ref["forward.y"]), ref["forward.guidance_out"])
            < TOL
        )
    with pytest.raises(UAELoadError, match="does not match the DiT-DH config 'dit_dh_xl'"):
        load_release("dit", {"checkpoint": ckpt}, name="dit_dh_xl")  # the real XL size: refused, strictly


def test_uae_convert_from_dit(tmp_path: Path, capsys) -> None:
    out = tmp_path / "g"
    argv = [
        "convert",
        "--from",
        "dit",
        str(GEN / "rae" / "stage2_model.pt"),
        "--config",
        str(GEN / "rae" / "DiTDH_AG.yaml"),
    ]
    assert cli_main([*argv, "--out", str(out)]) == 0, capsys.readouterr().err
    assert "DiT-DH generator of 48x8x8 latents" in capsys.readouterr().out
    ref = reference("rae")
    with torch.no_grad():
        y = DiTDH.from_pretrained(out)(ref["forward.x"], ref["forward.t"], ref["forward.y"])
    assert max_err(y, ref["forward.out"]) < TOL


# ---------------------------------------------------------------------------------------------- 64-token tokenizer
def _sample_and_image() -> tuple[torch.Tensor, torch.Tensor]:
    ref = reference("authors")
    return ref["sample.rk4_cfg"], ref["decode.image"]


def test_64token_tokenizer_end_to_end(hf_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The registered 64-token tokenizer converts with its per-position statistics, and decode_latent of a
    sampled latent equals the original's decoder(denormalize(z)) within 1e-5."""
    lay_out_authors_generation(hf_home, monkeypatch, COMMIT)
    tok = uae.create_model("uae_base_p14_dinov2.authors_v2_64token", pretrained=True)
    assert tok.config.latent_stats == "per_position" and tok.config.zigzag_keep_count == 64
    stats = torch.load(GEN / "authors" / "normalization_stats.pt", weights_only=True)
    assert torch.equal(tok.latent_mean, stats["mean"])
    assert torch.equal(tok.latent_std, torch.sqrt(stats["var"] + 1e-5))  # their eps
    z, image = _sample_and_image()
    with torch.no_grad():
        out = tok.decode_latent(z, normalized=True, clamp=False).sample
        assert max_err(out, image) < TOL
        # decode() re-applies the DCT low-pass: right for encode(x).latent, wrong for a generated latent
        wrong = tok.decode(tok.denormalize_latent(z), clamp=False).sample
        assert max_err(wrong, image) > 0.5  # measured 1.04 on the fixture (0.41 in the run)
        x = torch.rand(2, 3, 224, 224, generator=torch.Generator().manual_seed(0))
        enc = tok.encode(x)
        rec = tok(x, clamp=False).sample
        assert torch.equal(tok.decode(enc.latent, clamp=False).sample, rec)  # decode keeps its meaning
        # encode's low-passed latent (band 0) is the decoder's input: decode_latent of it is the reconstruction
        assert max_err(tok.decode_latent(enc.bands[:, 0], clamp=False).sample, rec) < TOL
        zn = tok.normalize_latent(enc.bands[:, 0])
        assert max_err(tok.decode_latent(zn, normalized=True, clamp=False).sample, rec) < TOL


def test_64token_convert_command(tmp_path: Path, capsys) -> None:
    """``uae convert --from authors_v2 stage_1.pt --config 64token.yaml --stats normalization_stats.pt``."""
    import yaml

    cfg = tmp_path / "64token.yaml"
    cfg.write_text(yaml.safe_dump({"stage_1": {"target": "stage1.UAE", "params": stage1_params_64token()}}))
    stats = GEN / "authors" / "normalization_stats.pt"
    base = ["convert", "--from", "authors_v2", str(AUTHORS_V2_DINOV2 / "ep-last.pt"), "--config", str(cfg)]
    heads = ["--encoder-heads", "2", "--decoder-heads", "2"]
    assert cli_main([*base, *heads, "--out", str(tmp_path / "m")]) == 2
    err = capsys.readouterr().err
    assert "normalization_stat_path is set" in err and "--stats" in err  # the parameter named as the flag
    assert cli_main([*base, *heads, "--stats", str(stats), "--out", str(tmp_path / "m")]) == 0
    tok = uae.UAE.from_pretrained(tmp_path / "m")
    z, image = _sample_and_image()
    with torch.no_grad():
        assert max_err(tok.decode_latent(z, normalized=True, clamp=False).sample, image) < TOL
    # statistics for a config that names none are refused (the original would not normalise)
    plain = AUTHORS_V2_DINOV2 / "config.yaml"
    argv = ["convert", "--from", "authors_v2", str(AUTHORS_V2_DINOV2 / "ep-last.pt"), "--config", str(plain)]
    assert cli_main([*argv, *heads, "--stats", str(stats), "--out", str(tmp_path / "n")]) == 2
    assert "sets no normalization_stat_path" in capsys.readouterr().err


def test_decode_latent_validates_and_matches_render(tiny_model) -> None:
    z = torch.randn(2, 32, 8, 8)
    with torch.no_grad():
        assert torch.equal(tiny_model.decode_latent(z).sample, tiny_model.render(z))
        assert torch.equal(
            tiny_model.decode_latent(z, normalized=True).sample,
            tiny_model.render(tiny_model.denormalize_latent(z)),
        )
    with pytest.raises(InputError, match="expected a latent of shape"):
        tiny_model.decode_latent(torch.randn(2, 8, 8, 8))
    with torch.no_grad():
        assert math.isfinite(float(tiny_model.decode_latent(z).sample.mean()))
