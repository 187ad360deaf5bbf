"""Converters: weights released by the paper's authors (WeichenFan/UAE v1) and by RAE into uae's layout.

Both releases use the same building blocks, and uae implements them with the same arithmetic, so the
conversion is a renaming with a few exact re-arrangements. Every source key must be consumed and
every target key filled (strict); shapes are checked; anything else is an :class:`~uae.errors.InputError`
(a ``ValueError``) listing keys. Torch files are read with ``torch.load(weights_only=True)`` only
(:func:`uae.files.read_state_dict`).

The release formats, their aliases and converters are one table, :data:`uae.convert.release.RELEASE_SOURCES`;
:func:`convert_release` is ``uae convert`` as a function, :mod:`uae.convert.publish` is ``uae publish``.

Key maps
--------

Encoder: transformers ``Dinov2WithRegistersModel`` names -> timm ``VisionTransformer`` names
(``encoder.vit.*`` in uae). ``N`` is the block index.

=========================================================  ==========================================
source (authors: under ``encoder.encoder.``)                 uae (under ``encoder.vit.``)
=========================================================  ==========================================
``embeddings.cls_token``                                    ``cls_token`` (+ CLS slot of the positions)
``embeddings.register_tokens``                              ``reg_token``
``embeddings.mask_token``                                   dropped (masked-image-modeling only)
``embeddings.position_embeddings`` ``(1, 1+n, C)``          ``pos_embed`` ``= [:, 1:]`` (kept at its grid)
``embeddings.patch_embeddings.projection.{weight,bias}``    ``patch_embed.proj.{weight,bias}``
``encoder.layer.N.norm1.*``                                 ``blocks.N.norm1.*``
``encoder.layer.N.attention.attention.{query,key,value}``   ``blocks.N.attn.qkv`` (concatenated q, k, v)
``encoder.layer.N.attention.output.dense.*``                ``blocks.N.attn.proj.*``
``encoder.layer.N.layer_scale1.lambda1``                    ``blocks.N.ls1.gamma``
``encoder.layer.N.norm2.*``                                 ``blocks.N.norm2.*``
``encoder.layer.N.mlp.fc1.*`` / ``mlp.fc2.*``               ``blocks.N.mlp.fc1.*`` / ``mlp.fc2.*``
``encoder.layer.N.layer_scale2.lambda1``                    ``blocks.N.ls2.gamma``
``layernorm.{weight,bias}``                                 ``norm.*``; absent in RAE / the authors (their
                                                            final norm has no affine: ``latent_norm=True``)
=========================================================  ==========================================

timm's DINOv2-with-registers layout (``no_embed_class``) gives neither CLS nor registers a position,
so the CLS slot of the HF table is folded into ``cls_token`` exactly as timm's ``_convert_dinov2``
does. HF interpolates its 37x37 table to the input grid at every forward; uae keeps the table
(``encoder_pos_grid=37``) and does the same at every forward (``encoder_pos_resample="hf_dinov2"``),
so any input size matches transformers. CLIP and SigLIP2 encoders: :mod:`uae.convert.hf_encoders`.

Decoder: MAE-style transformers ViT decoder (RAE's ``GeneralDecoder``) -> ``decoder.*`` (timm ``Block``).

===========================================================  ==========================================
source (authors: under ``decoder.``; RAE: no prefix)          uae (under ``decoder.``)
===========================================================  ==========================================
``decoder_embed.{weight,bias}``                               ``embed.*``
``trainable_cls_token``                                       ``cls_token`` (+ CLS slot of the positions)
``decoder_pos_embed`` ``(1, 1+h*w, D)``                       checked against the MAE sin-cos table,
                                                              not stored (uae computes it)
``decoder_layers.N.layernorm_before.*``                       ``blocks.N.norm1.*``
``decoder_layers.N.attention.attention.{query,key,value}``    ``blocks.N.attn.qkv`` (concatenated)
``decoder_layers.N.attention.output.dense.*``                 ``blocks.N.attn.proj.*``
``decoder_layers.N.layernorm_after.*``                        ``blocks.N.norm2.*``
``decoder_layers.N.intermediate.dense.*``                     ``blocks.N.mlp.fc1.*``
``decoder_layers.N.output.dense.*``                           ``blocks.N.mlp.fc2.*``
``decoder_norm.*``                                            ``norm.*``
``decoder_pred.*``                                            ``pred.*`` (``p*p*3`` outputs, no CLS slot)
===========================================================  ==========================================

The MAE sin-cos table orders its channels ``[sin x, cos x, sin y, cos y]``, timm's (used by uae)
``[sin y, sin x, cos y, cos x]``, with the same frequencies. A transformer is exactly equivariant
to a permutation of its residual-stream channels, so the converter permutes the decoder's residual
channels (rows of ``embed``/``proj``/``fc2``, columns of ``qkv``/``fc1``/``pred``, the LayerNorms and
the CLS token) to match uae's table: the converted decoder computes the same function.

Band modulator (authors only; RAE has none and gets ``num_bands=1`` with an identity modulator):

================================================  ===========================================
source                                            uae
================================================  ===========================================
``freq_modulator.denoiser.0.{weight,bias}``       ``modulator.conv_in.*`` (3x3, ``K*C -> hidden``)
``freq_modulator.denoiser.2.{weight,bias}``       ``modulator.conv_out.*`` (3x3, ``hidden -> C``)
``freq_modulator.band_transform.layers.0.weight`` ``modulator.mix_in``
``freq_modulator.band_transform.layers.1.weight`` ``modulator.mix_out`` (later layers multiplied in)
================================================  ===========================================

Assumptions (documented, checked where the tensors allow):

* The config is derived from tensor shapes: widths, depths, MLP ratios, patch sizes, register count,
  ``K`` and the modulator's hidden width and kernels; the latent grid from ``decoder_pos_embed``.
  Head counts are not visible in the weights: DINOv2 uses 64-channel heads (``C // 64``); decoders
  use RAE's choices (ViT-B 12, ViT-L 16, ViT-XL 16, else ``D // 64``); override with ``*_heads``.
* LayerNorm eps: transformers' ViT-MAE layers use 1e-12, uae's blocks timm's 1e-5 (1e-6 for the final
  norms). Converted authors' and RAE decoders set ``decoder_norm_eps=1e-12`` (exact).
* Latent statistics: RAE's ``stat.pt`` is per position ``(C, h, w)``; the RAE converter stores it so
  (``latent_stats="per_position"``), the authors' converter accepts per-channel statistics only.
* The band split of a converted authors' v1 model is theirs (``band_scheme="authors_v1"``: hard,
  inclusive rings up to ``min(h, w) // 2`` from their ``v_patch_nums``, corner frequencies dropped),
  so it reproduces their forward pass (1e-6 on the golden fixtures); see :mod:`uae.convert.authors_v1`.
* Pixels are ImageNet-normalised in both releases, as in uae.
"""

from typing import TYPE_CHECKING

import lazy_loader

if TYPE_CHECKING:  # pragma: no cover
    from uae.convert.authors_v1 import authors_to_uae
    from uae.convert.common import mae_sincos_table
    from uae.convert.rae import rae_to_uae
    from uae.convert.release import RELEASE_SOURCES, convert_release, load_release, release_sources

# Imported on first use (as in uae.models), so that the command line reads the release table without torch.
__getattr__, _, _ = lazy_loader.attach(
    __name__,
    submod_attrs={
        "authors_v1": ["authors_to_uae"],
        "common": ["mae_sincos_table"],
        "rae": ["rae_to_uae"],
        "release": ["RELEASE_SOURCES", "convert_release", "load_release", "release_sources"],
    },
)

__all__ = [
    "RELEASE_SOURCES",
    "authors_to_uae",
    "convert_release",
    "load_release",
    "mae_sincos_table",
    "rae_to_uae",
    "release_sources",
]
