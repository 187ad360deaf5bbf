"""RAE decoders (bytetriper/RAE, ``nyu-visionx/RAE-collections``) with a DINOv2-with-registers encoder."""

from __future__ import annotations

from collections.abc import Mapping

import torch

from uae.convert.common import (
    DINOV2_DEPTH_BY_WIDTH,
    DINOV2_TIMM_IDS,
    Source,
    build_checked,
    convert_hf_dinov2,
    convert_mae_decoder,
    decoder_config,
    encoder_config,
    latent_stats,
    timm_encoder_config,
)
from uae.models.config import UAEConfig


def rae_to_uae(
    decoder_state: Mapping[str, torch.Tensor],
    encoder_state: Mapping[str, torch.Tensor] | None = None,
    *,
    encoder_heads: int | None = None,
    decoder_heads: int | None = None,
    stats: Mapping[str, torch.Tensor] | None = None,
    stats_eps: float = 1e-5,
    name: str | None = None,
):  # -> UAE
    """Convert an RAE decoder (``model.pt``) plus DINOv2-with-registers encoder weights to a UAE with ``K=1``.

    The band modulator is the identity (both convs zero), so the model is RAE's autoencoder:
    ``decoder(LayerNorm(DINOv2(x)))``.

    Args:
        decoder_state: RAE ``GeneralDecoder`` state dict (``decoder_embed.*``, ``decoder_layers.N.*``, ...;
            a ``decoder.`` prefix is accepted).
        encoder_state: DINOv2 with registers weights in transformers (``embeddings.*``,
            ``encoder.layer.N.*``), timm or facebookresearch naming. ``None`` builds the encoder
            shape from the latent width and loads ``config.encoder_weights`` (the timm Hub id) from the
            Hub cache, or fails naming the file to supply.
        encoder_heads, decoder_heads, stats, stats_eps: As in :func:`authors_to_uae`.
        name: ``config.name`` (default ``uae_rae_base_p14_dinov2`` for a 768-wide latent).

    Returns:
        A :class:`uae.UAE` in eval mode.

    Raises:
        ValueError: Unknown/missing keys or inconsistent shapes.
        FileNotFoundError: No encoder weights given and none in the Hub cache.
    """
    from uae.models.uae import UAE

    dstate = dict(decoder_state)
    if dstate and all(k.startswith("decoder.") for k in dstate):
        dstate = {k[len("decoder.") :]: v for k, v in dstate.items()}
    src = Source(dstate, "RAE decoder checkpoint")
    dec, grid = convert_mae_decoder(src, "")
    src.check_consumed()
    dcfg = decoder_config(dec, decoder_heads)
    c = dec["embed.weight"].shape[1]

    enc: dict[str, torch.Tensor] | None = None
    if encoder_state is not None and any(k.startswith("embeddings.") for k in encoder_state):
        esrc = Source(encoder_state, "DINOv2 encoder weights (transformers naming)")
        enc = convert_hf_dinov2(esrc, "", grid, latent_norm=True)
        esrc.check_consumed()
        ecfg = encoder_config(enc, encoder_heads)
    elif encoder_state is not None:
        ecfg = timm_encoder_config(encoder_state, encoder_heads)
    else:
        ecfg = {
            "encoder_dim": c,
            "patch_size": 14,
            "encoder_depth": DINOV2_DEPTH_BY_WIDTH.get(c, 12),
            "encoder_heads": encoder_heads or max(1, c // 64),
            "encoder_mlp_ratio": 4.0,
            "encoder_reg_tokens": 4,
            "encoder_init_values": 1e-5,
        }
    if ecfg["encoder_dim"] != c:
        raise ValueError(f"encoder width {ecfg['encoder_dim']} does not match the decoder's latent width {c}")
    default_name = "uae_rae_base_p14_dinov2" if c == 768 else f"uae_rae_c{c}_converted"
    config = UAEConfig(
        name=name or default_name,
        img_size=grid * ecfg["patch_size"],
        encoder_weights=DINOV2_TIMM_IDS.get(c, ""),
        latent_norm=True,
        num_bands=1,
        num_semantic_bands=1,
        modulator_hidden_dim=8,
        modulator_in_kernel=1,
        modulator_out_kernel=1,
        **ecfg,
        **dcfg,
    )
    if enc is None:
        # timm / facebookresearch naming (or the Hub cache): the encoder's own strict loader.
        model = UAE(config)
        if encoder_state is not None:
            model.encoder.load_dinov2_state_dict(dict(encoder_state))
        else:
            model.load_encoder_weights()
        enc = {k: v for k, v in model.encoder.vit.state_dict().items()}
    hidden = config.modulator_hidden_dim
    full = {f"encoder.vit.{a}": v for a, v in enc.items()}
    full.update({f"decoder.{a}": v for a, v in dec.items()})
    full.update(
        {
            "modulator.conv_in.weight": torch.zeros(hidden, c, 1, 1),
            "modulator.conv_in.bias": torch.zeros(hidden),
            "modulator.conv_out.weight": torch.zeros(c, hidden, 1, 1),
            "modulator.conv_out.bias": torch.zeros(c),
        }
    )
    full.update(latent_stats(stats, c, stats_eps))
    return build_checked(config, full, "RAE checkpoint")
