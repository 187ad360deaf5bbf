"""Converters: tiny synthetic checkpoints in the authors' and RAE key layouts round-trip exactly."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

import uae
from uae.cli import main as cli_main
from uae.convert import authors_to_uae, mae_sincos_table, rae_to_uae
from uae.files import read_state_dict

HEADS = {"encoder_heads": 2, "decoder_heads": 2}


def _mae_table_reference(dim: int, grid: int) -> torch.Tensor:
    """The MAE numpy sin-cos code, transcribed (independent of uae.convert.mae_sincos_table)."""
    import numpy as np

    def one(d, pos):
        omega = np.arange(d // 2, dtype=float) / (d / 2.0)
        omega = 1.0 / 10000**omega
        out = np.einsum("m,d->md", pos.reshape(-1), omega)
        return np.concatenate([np.sin(out), np.cos(out)], axis=1)

    g = np.arange(grid, dtype=np.float32)
    mesh = np.stack(np.meshgrid(g, g), axis=0).reshape(2, 1, grid, grid)
    return torch.from_numpy(np.concatenate([one(dim // 2, mesh[0]), one(dim // 2, mesh[1])], axis=1)).float()


def _timm_from_mae_index(model: uae.UAE) -> torch.Tensor:
    """Column matching: index ``j`` with ``timm_table[:, i] == mae_table[:, j[i]]`` (tiny dims: unambiguous)."""
    d, g = model.config.decoder_dim, model.config.grid_size
    ours = model.decoder.pos_embed[0]
    mae = _mae_table_reference(d, g)
    dist = (ours[:, :, None] - mae[:, None, :]).abs().amax(0)  # (D, D)
    idx = dist.argmin(1)
    assert torch.all(dist.min(1).values < 1e-5) and len(set(idx.tolist())) == d
    return idx


def uae_decoder_to_mae(model: uae.UAE) -> dict[str, torch.Tensor]:
    """A uae decoder in RAE's GeneralDecoder names (MAE channel order, q/k/v split)."""
    sd = {k[len("decoder.") :]: v.clone() for k, v in model.state_dict().items() if k.startswith("decoder.")}
    j = _timm_from_mae_index(model)
    inv = torch.empty_like(j)
    inv[j] = torch.arange(len(j))  # mae channel m lives in our channel inv[m]
    d = model.config.decoder_dim
    out = {
        "decoder_embed.weight": sd["embed.weight"][inv],
        "decoder_embed.bias": sd["embed.bias"][inv],
        "trainable_cls_token": sd["cls_token"][..., inv],
        "decoder_pos_embed": torch.cat(
            [torch.zeros(1, 1, d), _mae_table_reference(d, model.config.grid_size)[None]], 1
        ),
        "decoder_norm.weight": sd["norm.weight"][inv],
        "decoder_norm.bias": sd["norm.bias"][inv],
        "decoder_pred.weight": sd["pred.weight"][:, inv],
        "decoder_pred.bias": sd["pred.bias"],
    }
    for i in range(model.config.decoder_depth):
        b, s = f"blocks.{i}.", f"decoder_layers.{i}."
        q, k, v = sd[b + "attn.qkv.weight"][:, inv].chunk(3, 0)
        qb, kb, vb = sd[b + "attn.qkv.bias"].chunk(3, 0)
        for name, w, bias in (("query", q, qb), ("key", k, kb), ("value", v, vb)):
            out[s + f"attention.attention.{name}.weight"] = w
            out[s + f"attention.attention.{name}.bias"] = bias
        out[s + "attention.output.dense.weight"] = sd[b + "attn.proj.weight"][inv]
        out[s + "attention.output.dense.bias"] = sd[b + "attn.proj.bias"][inv]
        out[s + "layernorm_before.weight"] = sd[b + "norm1.weight"][inv]
        out[s + "layernorm_before.bias"] = sd[b + "norm1.bias"][inv]
        out[s + "layernorm_after.weight"] = sd[b + "norm2.weight"][inv]
        out[s + "layernorm_after.bias"] = sd[b + "norm2.bias"][inv]
        out[s + "intermediate.dense.weight"] = sd[b + "mlp.fc1.weight"][:, inv]
        out[s + "intermediate.dense.bias"] = sd[b + "mlp.fc1.bias"]
        out[s + "output.dense.weight"] = sd[b + "mlp.fc2.weight"][inv]
        out[s + "output.dense.bias"] = sd[b + "mlp.fc2.bias"][inv]
    return out


def uae_encoder_to_hf(model: uae.UAE, cls_pos: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """A uae encoder in transformers Dinov2WithRegisters names (CLS position slot included)."""
    sd = {
        k[len("encoder.vit.") :]: v.clone()
        for k, v in model.state_dict().items()
        if k.startswith("encoder.vit.")
    }
    c = model.config.encoder_dim
    p0 = torch.zeros(1, 1, c) if cls_pos is None else cls_pos
    out = {
        "embeddings.cls_token": sd["cls_token"] - p0,
        "embeddings.register_tokens": sd["reg_token"],
        "embeddings.mask_token": torch.zeros(1, c),
        "embeddings.position_embeddings": torch.cat([p0, sd["pos_embed"]], 1),
        "embeddings.patch_embeddings.projection.weight": sd["patch_embed.proj.weight"],
        "embeddings.patch_embeddings.projection.bias": sd["patch_embed.proj.bias"],
    }
    for i in range(model.config.encoder_depth):
        b, s = f"blocks.{i}.", f"encoder.layer.{i}."
        for name, w, bias in zip(
            ("query", "key", "value"),
            sd[b + "attn.qkv.weight"].chunk(3, 0),
            sd[b + "attn.qkv.bias"].chunk(3, 0),
        ):
            out[s + f"attention.attention.{name}.weight"] = w
            out[s + f"attention.attention.{name}.bias"] = bias
        pairs = {
            "norm1": "norm1", "attention.output.dense": "attn.proj", "norm2": "norm2", "mlp.fc1": "mlp.fc1",
            "mlp.fc2": "mlp.fc2",
        }  # fmt: skip
        for a, t in pairs.items():
            out[s + a + ".weight"] = sd[b + t + ".weight"]
            out[s + a + ".bias"] = sd[b + t + ".bias"]
        out[s + "layer_scale1.lambda1"] = sd[b + "ls1.gamma"]
        out[s + "layer_scale2.lambda1"] = sd[b + "ls2.gamma"]
    return out


def _randomise(model: uae.UAE) -> uae.UAE:
    """Non-trivial values everywhere (zero-initialised convs, LayerScale, norms, mixing included)."""
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.copy_(
                torch.randn(p.shape, generator=g) * (0.02 if p.ndim > 1 else 0.1)
                + (1.0 if "norm" in name else 0.0)
            )
        if model.modulator.mix_in is not None:
            model.modulator.mix_in.copy_(
                torch.eye(model.config.num_bands)
                + 0.1 * torch.randn(model.config.num_bands, model.config.num_bands, generator=g)
            )
    return model.eval()


@pytest.fixture
def authors_model() -> uae.UAE:
    torch.manual_seed(0)
    return _randomise(
        uae.create_model("uae_test", band_mixing=True, modulator_in_kernel=3, modulator_hidden_dim=24)
    )


def authors_state(model: uae.UAE) -> dict[str, torch.Tensor]:
    sd = model.state_dict()
    out = {f"encoder.encoder.{k}": v for k, v in uae_encoder_to_hf(model).items()}
    out.update({f"decoder.{k}": v for k, v in uae_decoder_to_mae(model).items()})
    out["freq_modulator.denoiser.0.weight"] = sd["modulator.conv_in.weight"]
    out["freq_modulator.denoiser.0.bias"] = sd["modulator.conv_in.bias"]
    out["freq_modulator.denoiser.2.weight"] = sd["modulator.conv_out.weight"]
    out["freq_modulator.denoiser.2.bias"] = sd["modulator.conv_out.bias"]
    out["freq_modulator.band_transform.layers.0.weight"] = sd["modulator.mix_in"]
    out["freq_modulator.band_transform.layers.1.weight"] = sd["modulator.mix_out"]
    return out


def test_mae_sincos_table_matches_the_reference_code():
    assert torch.allclose(mae_sincos_table(32, 8), _mae_table_reference(32, 8), atol=1e-6)


def test_authors_round_trip_is_exact(authors_model, photos32):
    # Default: their band split and decoder eps; with uae's split and eps the round trip is bit-exact.
    default = authors_to_uae(authors_state(authors_model), **HEADS).config
    assert (default.band_scheme, default.decoder_norm_eps) == ("authors_v1", 1e-12)
    assert default.band_schedule == pytest.approx((0.32, math.sqrt((0.32**2 + 16**2) / 2), 16.0))
    conv = authors_to_uae(authors_state(authors_model), band_scheme="smooth", decoder_norm_eps=None, **HEADS)
    c = conv.config
    assert (c.num_bands, c.band_mixing, c.modulator_in_kernel, c.modulator_hidden_dim) == (3, True, 3, 24)
    assert (c.img_size, c.patch_size, c.encoder_reg_tokens, c.decoder_patch_size, c.latent_norm) == (
        32,
        4,
        4,
        4,
        True,
    )
    ref, got = authors_model.state_dict(), conv.state_dict()
    assert set(ref) == set(got)
    for k in ref:
        assert torch.equal(ref[k], got[k]), k
    assert torch.equal(authors_model(photos32).sample, conv(photos32).sample)


def _mae_decoder_reference(sd: dict[str, torch.Tensor], q: torch.Tensor, heads: int) -> torch.Tensor:
    """RAE's GeneralDecoder forward on its own key names (functional transcription; eps 1e-12 as RAE's)."""
    b, c, h, w = q.shape
    x = F.linear(q.flatten(2).transpose(1, 2), sd["decoder_embed.weight"], sd["decoder_embed.bias"])
    x = torch.cat([sd["trainable_cls_token"].expand(b, -1, -1), x], 1) + sd["decoder_pos_embed"]
    n = len({k.split(".")[1] for k in sd if k.startswith("decoder_layers.")})
    for i in range(n):
        p = f"decoder_layers.{i}."
        y = F.layer_norm(
            x, x.shape[-1:], sd[p + "layernorm_before.weight"], sd[p + "layernorm_before.bias"], 1e-12
        )
        qkv = [
            F.linear(y, sd[p + f"attention.attention.{t}.weight"], sd[p + f"attention.attention.{t}.bias"])
            .unflatten(-1, (heads, -1))
            .transpose(1, 2)
            for t in ("query", "key", "value")
        ]
        a = F.scaled_dot_product_attention(*qkv).transpose(1, 2).flatten(2)
        x = x + F.linear(a, sd[p + "attention.output.dense.weight"], sd[p + "attention.output.dense.bias"])
        y = F.layer_norm(
            x, x.shape[-1:], sd[p + "layernorm_after.weight"], sd[p + "layernorm_after.bias"], 1e-12
        )
        y = F.gelu(F.linear(y, sd[p + "intermediate.dense.weight"], sd[p + "intermediate.dense.bias"]))
        x = x + F.linear(y, sd[p + "output.dense.weight"], sd[p + "output.dense.bias"])
    x = F.layer_norm(x, x.shape[-1:], sd["decoder_norm.weight"], sd["decoder_norm.bias"], 1e-12)
    logits = F.linear(x, sd["decoder_pred.weight"], sd["decoder_pred.bias"])[:, 1:]
    pch = int(math.isqrt(logits.shape[-1] // 3))
    logits = logits.reshape(b, h, w, pch, pch, 3)
    return torch.einsum("nhwpqc->nchpwq", logits).reshape(b, 3, h * pch, w * pch)


def test_converted_decoder_computes_the_mae_decoder_function(authors_model):
    """The sin-cos channel permutation is exact: uae's decoder == RAE's decoder forward on the source keys."""
    src = uae_decoder_to_mae(authors_model)
    conv = rae_to_uae(src, authors_model.encoder.vit.state_dict(), **HEADS)
    q = torch.randn(2, 32, 8, 8)
    with torch.no_grad():
        ref = _mae_decoder_reference(src, q, heads=2)
        got = conv.decoder(q)
    assert torch.allclose(got, ref, atol=1e-5), (got - ref).abs().max()


def test_authors_cls_position_slot_is_folded_and_positions_resampled(authors_model):
    state = authors_state(authors_model)
    p0 = torch.randn(1, 1, 32)
    state["encoder.encoder.embeddings.cls_token"] = state["encoder.encoder.embeddings.cls_token"] - p0
    pos = state["encoder.encoder.embeddings.position_embeddings"]
    state["encoder.encoder.embeddings.position_embeddings"] = torch.cat([p0, pos[:, 1:]], 1)
    conv = authors_to_uae(state, **HEADS)
    assert torch.allclose(conv.encoder.vit.cls_token, authors_model.encoder.vit.cls_token, atol=1e-6)

    # A 12x12 source table (like DINOv2's 37x37) is kept and resampled at every forward, as transformers does.
    from timm.layers import resample_abs_pos_embed

    big = torch.randn(1, 144, 32)
    state["encoder.encoder.embeddings.position_embeddings"] = torch.cat([p0, big], 1)
    conv = authors_to_uae(state, **HEADS)
    assert conv.config.encoder_pos_grid == 12 and conv.config.encoder_pos_resample == "hf_dinov2"
    assert conv.config.grid_size == 8
    assert torch.equal(conv.encoder.vit.pos_embed, big)
    x = torch.randn(1, 8, 8, 32)  # NHWC patch grid, as timm's _pos_embed receives it
    expected = resample_abs_pos_embed(big, new_size=[8, 8], old_size=[12, 12], num_prefix_tokens=0)
    tokens = conv.encoder.vit._pos_embed(x)[:, conv.encoder.num_prefix_tokens :]
    torch.testing.assert_close(tokens, x.reshape(1, 64, 32) + expected, rtol=0, atol=0)


def test_authors_missing_and_extra_keys_are_listed(authors_model):
    state = authors_state(authors_model)
    broken = dict(state)
    broken.pop("decoder.decoder_layers.0.attention.attention.key.bias")
    with pytest.raises(ValueError, match=r"decoder_layers\.0\.attention\.attention\.key\.bias"):
        authors_to_uae(broken, **HEADS)
    extra = dict(state, **{"freq_modulator.dynamic_denoisers.3.0.weight": torch.zeros(1)})
    with pytest.raises(ValueError, match=r"not understood.*dynamic_denoisers\.3\.0\.weight"):
        authors_to_uae(extra, **HEADS)
    bad = dict(state)
    bad["freq_modulator.band_transform.layers.1.weight"] = torch.eye(4)
    with pytest.raises(ValueError, match="band_transform weights must be"):
        authors_to_uae(bad, **HEADS)


def test_learned_decoder_positions_are_rejected(authors_model):
    state = authors_state(authors_model)
    state["decoder.decoder_pos_embed"] = state["decoder.decoder_pos_embed"] + 0.1
    with pytest.raises(ValueError, match="sin-cos"):
        authors_to_uae(state, **HEADS)


@pytest.fixture
def rae_model() -> uae.UAE:
    torch.manual_seed(0)
    m = _randomise(uae.create_model("uae_test", num_bands=1, num_semantic_bands=1, decoder_norm_eps=1e-12))
    with torch.no_grad():  # RAE has no modulator: the identity (zero residual)
        m.modulator.conv_out.weight.zero_()
        m.modulator.conv_out.bias.zero_()
    return m


def test_rae_round_trip_hf_encoder(rae_model, photos32):
    dec = {f"decoder.{k}": v for k, v in uae_decoder_to_mae(rae_model).items()}  # prefix accepted
    enc = uae_encoder_to_hf(rae_model)
    conv = rae_to_uae(
        dec, enc, stats={"mean": torch.full((32, 1, 1), 0.5), "var": torch.full((32, 1, 1), 4.0)}, **HEADS
    )
    assert conv.config.num_bands == 1 and conv.config.latent_norm
    for k, v in rae_model.state_dict().items():
        if k.startswith(("encoder.", "decoder.")):
            assert torch.equal(conv.state_dict()[k], v), k
    out_ref, out = rae_model(photos32), conv(photos32)
    assert torch.equal(out.latent, out_ref.latent)
    assert torch.allclose(out.sample, out_ref.sample, atol=1e-6)
    assert torch.allclose(conv.latent_mean, torch.full((32,), 0.5))
    assert torch.allclose(conv.latent_std, torch.full((32,), math.sqrt(4.0 + 1e-5)))
    assert conv.config.latent_stats == "per_channel" and conv.config.decoder_norm_eps == 1e-12
    with pytest.raises(ValueError, match=r"per-position \(32, 8, 8\)"):
        rae_to_uae(dec, enc, stats={"mean": torch.zeros(32, 4, 4)}, **HEADS)


def test_rae_timm_named_encoder_and_missing_encoder_key(rae_model, photos32):
    dec = uae_decoder_to_mae(rae_model)
    conv = rae_to_uae(dec, rae_model.encoder.vit.state_dict(), **HEADS)
    assert torch.allclose(conv(photos32).sample, rae_model(photos32).sample, atol=1e-6)
    enc = uae_encoder_to_hf(rae_model)
    enc.pop("encoder.layer.1.mlp.fc2.weight")
    with pytest.raises(ValueError, match=r"encoder\.layer\.1\.mlp\.fc2\.weight"):
        rae_to_uae(dec, enc, **HEADS)
    enc = uae_encoder_to_hf(rae_model)
    enc["encoder.layer.0.attention.attention.query.weight"] = torch.zeros(16, 32)
    with pytest.raises(ValueError, match="shape"):
        rae_to_uae(dec, enc, **HEADS)


def test_convert_cli_authors_picks_model_and_writes_pretrained_layout(authors_model, tmp_path, photos32):
    state = authors_state(authors_model)
    ema = {k: v + 1.0 if v.is_floating_point() and "pos" not in k else v for k, v in state.items()}
    ckpt = tmp_path / "uae_v1.pt"
    torch.save({"model": state, "ema": ema, "epoch": 3}, ckpt)  # v1's evaluation loads "model"
    out = tmp_path / "converted"
    rc = cli_main(
        [
            "convert",
            "--from",
            "authors",
            str(ckpt),
            "--out",
            str(out),
            "--encoder-heads",
            "2",
            "--decoder-heads",
            "2",
        ]
    )
    assert rc == 0
    loaded = uae.UAE.from_pretrained(out)
    expected = authors_to_uae(state, **HEADS)  # the authors' band split (released schedule for K=3)
    assert loaded.config.band_scheme == "authors_v1" and loaded.config.band_schedule[0] == 0.32
    assert torch.equal(loaded(photos32).sample, expected(photos32).sample)
    assert not torch.allclose(loaded(photos32).sample, authors_to_uae(ema, **HEADS)(photos32).sample)
    assert read_state_dict(ckpt, "model")["decoder.decoder_norm.bias"].sum() != 0


def test_convert_cli_errors_are_one_line(rae_model, tmp_path, capsys):
    rc = cli_main(["convert", "--from", "rae", str(tmp_path / "nope.pt"), "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "nope.pt" in err and len(err.splitlines()) == 1 and "Traceback" not in err

    dec = tmp_path / "model.pt"
    torch.save(uae_decoder_to_mae(rae_model), dec)
    rc = cli_main(
        ["convert", "--from", "rae", str(dec), "--out", str(tmp_path / "o")]
    )  # no encoder weights offline
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and "DINOv2" in err and "Traceback" not in err

    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    rc = cli_main(["convert", "--from", "authors", str(junk), "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "junk.pt" in err and len(err.splitlines()) == 1


def test_convert_release_is_the_command_as_a_function(authors_model, tmp_path, photos32, capsys):
    """``uae convert`` and ``convert_release`` are one path: keywords in, a written model out; the
    ``authors_v1`` name and its ``authors`` alias are one converter."""
    from uae.convert import convert_release
    from uae.errors import InputError

    state = authors_state(authors_model)
    ckpt = tmp_path / "uae_v1.pt"
    torch.save({"model": state}, ckpt)
    model = convert_release("authors_v1", ckpt, out=tmp_path / "lib", **HEADS)
    assert model.config.name == "uae_authors_converted" and not model.training
    assert cli_main(["convert", "--from", "authors_v1", str(ckpt), "--out", str(tmp_path / "cli")]
                    + ["--encoder-heads", "2", "--decoder-heads", "2"]) == 0  # fmt: skip
    assert "wrote" in capsys.readouterr().out
    from_cli = uae.UAE.from_pretrained(tmp_path / "cli")
    assert torch.equal(from_cli(photos32).sample, uae.UAE.from_pretrained(tmp_path / "lib")(photos32).sample)

    with pytest.raises(InputError, match="encoder_weights is not used by the authors_v1 release") as e:
        convert_release("authors", ckpt, out=tmp_path / "x", encoder_weights=ckpt)
    assert e.value.param == "encoder_weights"
    rc = cli_main(
        ["convert", "--from", "authors", str(ckpt), "--out", str(tmp_path / "x"), "--encoder-weights", "w"]
    )
    err = capsys.readouterr().err.strip()
    assert (
        rc == 2
        and "--encoder-weights is not used by the authors_v1 release" in err
        and len(err.splitlines()) == 1
    )
