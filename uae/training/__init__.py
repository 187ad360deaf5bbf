"""Training: the three UAE stages as LightningModules (one file each), their losses, callbacks and export.

* :class:`Stage1DecoderModule` (:mod:`~uae.training.stage1_decoder`): frozen encoder; decoder + band
  modulator reconstruct.
* :class:`Stage2SemanticModule` (:mod:`~uae.training.stage2_semantic`): everything trains; + band
  semantic loss against a frozen teacher.
* :class:`Stage3GANModule` (:mod:`~uae.training.stage3_gan`): + high-band noise and the GAN loss.

All build on :class:`UAETrainingModule` (:mod:`~uae.training.base`), which wraps a plain :class:`uae.UAE`.

* :class:`LatentDiffusionModule` (:mod:`~uae.training.latent_diffusion`): a latent generator (DiT-DH, flow
  matching) on the latents of a tokenizer, from :class:`LatentDataModule` (:mod:`~uae.training.latent_data`).
``uae fit`` runs them through LightningCLI (:mod:`uae.commands.lightning_cli`).
"""

from uae.training.base import UAETrainingModule, build_model
from uae.training.latent_data import LatentDataModule
from uae.training.latent_diffusion import LatentDiffusionModule
from uae.training.stage1_decoder import Stage1DecoderModule
from uae.training.stage2_semantic import Stage2SemanticModule
from uae.training.stage3_gan import Stage3GANModule

__all__ = [
    "LatentDataModule",
    "LatentDiffusionModule",
    "Stage1DecoderModule",
    "Stage2SemanticModule",
    "Stage3GANModule",
    "UAETrainingModule",
    "build_model",
]
