"""The paper authors' v1 release (WeichenFan/UAE, branch ``old_uae``): ``UnifiedUAE`` state dicts."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from uae.convert.common import (
    Source,
    build_checked,
    convert_hf_dinov2,
    convert_mae_decoder,
    count_blocks,
    decoder_config,
    encoder_config,
    latent_stats,
)
from uae.models.config import UAEConfig


def authors_to_uae(
    state: Mapping[str, torch.Tensor],
    *,
    encoder_heads: int | None = None,
    decoder_heads: int | None = None,
    stats: Mapping[str, torch.Tensor] | None = None,
    stats_eps: float = 1e-5,
    name: str = "uae_authors_converted",
):  # -> UAE
    """Convert the authors' v1 ``UnifiedUAE`` state dict (the ``"model"`` or ``"ema"`` entry) to a UAE.

    Args:
        state: Keys ``encoder.encoder.*``, ``decoder.*``, ``freq_modulator.*``.
        encoder_heads: Encoder attention heads (default ``C // 64``, as in DINOv2).
        decoder_heads: Decoder attention heads (default by width, see :data:`DECODER_HEADS_BY_WIDTH`).
        stats: Optional ``{"mean", "var"}`` latent statistics (per channel).
        stats_eps: ``eps`` of their normalisation ``(z - mean) / sqrt(var + eps)``.
        name: ``config.name`` of the result.

    Returns:
        A :class:`uae.UAE` in eval mode (``band_mixing=True``).

    Raises:
        ValueError: Unknown/missing keys or inconsistent shapes, listing them.
    """
    src = Source(state, "authors' checkpoint")
    dec, grid = convert_mae_decoder(src, "decoder.")
    latent_norm = not src.has("encoder.encoder.layernorm.weight")
    enc = convert_hf_dinov2(src, "encoder.encoder.", grid, latent_norm)
    cfg: dict[str, Any] = {**encoder_config(enc, encoder_heads), **decoder_config(dec, decoder_heads)}
    c = cfg["encoder_dim"]

    mod: dict[str, torch.Tensor] = {}
    w_in = src.take("freq_modulator.denoiser.0.weight")
    mod["conv_in.weight"] = w_in
    mod["conv_in.bias"] = src.take("freq_modulator.denoiser.0.bias")
    mod["conv_out.weight"] = src.take("freq_modulator.denoiser.2.weight")
    mod["conv_out.bias"] = src.take("freq_modulator.denoiser.2.bias")
    if w_in.shape[1] % c:
        raise ValueError(
            f"freq_modulator.denoiser.0 has {w_in.shape[1]} input channels, not a multiple of C={c}"
        )
    k = w_in.shape[1] // c
    mix_keys = src.keys_with("freq_modulator.band_transform.layers.")
    n_mix = count_blocks(src, "freq_modulator.band_transform.layers.")
    if n_mix:
        layers = [src.take(f"freq_modulator.band_transform.layers.{i}.weight") for i in range(n_mix)]
        if any(w.shape != (k, k) for w in layers):
            raise ValueError(
                f"band_transform weights must be ({k}, {k}); got {[tuple(w.shape) for w in layers]}"
            )
        mod["mix_in"] = layers[0]
        mix_out = torch.eye(k, dtype=layers[0].dtype)
        for w in layers[1:]:
            mix_out = w @ mix_out  # layers apply in order: x -> W0 x -> W1 W0 x -> ...
        mod["mix_out"] = mix_out
    elif mix_keys:
        raise ValueError(f"unexpected band_transform keys {mix_keys}")
    src.check_consumed()

    config = UAEConfig(
        name=name,
        img_size=grid * cfg["patch_size"],
        encoder_weights="",
        latent_norm=latent_norm,
        num_bands=k,
        modulator_hidden_dim=w_in.shape[0],
        modulator_in_kernel=w_in.shape[-1],
        modulator_out_kernel=mod["conv_out.weight"].shape[-1],
        band_mixing=n_mix > 0,
        **cfg,
    )
    full = {f"encoder.vit.{a}": v for a, v in enc.items()}
    full.update({f"decoder.{a}": v for a, v in dec.items()})
    full.update({f"modulator.{a}": v for a, v in mod.items()})
    full.update(latent_stats(stats, c, stats_eps))
    return build_checked(config, full, "authors' checkpoint")
