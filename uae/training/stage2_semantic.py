"""Stage 2 of the paper: the whole model trains, with the band semantic loss against a frozen teacher.

``L = L_rec + semantic_weight * L_sem``, where ``L_sem`` (:func:`uae.training.losses.semantic_loss`) ties the
lowest ``K_base`` bands (``config.num_semantic_bands``) of the student's encoder to the same bands of a
frozen teacher: the initial encoder (a copy taken when training starts, right after stage 1, whose encoder
was frozen) or DINOv2 weights given as ``teacher_weights``. The teacher's features are split into bands by
the student's own band projector, so both sides are compared band by band.
"""

from __future__ import annotations

import copy
import logging
from typing import Any

import torch
from torch import nn

from uae.models.dinov2 import read_dinov2_weights
from uae.models.uae import UAE
from uae.training.base import UAETrainingModule
from uae.training.losses import semantic_loss

logger = logging.getLogger(__name__)


def build_teacher(model: UAE, teacher_weights: str | None = None, *, pretrained: bool = True) -> nn.Module:
    """The frozen semantic teacher: a copy of ``model.encoder``, loaded with ``teacher_weights`` when given.

    Args:
        model: The student.
        teacher_weights: DINOv2 weights (file or timm Hub id); ``None``: the encoder as it is now.
        pretrained: The student's encoder holds trained weights (else a warning: a random teacher).

    Raises:
        MissingFileError: ``teacher_weights`` not available.
        UAELoadError: The weights do not fit the encoder.
    """
    if teacher_weights:
        teacher = copy.deepcopy(model.encoder)
        teacher.load_dinov2_state_dict(read_dinov2_weights(teacher_weights))
        return teacher.requires_grad_(False).eval()
    if not pretrained:
        logger.warning(
            "Semantic teacher is a copy of a randomly initialised encoder "
            "(no pretrained, encoder_weights or teacher_weights given)"
        )
    return model.encoder.frozen_copy()


class Stage2SemanticModule(UAETrainingModule):
    """Stage 2: the full model trains; semantic loss on the lowest ``K_base`` bands + reconstruction.

    Args:
        **kwargs: The arguments of :class:`~uae.training.base.UAETrainingModule` (``semantic_weight``
            defaults to 0.1 here; ``teacher_weights`` chooses the teacher).
    """

    STAGE = 2
    TRAIN_ENCODER = True
    DEFAULT_SEMANTIC_WEIGHT = 0.1

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if self.semantic_weight > 0 and self.num_semantic_bands > 0:
            hp = self.hparams
            self.teacher = build_teacher(
                self.model,
                hp.get("teacher_weights"),
                pretrained=bool(hp.get("pretrained") or hp.get("encoder_weights")),
            )

    def reconstruction_losses(self, x: torch.Tensor, target: torch.Tensor) -> dict[str, torch.Tensor]:
        """The reconstruction losses, plus ``semantic`` (``L_sem``) and its weighted term in ``loss``."""
        out = super().reconstruction_losses(x, target)
        if self.teacher is not None:
            with torch.no_grad():
                zs = self.teacher(self.model.normalize(x)).float()
                teacher_bands = self.model.band_projector(zs)
            sem = semantic_loss(out["bands"], teacher_bands, self.num_semantic_bands)
            out["semantic"] = sem.detach()
            out["loss"] = out["loss"] + self.semantic_weight * sem
        return out


__all__ = ["Stage2SemanticModule", "build_teacher"]
