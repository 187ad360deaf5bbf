"""Training losses: pixel (L1/L2), the band semantic loss, and the GAN objectives with RAE's adaptive weight.

All image tensors are ``(B, 3, H, W)`` in the ``[0, 1]`` scale unless stated otherwise. The networks the
losses run through live apart: LPIPS in :mod:`uae.networks.lpips`, the discriminators in
:mod:`uae.training.discriminators`, DiffAugment in :mod:`uae.training.diffaug`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from uae.errors import InputError

# --------------------------------------------------------------------------- pixel losses


def pixel_loss(
    pred: torch.Tensor, target: torch.Tensor, l1_weight: float = 1.0, l2_weight: float = 0.0
) -> torch.Tensor:
    """Weighted L1 + L2 (mean squared) pixel loss.

    Args:
        pred: ``(B, 3, H, W)`` reconstruction.
        target: ``(B, 3, H, W)`` target, same shape.
        l1_weight: Weight of the mean absolute error.
        l2_weight: Weight of the mean squared error.

    Returns:
        Scalar loss.
    """
    if pred.shape != target.shape:
        raise InputError(
            f"pixel_loss: prediction {tuple(pred.shape)} and target {tuple(target.shape)} differ"
        )
    loss = pred.new_zeros(())
    if l1_weight:
        loss = loss + l1_weight * (pred - target).abs().mean()
    if l2_weight:
        loss = loss + l2_weight * (pred - target).pow(2).mean()
    return loss


# --------------------------------------------------------------------------- semantic loss


def semantic_loss(bands: torch.Tensor, teacher_bands: torch.Tensor, num_bands: int = 1) -> torch.Tensor:
    """``L_sem = mean_{k < K_base} ||f_u^k - f_s^k||^2`` (mean squared error per band, averaged).

    Args:
        bands: Student bands ``(B, K, C, h, w)``.
        teacher_bands: Teacher bands, same shape (no gradient needed).
        num_bands: ``K_base``, the number of lowest bands tied to the teacher.

    Returns:
        Scalar loss (0 when ``num_bands == 0``).
    """
    if bands.shape != teacher_bands.shape:
        raise InputError(f"semantic_loss: bands {tuple(bands.shape)} vs teacher {tuple(teacher_bands.shape)}")
    if num_bands <= 0:
        return bands.new_zeros(())
    k = min(num_bands, bands.shape[1])
    return F.mse_loss(bands[:, :k].float(), teacher_bands[:, :k].detach().float())


# --------------------------------------------------------------------------- GAN: losses and weight


def discriminator_loss(
    real_logits: torch.Tensor, fake_logits: torch.Tensor, kind: str = "hinge"
) -> torch.Tensor:
    """Discriminator loss on logits of real and (detached) fake images.

    ``hinge``: ``mean(relu(1 - real)) + mean(relu(1 + fake))``; ``vanilla``:
    ``mean(softplus(-real)) + mean(softplus(fake))`` (binary cross-entropy). Both halved.
    """
    if kind == "hinge":
        return 0.5 * (F.relu(1.0 - real_logits).mean() + F.relu(1.0 + fake_logits).mean())
    if kind == "vanilla":
        return 0.5 * (F.softplus(-real_logits).mean() + F.softplus(fake_logits).mean())
    raise InputError(f"disc_loss must be 'hinge' or 'vanilla', got {kind!r}", param="disc_loss")


def generator_loss(fake_logits: torch.Tensor, kind: str = "vanilla") -> torch.Tensor:
    """Generator adversarial loss: ``hinge``: ``-mean(fake)``; ``vanilla`` (non-saturating): ``mean(softplus(-fake))``."""
    if kind == "hinge":
        return -fake_logits.mean()
    if kind == "vanilla":
        return F.softplus(-fake_logits).mean()
    raise InputError(f"gen_loss must be 'hinge' or 'vanilla', got {kind!r}", param="gen_loss")


def adaptive_weight(
    rec_loss: torch.Tensor, gen_loss: torch.Tensor, last_layer: torch.Tensor, max_weight: float = 1e4
) -> torch.Tensor:
    """Adaptive generator weight (taming-transformers / RAE): ``||grad rec|| / (||grad gan|| + 1e-4)``
    at the decoder's last layer, clamped to ``[0, max_weight]`` and detached.

    Args:
        rec_loss: Reconstruction loss (scalar, with graph).
        gen_loss: Generator adversarial loss (scalar, with graph).
        last_layer: The decoder's last weight (e.g. ``model.decoder.pred.weight``).
        max_weight: Upper clamp.

    Returns:
        Scalar weight (no gradient). 0 when the GAN loss has no gradient at ``last_layer``.
    """
    rec_grad = torch.autograd.grad(rec_loss, last_layer, retain_graph=True, allow_unused=True)[0]
    gen_grad = torch.autograd.grad(gen_loss, last_layer, retain_graph=True, allow_unused=True)[0]
    if rec_grad is None or gen_grad is None:
        return rec_loss.new_zeros(())
    w = rec_grad.norm() / (gen_grad.norm() + 1e-4)
    return w.clamp(0.0, max_weight).detach()


__all__ = [
    "adaptive_weight",
    "discriminator_loss",
    "generator_loss",
    "pixel_loss",
    "semantic_loss",
]
