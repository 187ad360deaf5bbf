"""Loading the golden generator fixtures (tests/fixtures/generation, see its README) for the tests."""

from __future__ import annotations

import functools
import math
from pathlib import Path

import torch
import yaml
from safetensors.torch import load_file

from uae.convert.dit import config_from_original_params, load_original_dit
from uae.models.dit import DiTDH
from uae.models.dit_config import DiTDHConfig

FIXTURES = Path(__file__).parent / "fixtures"
GEN = FIXTURES / "generation"
#: The release configs' time shift, sqrt(196608 / 4096), used by every fixture.
SHIFT = math.sqrt(196608 / 4096)
#: Single forward passes, losses, decoded images (measured: 0 to 5e-7).
TOL = 1e-5
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
