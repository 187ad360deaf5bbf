"""``uae.integrations.diffusers``: a UAE behind diffusers' autoencoder interface, checked beside diffusers' own
``AutoencoderRAE`` on the same RAE weights (tests/fixtures/rae, mapped into diffusers' layout)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from unittest import mock

import pytest
import torch
from safetensors.torch import load_file

pytest.importorskip("diffusers")
pytest.importorskip("transformers")

import diffusers.models.autoencoders.autoencoder_rae as diffusers_rae  # noqa: E402
from diffusers import AutoencoderRAE  # noqa: E402
from diffusers.models.embeddings import get_2d_sincos_pos_embed  # noqa: E402
from diffusers.pipelines.stable_diffusion.pipeline_stable_diffusion_img2img import retrieve_latents  # noqa: E402
from transformers import Dinov2WithRegistersModel  # noqa: E402

import uae  # noqa: E402
from uae.convert import mae_sincos_table  # noqa: E402
from uae.convert.rae import RAE_STATS_EPS, load_release  # noqa: E402
from uae.integrations.diffusers import DeterministicLatent, UAEAutoencoder  # noqa: E402

FIXTURES = Path(__file__).parent / "fixtures" / "rae"
TOL = 1e-5
#: RAE decoder keys -> diffusers' RAEDecoder keys (its attention is diffusers' ``Attention``).
DECODER_KEYS = {
    "attention.attention.query": "attention.to_q",
    "attention.attention.key": "attention.to_k",
    "attention.attention.value": "attention.to_v",
    "attention.output.dense": "attention.to_out.0",
}


def rae_files(stats: bool) -> dict[str, Path]:
    files = {
        "decoder": FIXTURES / "decoders" / "ViTXL" / "model.pt",
        "encoder": FIXTURES / "encoder" / "model.safetensors",
    }
    if stats:
        files["stats"] = FIXTURES / "stats" / "per_position" / "stat.pt"
    return files


def autoencoder_rae(stats: bool) -> AutoencoderRAE:
    """diffusers' AutoencoderRAE holding the fixture's weights.

    diffusers has no converter for RAE's files in 0.42 (its hub models were converted beforehand), so the
    layout is mapped here: the encoder is the fixture's transformers model (AutoencoderRAE builds
    heads as ``C // 64``, too few for the tiny width, so its builder is given the fixture's);
    decoder keys are renamed (:data:`DECODER_KEYS`); RAE's ``(z - mean) / sqrt(var + eps)`` is
    AutoencoderRAE's ``(z - mean) / (std + 1e-5)`` with ``std = sqrt(var + eps) - 1e-5`` (``1 - 1e-5``
    without statistics, where RAE does not normalise); and the
    decoder's sin-cos table is RAE's (diffusers recomputes it with a ``base_size`` of 16, which
    equals MAE's table on the released 16x16 grid, :func:`test_decoder_positions_agree_on_the_release_grid`,
    but not on the fixture's 8x8 grid).
    """

    def build_encoder(encoder_type, hidden_size, patch_size, num_hidden_layers, head_dim=64):
        enc = Dinov2WithRegistersModel.from_pretrained(str(FIXTURES / "encoder"))
        enc.layernorm.weight = enc.layernorm.bias = None  # RAE's Dinov2withNorm, as AutoencoderRAE does
        return enc.requires_grad_(False)

    kwargs = {
        "latents_std": [1 - 1e-5]
    }  # without statistics AutoencoderRAE still divides by 1 + 1e-5; RAE does not
    if stats:
        s = torch.load(rae_files(True)["stats"], weights_only=True)
        kwargs = {"latents_mean": s["mean"], "latents_std": torch.sqrt(s["var"] + RAE_STATS_EPS) - 1e-5}
    with mock.patch.object(diffusers_rae, "_build_encoder", build_encoder):
        ae = AutoencoderRAE(
            encoder_type="dinov2",
            encoder_hidden_size=48,
            encoder_patch_size=3,
            encoder_num_hidden_layers=2,
            decoder_hidden_size=72,
            decoder_num_hidden_layers=2,
            decoder_num_attention_heads=4,
            decoder_intermediate_size=256,
            patch_size=4,
            encoder_input_size=24,
            **kwargs,
        )
    state = torch.load(rae_files(False)["decoder"], weights_only=True)
    with torch.no_grad():
        ae.decoder.decoder_pos_embed.copy_(state.pop("decoder_pos_embed"))
    mapped = {}
    for k, v in state.items():
        for a, b in DECODER_KEYS.items():
            k = k.replace(a, b)
        mapped[k] = v
    ae.decoder.load_state_dict(mapped, strict=True)
    return ae.eval()


@pytest.fixture(scope="module")
def ref() -> dict[str, torch.Tensor]:
    return load_file(str(FIXTURES / "reference.safetensors"))


def converted(stats: bool) -> uae.UAE:
    return load_release(rae_files(stats), encoder="dinov2", encoder_heads=2, decoder_heads=4)


def max_err(a: torch.Tensor, b: torch.Tensor) -> float:
    assert a.shape == b.shape, (a.shape, b.shape)
    return float((a - b).abs().max())


@pytest.mark.parametrize("stats", [False, True])
def test_same_latents_and_images_as_autoencoder_rae(ref, stats: bool) -> None:
    theirs, ours = autoencoder_rae(stats), UAEAutoencoder.from_uae(converted(stats))
    x = ref["input"]
    with torch.no_grad():
        z_theirs = theirs.encode(x).latent
        out = ours.encode(x)
        z = out.latent_dist.sample()
        assert max_err(z, z_theirs) <= TOL and torch.equal(out.latent, z)
        assert max_err(ours.decode(z).sample, theirs.decode(z_theirs).sample) <= TOL
        assert max_err(ours(x).sample, theirs(x).sample) <= TOL
        # ... and both are RAE's own numbers
        key = "per_position" if stats else None
        if key:
            assert max_err(z, ref["latent_normalized.per_position"]) <= TOL
        assert max_err(ours(x).sample, ref[f"image.ViTXL.{key or 'none'}"]) <= TOL
        # another input size: both resize as RAE's encode does (bicubic, no antialias)
        x32 = torch.nn.functional.interpolate(x, size=(32, 32), mode="nearest")
        assert max_err(ours.encode(x32).latent, theirs.encode(x32).latent) <= TOL
    if stats:
        assert ours.config.latents_mean is not None and len(ours.config.latents_std) == 48 * 8 * 8
    else:
        assert ours.config.latents_mean is None and ours.config.latents_std is None


def test_decoder_positions_agree_on_the_release_grid() -> None:
    """diffusers recomputes the decoder's sin-cos table: equal to RAE's (MAE's) on the released 16x16 grid."""
    d = get_2d_sincos_pos_embed(1152, 16, cls_token=True, extra_tokens=1, output_type="pt").float()
    assert torch.equal(d[1:], mae_sincos_table(1152, 16).reshape(256, 1152)) and not d[0].any()


def test_autoencoder_interface(ref) -> None:
    """What diffusers code reads: latent_dist.sample/mode, decode(z).sample, config, dtype/device, slicing."""
    model = converted(True)
    vae = UAEAutoencoder.from_uae(model, scaling_factor=0.5)
    x = ref["input"]
    with torch.no_grad():
        dist = vae.encode(x).latent_dist
        assert isinstance(dist, DeterministicLatent)
        z = dist.sample(torch.Generator().manual_seed(0))
        assert torch.equal(z, dist.mode()) and torch.equal(z, dist.mean) and not dist.std.any()
        assert torch.equal(dist.kl(), torch.zeros(2))
        assert torch.equal(retrieve_latents(vae.encode(x)), z)  # diffusers' pipelines' helper
        assert torch.allclose(z, 0.5 * model.normalize_latent(model.encode(x).latent), atol=1e-6)
        assert isinstance(vae.encode(x, return_dict=False)[0], DeterministicLatent)
        image = vae.decode(z).sample
        assert torch.equal(vae.decode(z, return_dict=False)[0], image)
        assert max_err(image, ref["image.ViTXL.per_position"]) <= TOL  # scaling undone, not clamped
        vae.enable_slicing()
        assert max_err(vae.decode(z).sample, image) <= 1e-6 and max_err(vae.encode(x).latent, z) <= 1e-6
        vae.disable_slicing()
    assert (
        vae.config.scaling_factor == 0.5 and vae.config.sample_size == 32 and vae.config.latent_channels == 48
    )
    assert vae.dtype == torch.float32 and vae.device == torch.device("cpu")
    assert vae.latents_std.shape == (48, 8, 8)


def test_conventions_options(ref) -> None:
    model = converted(True)
    x = ref["input"]
    raw = UAEAutoencoder.from_uae(
        model, normalize_latents=False
    )  # SDXL / SD3 convention: the pipeline normalises
    signed = UAEAutoencoder.from_uae(model, signed_images=True)  # AutoencoderKL's [-1, 1] images
    strict = UAEAutoencoder.from_uae(model, resize_inputs=False)
    with torch.no_grad():
        assert torch.equal(raw.encode(x).latent, model.encode(x).latent)
        z = signed.encode(x * 2 - 1).latent
        assert max_err(z, model.normalize_latent(model.encode(x).latent)) <= 1e-6
        assert max_err(signed.decode(z).sample, ref["image.ViTXL.per_position"] * 2 - 1) <= 2 * TOL
        with pytest.raises(ValueError, match="24"):
            strict.encode(torch.rand(1, 3, 32, 32))
    with pytest.raises(ValueError, match="scaling_factor"):
        UAEAutoencoder.from_uae(model, scaling_factor=0.0)


def test_save_and_load_with_diffusers(ref, tmp_path: Path) -> None:
    vae = UAEAutoencoder.from_uae(converted(True), scaling_factor=2.0)
    vae.save_pretrained(tmp_path / "vae")
    loaded = UAEAutoencoder.from_pretrained(tmp_path / "vae").eval()
    assert loaded.config.scaling_factor == 2.0 and loaded.uae.config == vae.uae.config
    with torch.no_grad():
        assert torch.equal(loaded.encode(ref["input"]).latent, vae.encode(ref["input"]).latent)


def test_adapter_wraps_any_model_spec() -> None:
    vae = UAEAutoencoder.from_uae("uae_demo")  # a registered name (the embedded demo)
    x = uae.load_image(Path(__file__).parent / "assets" / "chelsea.png", size=64)[None]
    with torch.no_grad():
        expected = vae.uae(x, clamp=False).sample
        assert torch.equal(vae(x).sample, expected)  # K=3 bands: decode runs the band split + modulator


def test_import_uae_does_not_import_diffusers() -> None:
    code = (
        "import sys, uae, uae.data, uae.integrations; uae.create_model('uae_test'); "
        "assert 'diffusers' not in sys.modules and 'transformers' not in sys.modules, sorted(sys.modules)"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
