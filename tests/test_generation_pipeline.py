"""uae.GenerationPipeline: the originals' samples and images from one call, per-image seeds, the release
defaults through from_pretrained (a Hub cache laid out like the releases), and one-line errors."""

from __future__ import annotations

import functools
from pathlib import Path

import pytest
import torch
from generation_fixtures import (
    SAMPLE_TOL,
    SHIFT,
    TOL,
    lay_out_authors_generation,
    lay_out_rae_generation,
    max_err,
    model,
    reference,
)
from test_generation_sampling import authors_64token_tokenizer, rae_tokenizer

import uae
from uae.errors import InputError
from uae.generation import Guidance, SamplerConfig
from uae.generation.pipeline import GenerationPipeline
from uae.generation.seeds import image_labels, image_noise, image_seed
from uae.generation.settings import default_shift

COMMIT = "1111222233334444555566667777888899990000"


@functools.cache
def rae_pipeline() -> GenerationPipeline:
    """The RAE fixtures (tokenizer, DiT-DH-XL and DiT-DH-S analogues), 6-point Euler, the release shift."""
    return GenerationPipeline(
        rae_tokenizer(),
        model("rae"),
        guide_model=model("rae_guidance"),
        sampler=SamplerConfig(num_steps=6, shift=SHIFT),
        guidance=Guidance(1.42, "autoguidance"),
    )


@functools.cache
def tiny_pipeline() -> GenerationPipeline:
    torch.manual_seed(0)
    return GenerationPipeline(uae.create_model("uae_test"), uae.create_model("dit_dh_test").eval())


def test_reproduces_the_originals_samples_and_images() -> None:
    ref = reference("rae")
    pipe, labels, noise = rae_pipeline(), ref["sample.labels"].tolist(), ref["sample.noise"]
    out = pipe(labels, noise=noise, guidance=2.0, guidance_method="cfg", t_min=0.1, t_max=0.9)
    assert max_err(out.latents, ref["sample.euler_cfg"]) < SAMPLE_TOL  # measured: 0 (1 thread)
    assert max_err(out.images, ref["decode.image"].clamp(0, 1)) < TOL  # sample_ddp.py clamps
    assert out.images.shape == (2, 3, 32, 32) and out.labels.tolist() == labels and out.seeds is None
    assert max_err(pipe(labels, noise=noise).latents, ref["sample.euler_ag"]) < SAMPLE_TOL  # its defaults
    assert max_err(pipe(labels, noise=noise, guidance=1.0).latents, ref["sample.euler"]) < SAMPLE_TOL
    ref = reference("authors")
    pipe = GenerationPipeline(
        authors_64token_tokenizer(),
        model("authors"),
        sampler=SamplerConfig(method="rk4", num_steps=5, shift=SHIFT),
    )
    out = pipe(ref["sample.labels"].tolist(), noise=ref["sample.noise"], guidance=2.0, t_min=0.1, t_max=0.9)
    assert max_err(out.latents, ref["sample.rk4_cfg"]) < SAMPLE_TOL
    assert max_err(out.images, ref["decode.image"].clamp(0, 1)) < TOL


def test_a_seed_gives_the_same_images_and_a_batch_split_the_same_noise() -> None:
    pipe = rae_pipeline()
    a = pipe([3, 7, 1], num=2, seed=5)
    assert a.labels.tolist() == [3, 3, 7, 7, 1, 1]
    assert a.seeds == [image_seed(5, j) for j in range(6)]
    b = pipe([3, 7, 1], num=2, seed=5)
    assert torch.equal(a.images, b.images) and torch.equal(a.latents, b.latents)
    assert max_err(pipe([3, 7, 1], num=2, seed=6).latents, a.latents) > 0.1
    split = pipe([3, 7, 1], num=2, seed=5, batch_size=4)
    # the same noise per image; float32 matmuls round differently for another batch size
    assert max_err(split.latents, a.latents) < 1e-4  # measured 1.7e-5
    assert max_err(split.images, a.images) < 1e-5  # measured 2e-6: the same 8-bit PNGs in practice
    one = pipe([7], seeds=a.seeds[2:3])
    assert max_err(one.latents, a.latents[2:3]) < 1e-4
    # diffusers-style generator: all the noise from one draw
    g = pipe([3, 7], generator=torch.Generator().manual_seed(0))
    assert torch.equal(
        g.latents,
        pipe([3, 7], noise=torch.randn(2, 48, 8, 8, generator=torch.Generator().manual_seed(0))).latents,
    )


def test_seeds_and_labels_rules() -> None:
    assert image_seed(0, 1) != image_seed(1, 0) and image_seed(0, 0) == image_seed(0, 0)
    assert 0 <= image_seed(2**40, 10**9) < 2**63
    n1 = image_noise([image_seed(0, 0), image_seed(0, 1)], (2, 3, 3))
    assert torch.equal(n1[1], image_noise([image_seed(0, 1)], (2, 3, 3))[0])
    eq = image_labels(range(25), num_classes=10)
    assert eq.tolist() == [i % 10 for i in range(25)]
    rnd = image_labels(range(2000), num_classes=10, label_sampling="random", seed=3)
    assert set(rnd.tolist()) == set(range(10)) and torch.equal(
        rnd[5:9], image_labels(range(5, 9), num_classes=10, label_sampling="random", seed=3)
    )
    with pytest.raises(InputError, match="label_sampling"):
        image_labels([0], num_classes=10, label_sampling="balanced")
    with pytest.raises(InputError, match="seed must be an integer >= 0"):
        image_seed(-1, 0)


@pytest.mark.parametrize(
    ("kwargs", "param", "match"),
    [
        (
            {"class_labels": [10]},
            "class_labels",
            "class index 10 is out of range: this generator knows classes 0..9",
        ),
        ({"class_labels": [1.5]}, "class_labels", "must be integers"),
        ({"class_labels": []}, "class_labels", "empty"),
        ({"steps": 1}, "steps", "steps must be an integer >= 2"),
        ({"num": 0}, "num", "num must be a positive integer"),
        ({"guidance": -1.0}, "guidance", "guidance must be a scale >= 0"),
        ({"guidance": 2.0, "guidance_method": "autoguidance"}, "guidance_method", "needs a guidance model"),
        ({"guidance_method": "pag"}, "guidance_method", "guidance_method must be one of"),
        ({"method": "dopri5"}, "method", "method for mode 'ode' must be one of"),
        ({"t_min": 0.9, "t_max": 0.1}, "t_min", "t_min must be below t_max"),
        ({"seeds": [1, 2, 3]}, "seeds", "one seed per image"),
        ({"noise": torch.zeros(1, 32, 4, 4)}, "noise", "noise must have shape"),
        ({"batch_size": 0}, "batch_size", "batch_size must be a positive integer"),
    ],
)
def test_bad_input_names_the_parameter(kwargs: dict, param: str, match: str) -> None:
    kwargs = {"class_labels": [1], **kwargs}
    with pytest.raises(InputError, match=match) as e:
        tiny_pipeline()(kwargs.pop("class_labels"), **kwargs)
    assert e.value.param == param


def test_construction_checks() -> None:
    tok = uae.create_model("uae_test")
    with pytest.raises(InputError, match="are not the generator's") as e:
        GenerationPipeline(tok, model("rae"))
    assert e.value.param == "tokenizer"
    with pytest.raises(InputError, match="must be a DiTDH"):
        GenerationPipeline(tok, tok)
    with pytest.raises(InputError, match="is a tokenizer; give a generator"):
        GenerationPipeline.from_pretrained("uae_test")
    with pytest.raises(InputError, match="no tokenizer is known for 'dit_dh_test'"):
        GenerationPipeline.from_pretrained("dit_dh_test", pretrained=False)
    assert default_shift((768, 16, 16)) == pytest.approx(SHIFT) and default_shift((32, 8, 8)) == 1.0
    assert tiny_pipeline().sampler.num_steps == 50 and not tiny_pipeline().guidance.active


def test_progress_callback_counts_every_step() -> None:
    calls = []
    tiny_pipeline()(
        [1, 2, 3], steps=4, batch_size=2, progress=lambda done, total: calls.append((done, total))
    )
    assert calls == [(1, 6), (2, 6), (3, 6), (4, 6), (5, 6), (6, 6)]  # 3 steps x 2 batches


def test_from_pretrained_uses_the_release_defaults(hf_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """GenerationPipeline.from_pretrained("dit_dh_xl.rae"): the generator, its DiT-DH-S autoguidance model and
    the ViT-XL tokenizer from the Hub cache, autoguidance 1.42 and 50-point Euler as in the release config;
    with the fixture's 6 points it gives the original's autoguided sample."""
    lay_out_rae_generation(hf_home, monkeypatch, COMMIT)
    pipe = uae.GenerationPipeline.from_pretrained("dit_dh_xl.rae")
    assert (pipe.guidance.method, pipe.guidance.scale, pipe.sampler.method, pipe.sampler.num_steps) == (
        "autoguidance",
        1.42,
        "euler",
        50,
    )
    assert pipe.sampler.shift == pytest.approx(SHIFT) and pipe.guide_model is not None
    assert (
        pipe.tokenizer_name == "rae_base_p14_dinov2_vitxl.rae"
        and pipe.tokenizer.config.latent_stats == "per_position"
    )
    ref = reference("rae")
    out = pipe(ref["sample.labels"].tolist(), noise=ref["sample.noise"], steps=6)
    assert max_err(out.latents, ref["sample.euler_ag"]) < SAMPLE_TOL
    no_guide = uae.GenerationPipeline.from_pretrained("dit_dh_xl.rae", guide_model=False)
    assert no_guide.guide_model is None and not no_guide.guidance.active
    assert (
        max_err(
            no_guide(ref["sample.labels"].tolist(), noise=ref["sample.noise"], steps=6).latents,
            ref["sample.euler"],
        )
        < SAMPLE_TOL
    )


def test_from_pretrained_authors_64token(hf_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    lay_out_authors_generation(hf_home, monkeypatch, COMMIT)
    pipe = uae.GenerationPipeline.from_pretrained("uae_64token_dit")
    assert (pipe.sampler.method, pipe.sampler.num_steps, pipe.guidance.active, pipe.guide_model) == (
        "rk4",
        50,
        False,
        None,
    )
    ref = reference("authors")
    out = pipe(
        ref["sample.labels"].tolist(), noise=ref["sample.noise"], steps=5, guidance=2.0, t_min=0.1, t_max=0.9
    )
    assert max_err(out.latents, ref["sample.rk4_cfg"]) < SAMPLE_TOL
    assert max_err(out.images, ref["decode.image"].clamp(0, 1)) < TOL


def test_from_pretrained_with_directories(tmp_path: Path) -> None:
    torch.manual_seed(0)
    uae.create_model("dit_dh_test").save_pretrained(tmp_path / "g")
    uae.create_model("uae_test").save_pretrained(tmp_path / "t")
    pipe = GenerationPipeline.from_pretrained(str(tmp_path / "g"), tokenizer=str(tmp_path / "t"))
    out = pipe([0, 9], steps=3, seed=1)
    assert (
        out.images.shape == (2, 3, 32, 32) and 0 <= float(out.images.min()) and float(out.images.max()) <= 1
    )
    with pytest.raises(InputError, match="no tokenizer is known"):
        GenerationPipeline.from_pretrained(str(tmp_path / "g"))
    with pytest.raises(InputError, match="is a tokenizer, not a generator"):
        GenerationPipeline.from_pretrained(str(tmp_path / "t"), tokenizer=str(tmp_path / "t"))


def test_cpu_runs_float32_without_autocast(monkeypatch: pytest.MonkeyPatch) -> None:
    """Autocast is chosen by uae.utils.autocast_dtype: None on the CPU (float32), bf16 on CUDA."""
    import uae.generation.pipeline as P

    seen = []
    real = P.maybe_autocast

    def spy(device, enabled=True):
        seen.append((torch.device(device).type, enabled))
        return real(device, enabled)

    monkeypatch.setattr(P, "maybe_autocast", spy)
    out = tiny_pipeline()([1], steps=2, amp=True)
    assert out.latents.dtype == torch.float32 and seen == [("cpu", True), ("cpu", True)]
    assert uae.autocast_dtype("cpu") is None
