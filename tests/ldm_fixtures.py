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
    gives it per-position latent statistics ``(C, h, w)``, as RAE's and the 64-token releases have."""
    torch.manual_seed(seed)
    model = uae.create_model(name, latent_stats="per_position") if stats else uae.create_model(name)
    if stats:
        shape = model.config.latent_shape
        model.set_latent_stats(0.3 * torch.randn(shape), torch.rand(shape) + 0.5)
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
