"""Training-step throughput of stage 1 and stage 3 (plain model, AdamW, a patch discriminator)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

import torch
import torch.nn.functional as F
from torch import nn

from uae.bench.timing import autocast_context


# ---------------------------------------------------------------------------------------------------
# training steps
# ---------------------------------------------------------------------------------------------------
class PatchDiscriminator(nn.Module):
    """A small PatchGAN discriminator (conv 4x4 stride 2 stack) for the stage-3 step's GAN cost.

    Args:
        channels: Width of the first conv (doubled twice).
    """

    def __init__(self, channels: int = 64) -> None:
        super().__init__()
        c = channels
        self.net = nn.Sequential(
            nn.Conv2d(3, c, 4, 2, 1),
            nn.LeakyReLU(0.2),
            nn.Conv2d(c, 2 * c, 4, 2, 1),
            nn.GroupNorm(8, 2 * c),
            nn.LeakyReLU(0.2),
            nn.Conv2d(2 * c, 4 * c, 4, 2, 1),
            nn.GroupNorm(8, 4 * c),
            nn.LeakyReLU(0.2),
            nn.Conv2d(4 * c, 1, 3, 1, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, 3, H, W)`` in ``[-1, 1]`` -> patch logits ``(B, 1, H/8, W/8)``."""
        return self.net(x)


@contextlib.contextmanager
def training_state(model: nn.Module) -> Iterator[None]:
    """Restore ``requires_grad``, the modulator noise and eval mode after a training benchmark."""
    flags = [p.requires_grad for p in model.parameters()]
    noise = model.modulator.noise_std
    try:
        yield
    finally:
        for p, f in zip(model.parameters(), flags, strict=True):
            p.requires_grad_(f)
            p.grad = None
        model.modulator.noise_std = noise
        model.eval()


def train_step_fn(
    model: nn.Module,
    stage: int,
    x_in: torch.Tensor,
    x_out: torch.Tensor,
    device: torch.device,
    precision: str,
) -> Callable[[], float]:
    """One optimizer step of stage 1 or stage 3 with the plain model (see the README for what it includes).

    Stage 1: encoder frozen (run without autograd), no noise; band split, modulator, decoder, L1, AdamW.
    Stage 3: everything trainable, high-band noise on; L1 + 0.75 x hinge-GAN generator loss through a
    :class:`PatchDiscriminator`, then the discriminator's hinge step.
    """
    model.train()
    if stage == 1:
        model.encoder.requires_grad_(False)
        model.modulator.noise_std = 0.0
    else:
        model.requires_grad_(True)
        model.modulator.noise_std = model.modulator.noise_std or 0.5
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=2e-4, betas=(0.9, 0.95), weight_decay=0.0)
    disc = d_opt = None
    if stage == 3:
        disc = PatchDiscriminator().to(device)
        d_opt = torch.optim.AdamW(disc.parameters(), lr=1e-4, betas=(0.5, 0.9))
    target = x_out
    real = x_out * 2 - 1

    def step() -> float:
        with autocast_context(device, precision):
            if stage == 1:
                with torch.no_grad():
                    z = model.encoder(model.normalize(x_in)).float()
            else:
                z = model.encoder(model.normalize(x_in)).float()
            y = model.render(model.fuse(model.band_projector(z)), clamp=False)
            loss = F.l1_loss(y.float(), target)
            if disc is not None:
                disc.requires_grad_(False)
                loss = loss + 0.75 * (-disc(y * 2 - 1).float().mean())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if disc is not None and d_opt is not None:
            disc.requires_grad_(True)
            with autocast_context(device, precision):
                d_loss = (
                    F.relu(1 - disc(real).float()).mean()
                    + F.relu(1 + disc(y.detach() * 2 - 1).float()).mean()
                )
            d_opt.zero_grad(set_to_none=True)
            d_loss.backward()
            d_opt.step()
        return float(loss.detach())

    return step
