"""Small ``uae encode`` exports for the latent-diffusion tests: a saved tokenizer and its encoded photos."""

from __future__ import annotations

from pathlib import Path

import torch

import uae
from uae.evaluation.latents import encode_dataset
from uae.evaluation.options import RunOptions
from uae.factory import load_model


def save_tokenizer(directory: Path, seed: int = 0, name: str = "uae_test", stats: bool = False) -> Path:
    """A registered tokenizer (random weights from ``seed``) saved with ``save_pretrained``; ``stats=True``
    gives it per-channel latent statistics (as a release has)."""
    torch.manual_seed(seed)
    model = uae.create_model(name)
    if stats:
        c = model.config.latent_dim
        model.set_latent_stats(torch.linspace(-0.5, 0.5, c), torch.linspace(0.5, 2.0, c))
    model.save_pretrained(directory)
    return directory


def encode(
    tokenizer: str | Path,
    images: Path,
    out: Path,
    what: tuple[str, ...] = ("fused", "bands"),
    shard_size: int | None = 3,
) -> Path:
    """``uae encode --model tokenizer --data images --out out --what ...`` through the library."""
    model = load_model(str(tokenizer))
    encode_dataset(
        model,
        str(images),
        out,
        what=what,
        shard_size=shard_size,
        metadata={"model": str(tokenizer)},
        options=RunOptions(batch_size=4, progress=False),
    )
    return out
