"""Loading the golden generator fixtures (tests/fixtures/generation, see its README) for the tests."""

from __future__ import annotations

import functools
import math
from pathlib import Path

import torch
import yaml
from safetensors.torch import load_file

from uae.convert.dit import config_from_original_params, convert_dit_state, load_original_dit
from uae.models.dit import DiTDH
from uae.models.dit_config import DiTDHConfig

FIXTURES = Path(__file__).parent / "fixtures"
GEN = FIXTURES / "generation"
#: The release configs' time shift, sqrt(196608 / 4096), used by every fixture.
SHIFT = math.sqrt(196608 / 4096)
#: Single forward passes, losses, decoded images (measured: 0 to 5e-7 on the torch the references were
#: recorded with; other torch releases' CPU kernels round differently: up to 2.4e-5 with torch 2.10).
TOL = 3e-5
#: Sampled latents (the issue's bar; measured: 0).
SAMPLE_TOL = 1e-4


def max_err(a: torch.Tensor, b: torch.Tensor) -> float:
    assert a.shape == b.shape, (a.shape, b.shape)
    return float((a.float() - b.float()).abs().max())


@functools.cache
def release_params() -> dict[str, dict]:
    """``stage_2.params`` of the fixture models, from the release-layout YAML files (and the 1-D one)."""
    rae = yaml.safe_load((GEN / "rae" / "DiTDH_AG.yaml").read_text())
    authors = yaml.safe_load((GEN / "authors" / "64token.yaml").read_text())
    main = authors["stage_2"]["params"]
    return {
        "rae": rae["stage_2"]["params"],
        "rae_guidance": rae["guidance"]["guidance_model"]["params"],
        "authors": main,
        # the authors' rope_mode: 1d model (README: rectangular 4x8 grid, 8 channels, [32, 48], [1, 1])
        "authors_rope1d": {
            **main,
            "input_size": [4, 8],
            "in_channels": 8,
            "hidden_size": [32, 48],
            "depth": [1, 1],
            "rope_mode": "1d",
        },
    }


def config(which: str) -> DiTDHConfig:
    return config_from_original_params(release_params()[which], name=which)


FILES = {
    "rae": (GEN / "rae" / "stage2_model.pt", "rae"),
    "rae_guidance": (GEN / "rae" / "guidance_model.pt", "rae"),
    "authors": (GEN / "authors" / "stage_2.pt", "authors"),
    "authors_rope1d": (GEN / "authors" / "rope1d_stage_2.pt", "authors"),
}


@functools.cache
def model(which: str) -> DiTDH:
    """A converted fixture generator (eval mode; cached, do not modify)."""
    path, layout = FILES[which]
    return load_original_dit(path, config(which), layout=layout)


@functools.cache
def reference(source: str) -> dict[str, torch.Tensor]:
    """``rae/reference.safetensors`` or ``authors/reference.safetensors``."""
    return load_file(str(GEN / source / "reference.safetensors"))


# ---------------------------------------------------------------------------------------------- Hub caches
def with_options(monkeypatch, name: str, **options) -> None:
    """Give the weights-table entry ``name`` extra converter options (the fixtures' scaled-down sizes, which
    the released files do not need: head counts, ``params``). Repo, files and source stay the table's."""
    import dataclasses

    from uae.models import pretrained as table

    cfg = table.get_pretrained_cfg(name)
    tiny = dataclasses.replace(cfg, options={**cfg.options, **options})
    entries = [tiny if c.tag == cfg.tag else c for c in table._PRETRAINED[cfg.architecture]]
    monkeypatch.setitem(table._PRETRAINED, cfg.architecture, entries)


def put_release(hf_home: Path, name: str, sources: dict[str, Path], commit: str) -> None:
    """:func:`conftest.put_release_in_hub_cache` (kept under this name for the generation tests)."""
    from conftest import put_release_in_hub_cache

    put_release_in_hub_cache(hf_home, name, sources, commit)


AUTHORS_V2_DINOV2 = FIXTURES / "authors_v2" / "dinov2" / "checkpoints" / "DINOv2-B"
RAE = FIXTURES / "rae"


def stage1_params_64token() -> dict:
    """``stage_1.params`` of the fixture's 64token.yaml (the tiny tokenizer's sizes)."""
    return yaml.safe_load((GEN / "authors" / "64token.yaml").read_text())["stage_1"]["params"]


def lay_out_rae_generation(hf_home: Path, monkeypatch, commit: str) -> None:
    """RAE's 256 px generation release as a Hub cache: DiT-DH-XL, DiT-DH-S and the ViT-XL tokenizer, with
    the fixture files at the table's paths and the fixtures' sizes as options."""
    put_release(hf_home, "dit_dh_xl.rae", {"checkpoint": GEN / "rae" / "stage2_model.pt"}, commit)
    put_release(hf_home, "dit_dh_s.rae", {"checkpoint": GEN / "rae" / "guidance_model.pt"}, commit)
    put_release(
        hf_home,
        "rae_base_p14_dinov2_vitxl.rae",
        {
            "decoder": RAE / "decoders" / "ViTXL" / "model.pt",
            "stats": RAE / "stats" / "per_position" / "stat.pt",
            "encoder": RAE / "encoder" / "model.safetensors",
        },
        commit,
    )
    with_options(monkeypatch, "dit_dh_xl.rae", params=release_params()["rae"])
    with_options(monkeypatch, "dit_dh_s.rae", params=release_params()["rae_guidance"])
    with_options(monkeypatch, "rae_base_p14_dinov2_vitxl.rae", encoder_heads=2, decoder_heads=4)


def lay_out_authors_generation(hf_home: Path, monkeypatch, commit: str) -> None:
    """The authors' 64-token release as a Hub cache: tokenizer stage_1.pt + normalization_stats.pt and the
    generator stage_2.pt at the table's paths (the tiny v2 DINOv2 tokenizer stands in for stage_1.pt)."""
    put_release(
        hf_home,
        "uae_base_p14_dinov2.authors_v2_64token",
        {"checkpoint": AUTHORS_V2_DINOV2 / "ep-last.pt", "stats": GEN / "authors" / "normalization_stats.pt"},
        commit,
    )
    put_release(hf_home, "uae_64token_dit.authors_v2", {"checkpoint": GEN / "authors" / "stage_2.pt"}, commit)
    with_options(
        monkeypatch,
        "uae_base_p14_dinov2.authors_v2_64token",
        params=stage1_params_64token(),
        encoder_heads=2,
        decoder_heads=2,
    )
    with_options(monkeypatch, "uae_64token_dit.authors_v2", params=release_params()["authors"])


def recorded_state(
    ref: dict[str, torch.Tensor], original: dict[str, torch.Tensor], prefix: str, cfg: DiTDHConfig
) -> dict[str, torch.Tensor]:
    """The weights under ``prefix`` (``"model."``, ``"ema."``) of a recorded training step, in uae's keys (the
    step file leaves out the fixed RoPE tables: they come from the original state dict)."""
    rope = {k: v for k, v in original.items() if "feat_rope" in k}
    return convert_dit_state(
        {k[len(prefix) :]: v for k, v in ref.items() if k.startswith(prefix)} | rope, cfg
    )
