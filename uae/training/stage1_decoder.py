"""Stage 1 of the paper: the decoder and band modulator learn to reconstruct from a frozen encoder.

The encoder (DINOv2-initialised) gets no gradients, stays in eval mode and is left out of the optimizer, so
band 0 keeps the teacher's semantics and the latent space stays that of the initial encoder. Objective:
L1 / L2 + optional LPIPS (:meth:`UAETrainingModule.reconstruction_losses`); no band noise, no semantic loss.
"""

from __future__ import annotations

from uae.training.base import UAETrainingModule


class Stage1DecoderModule(UAETrainingModule):
    """Stage 1: decoder + band modulator only; the encoder is frozen. Reconstruction loss, no noise.

    Takes the arguments of :class:`~uae.training.base.UAETrainingModule`; ``semantic_weight`` must stay 0
    and ``noise_std`` unset.
    """

    STAGE = 1
    TRAIN_ENCODER = False
    DEFAULT_SEMANTIC_WEIGHT = 0.0


__all__ = ["Stage1DecoderModule"]
