"""Training: the three UAE stages as LightningModules, losses, LightningCLI entry points, export."""

from uae.training.module import (
    Stage1DecoderModule,
    Stage2SemanticModule,
    Stage3GANModule,
    UAETrainingModule,
    build_model,
)

__all__ = [
    "Stage1DecoderModule",
    "Stage2SemanticModule",
    "Stage3GANModule",
    "UAETrainingModule",
    "build_model",
]
