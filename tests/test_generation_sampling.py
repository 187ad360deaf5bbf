"""Samplers, guidance and decoding (uae.generation) against the original code (tests/fixtures/generation)."""

from __future__ import annotations

import functools

import pytest
import torch
from generation_fixtures import FIXTURES, GEN, SAMPLE_TOL, SHIFT, TOL, max_err, model, reference

from uae.convert.authors_v2 import load_release as load_authors_v2
from uae.convert.rae import load_release as load_rae
from uae.errors import ConfigError, InputError
from uae.generation import Guidance, SamplerConfig, decode_latents, guided_model, sample
from uae.models.uae import UAE

#: name -> (model, guide model, sampler, guidance, SDE seed); settings in tests/fixtures/generation/README.md
RAE_CASES = {
    "euler": (SamplerConfig(num_steps=6, shift=SHIFT), Guidance(), None),
    "euler_cfg": (SamplerConfig(num_steps=6, shift=SHIFT), Guidance(2.0, "cfg", 0.1, 0.9), None),
    "euler_ag": (SamplerConfig(num_steps=6, shift=SHIFT), Guidance(1.42, "autoguidance", 0.0, 1.0), None),
    "sde_euler_cfg": (
        SamplerConfig(
            "sde", "euler", 6, SHIFT, diffusion_form="sigma", last_step="mean", last_step_size=0.04
        ),
        Guidance(1.5, "cfg", 0.0, 1.0),
        5,
    ),
    "sde_heun": (
        SamplerConfig("sde", "heun", 5, SHIFT, diffusion_form="decreasing", last_step="tweedie"),
        Guidance(),
        11,
    ),
}
AUTHORS_CASES = {
    "rk4": ("authors", SamplerConfig(method="rk4", num_steps=5, shift=SHIFT), Guidance()),
    "rk4_cfg": (
        "authors",
        SamplerConfig(method="rk4", num_steps=5, shift=SHIFT),
        Guidance(2.0, "cfg", 0.1, 0.9),
    ),
    "euler_xstart": ("authors", SamplerConfig(num_steps=6, shift=SHIFT, prediction="x"), Guidance()),
    "rope1d_euler_cfg": (
        "authors_rope1d",
        SamplerConfig(num_steps=6, shift=SHIFT),
        Guidance(1.5, "cfg", 0.0, 1.0),
    ),
}


@pytest.mark.parametrize("name", sorted(RAE_CASES))
def test_rae_samplers_match_the_original(name: str) -> None:
    ref = reference("rae")
    cfg, guidance, seed = RAE_CASES[name]
    gen = torch.Generator().manual_seed(seed) if seed is not None else None
    out = sample(
        model("rae"),
        ref["sample.noise"],
        ref["sample.labels"],
        sampler=cfg,
        guidance=guidance,
        guide_model=model("rae_guidance"),
        generator=gen,
    )
    assert max_err(out, ref[f"sample.{name}"]) < SAMPLE_TOL


@pytest.mark.parametrize("name", sorted(AUTHORS_CASES))
def test_authors_samplers_match_the_original(name: str) -> None:
    ref = reference("authors")
    which, cfg, guidance = AUTHORS_CASES[name]
    noise = ref["sample.rope1d_noise"] if which == "authors_rope1d" else ref["sample.noise"]
    out = sample(model(which), noise, ref["sample.labels"], sampler=cfg, guidance=guidance)
    assert max_err(out, ref[f"sample.{name}"]) < SAMPLE_TOL


@torch.no_grad()
def test_guided_outputs_match_forward_with_cfg_and_autoguidance() -> None:
    ref = reference("rae")
    x, t, y = ref["forward.x"], ref["forward.t"], ref["forward.y"]
    cfg = guided_model(model("rae"), y, Guidance(2.5, "cfg", 0.2, 0.7))(x, t)
    assert max_err(cfg, ref["forward.cfg_out"][:2]) < TOL
    assert torch.equal(ref["forward.cfg_out"][:2], ref["forward.cfg_out"][2:])
    ag = Guidance(1.42, "autoguidance", 0.2, 0.7)
    out = guided_model(model("rae"), y, ag, guide_model=model("rae_guidance"))(x, t)
    assert max_err(out, ref["forward.ag_out"][:2]) < TOL
    # t = 0.8 is outside the interval: the plain conditional output there
    assert max_err(out[1], model("rae")(x, t, y)[1]) < TOL
    # only the conditional rows: float32 rounding apart, not bit-identical to the originals' batching
    lean = Guidance(1.42, "autoguidance", 0.2, 0.7, original_batching=False)
    assert max_err(guided_model(model("rae"), y, lean, guide_model=model("rae_guidance"))(x, t), out) < 1e-4
    ref_a = reference("authors")
    out = guided_model(model("authors"), ref_a["forward.y"], Guidance(3.0, "cfg", 0.0, 0.5))(
        ref_a["forward.x"], ref_a["forward.t"]
    )
    assert max_err(out, ref_a["forward.cfg_out"]) < TOL


def test_time_grid() -> None:
    times = SamplerConfig(num_steps=6, shift=SHIFT).times()
    assert torch.equal(times, reference("rae")["times.ode_6"])
    assert times[0] == 1 and 0 < times[-1] < 0.01
    assert SamplerConfig(num_steps=6, prediction="x").interval() == (1e-3, 1 - 1e-3)
    sde = SamplerConfig("sde", num_steps=6, shift=SHIFT, last_step_size=0.04)
    assert sde.interval() == (0, 0.96)
    assert SamplerConfig("sde", num_steps=6, last_step="none").interval() == (0, 1)


@functools.cache
def rae_tokenizer() -> UAE:
    rae = FIXTURES / "rae"
    files = {
        "decoder": rae / "decoders" / "ViTXL" / "model.pt",
        "stats": rae / "stats" / "per_position" / "stat.pt",
        "encoder": rae / "encoder" / "model.safetensors",
    }
    return load_rae(files, encoder="dinov2", encoder_heads=2, decoder_heads=4)


@functools.cache
def authors_64token_tokenizer() -> UAE:
    """The authors' v2 fixture tokenizer with the 64-token release's per-position statistics."""
    d = FIXTURES / "authors_v2" / "dinov2" / "checkpoints" / "DINOv2-B"
    v2 = load_authors_v2(
        {"checkpoint": d / "ep-last.pt", "config": d / "config.yaml"}, encoder_heads=2, decoder_heads=2
    )
    tok = UAE(v2.config.replace(latent_stats="per_position"))
    state = {k: v for k, v in v2.state_dict().items() if k not in ("latent_mean", "latent_std")}
    assert tok.load_state_dict(state, strict=False).missing_keys == ["latent_mean", "latent_std"]
    stats = torch.load(GEN / "authors" / "normalization_stats.pt", weights_only=True)
    tok.set_latent_stats(stats["mean"], torch.sqrt(stats["var"] + 1e-5))  # their eps
    return tok.eval()


def test_decoded_images_match_the_original() -> None:
    ref = reference("rae")
    image = decode_latents(rae_tokenizer(), ref["sample.euler_cfg"], clamp=False)
    assert max_err(image, ref["decode.image"]) < TOL
    assert torch.equal(decode_latents(rae_tokenizer(), ref["sample.euler_cfg"]), image.clamp(0, 1))
    ref = reference("authors")
    image = decode_latents(authors_64token_tokenizer(), ref["sample.rk4_cfg"], clamp=False)
    assert max_err(image, ref["decode.image"]) < TOL


def test_sde_is_deterministic_for_a_seed() -> None:
    ref = reference("rae")
    cfg = SamplerConfig("sde", "euler", 4, SHIFT)

    def run(seed: int) -> torch.Tensor:
        gen = torch.Generator().manual_seed(seed)
        return sample(model("rae"), ref["sample.noise"], ref["sample.labels"], sampler=cfg, generator=gen)

    assert torch.equal(run(3), run(3))
    assert max_err(run(3), run(4)) > 1e-2


def test_progress_callback() -> None:
    ref = reference("rae")
    calls: list[tuple[int, int]] = []
    sample(
        model("rae"),
        ref["sample.noise"],
        ref["sample.labels"],
        sampler=SamplerConfig(num_steps=4),
        callback=lambda i, n: calls.append((i, n)),
    )
    assert calls == [(1, 3), (2, 3), (3, 3)]


@pytest.mark.parametrize(
    ("kwargs", "param"),
    [
        ({"mode": "flow"}, "mode"),
        ({"method": "dopri5"}, "method"),
        ({"mode": "sde", "method": "rk4"}, "method"),
        ({"num_steps": 1}, "num_steps"),
        ({"shift": 0.5}, "shift"),
        ({"prediction": "noise"}, "prediction"),
        ({"mode": "sde", "diffusion_form": "SBDM"}, "diffusion_form"),
        ({"mode": "sde", "diffusion_form": "constant"}, "diffusion_form"),
        ({"mode": "sde", "last_step": "Mean"}, "last_step"),
        ({"mode": "sde", "last_step_size": 0.0}, "last_step_size"),
    ],
)
def test_sampler_settings_are_validated(kwargs: dict, param: str) -> None:
    with pytest.raises(ConfigError, match=param) as info:
        SamplerConfig(**kwargs)
    assert info.value.param == param


def test_guidance_settings_and_misuse() -> None:
    with pytest.raises(ConfigError, match="t_min"):
        Guidance(2.0, "cfg", 0.5, 0.5)
    with pytest.raises(ConfigError, match="method"):
        Guidance(2.0, "pag")
    assert not Guidance(1.0).active and Guidance(1.01).active
    ref = reference("rae")
    noise, labels = ref["sample.noise"], ref["sample.labels"]
    with pytest.raises(InputError, match="guidance model"):
        sample(model("rae"), noise, labels, guidance=Guidance(1.5, "autoguidance"))
    with pytest.raises(InputError, match="labels"):
        sample(model("rae"), noise, labels[:1])
    with pytest.raises(InputError, match="null class"):
        guided_model(lambda x, t, y: x, labels, Guidance(1.5))
