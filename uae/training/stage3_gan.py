"""Stage 3 of the paper: end-to-end with high-band noise injection and an adversarial loss (after RAE).

On top of stage 2's objective: Gaussian noise on the high bands during training (``noise_std``, default
``config.noise_std``), and a GAN loss: a discriminator (RAE's frozen DINO-S/8 with trainable heads, or a
PatchGAN; :mod:`uae.training.discriminators`) on DiffAugment-ed real and reconstructed images
(:mod:`uae.training.diffaug`), hinge / vanilla objectives, the generator's term scaled by the adaptive
weight (:func:`uae.training.losses.adaptive_weight`) times ``disc_weight``, from ``disc_start`` on. The
discriminator has its own AdamW and schedule (manual optimisation, two optimizers).
"""

from __future__ import annotations

from typing import Any

import torch
from lightning.pytorch.strategies import FSDPStrategy
from torch import nn

from uae.errors import ConfigError
from uae.training.diffaug import diff_augment
from uae.training.discriminators import build_discriminator
from uae.training.losses import adaptive_weight, discriminator_loss, generator_loss
from uae.training.optim import adamw
from uae.training.stage2_semantic import Stage2SemanticModule

GAN_LOSSES = ("hinge", "vanilla")


class Stage3GANModule(Stage2SemanticModule):
    """Stage 3: end-to-end with high-band noise injection and a GAN loss (manual optimisation).

    One forward and one backward per step: the generator's adversarial term runs the discriminator
    with *detached* discriminator parameters (``torch.func.functional_call``), the discriminator's
    term runs on detached reconstructions, so each optimizer gets only its own gradients and DDP sees
    a single backward. The generator optimizer is stepped through Lightning (it counts
    ``global_step``); the discriminator optimizer is stepped directly, so ``global_step`` counts
    iterations. Precision: 32 or bf16-mixed (fp16 loss scaling is not supported here); strategy: DDP
    (not FSDP).

    Args:
        disc_weight: Base weight of the generator's adversarial loss (RAE: 0.75).
        disc_start: Global step at which the GAN losses (generator and discriminator) start.
        disc_lr: Discriminator learning rate (same warm-up/cosine shape as the generator).
        disc_betas: Discriminator AdamW betas.
        disc_loss: ``"hinge"`` or ``"vanilla"`` discriminator loss.
        gen_loss: ``"vanilla"`` (non-saturating) or ``"hinge"`` generator loss.
        adaptive_weight: Scale the adversarial loss by ``||grad rec|| / ||grad gan||`` at the decoder's last layer.
        diff_aug: DiffAugment policy for real and fake images (``""`` disables).
        disc_weights: DINO weights file for the RAE-style discriminator; ``None``: a PatchGAN.
        disc_arch: timm architecture of the DINO discriminator (DINO-S/8: ``vit_small_patch8_224``).
        disc_img_size: Input size of the DINO discriminator.
        disc_arch_kwargs: Extra timm arguments for the DINO discriminator.
        **kwargs: The common arguments of :class:`~uae.training.base.UAETrainingModule`.
    """

    STAGE = 3
    TRAIN_ENCODER = True
    DEFAULT_SEMANTIC_WEIGHT = 0.1
    NOISE = True
    SUPPORTS_FP16 = False

    def __init__(
        self,
        disc_weight: float = 0.75,
        disc_start: int = 0,
        disc_lr: float = 1e-4,
        disc_betas: tuple[float, float] = (0.5, 0.9),
        disc_loss: str = "hinge",
        gen_loss: str = "vanilla",
        adaptive_weight: bool = True,
        diff_aug: str = "color,translation,cutout",
        disc_weights: str | None = None,
        disc_arch: str = "vit_small_patch8_224",
        disc_img_size: int = 224,
        disc_arch_kwargs: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.save_hyperparameters()
        for name, value in (("disc_loss", disc_loss), ("gen_loss", gen_loss)):
            if value not in GAN_LOSSES:
                raise ConfigError(f"{name} must be 'hinge' or 'vanilla', got {value!r}", param=name)
        self.automatic_optimization = False
        self.disc_weight, self.disc_start, self.disc_lr = disc_weight, disc_start, disc_lr
        self.disc_betas = tuple(disc_betas)
        self.disc_loss, self.gen_loss = disc_loss, gen_loss
        self.use_adaptive_weight = adaptive_weight
        self.diff_aug = diff_aug
        self.discriminator = build_discriminator(
            disc_weights, arch=disc_arch, img_size=disc_img_size, arch_kwargs=disc_arch_kwargs
        )

    def setup(self, stage: str) -> None:
        super().setup(stage)
        if isinstance(self.trainer.strategy, FSDPStrategy):
            raise ConfigError(
                f"{type(self).__name__} does not support FSDP; set strategy to ddp", param="strategy"
            )

    def on_fit_start(self) -> None:
        prec = str(self.trainer.precision)
        if "16" in prec and "bf16" not in prec:
            raise ConfigError(
                f"{type(self).__name__} supports precision 32 or bf16-mixed, not {prec!r}", param="precision"
            )

    def configure_optimizers(self) -> Any:
        opt_g = adamw(self.model, self.lr, self.betas, self.weight_decay)
        opt_d = adamw(self.discriminator, self.disc_lr, self.disc_betas, self.weight_decay)  # type: ignore[arg-type]
        return [opt_g, opt_d], [self.lr_schedule(opt_g), self.lr_schedule(opt_d)]

    def _disc_params(self) -> list[nn.Parameter]:
        return [p for p in self.discriminator.parameters() if p.requires_grad]

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        opt_g, opt_d = self.optimizers()  # type: ignore[misc]
        sched_g, sched_d = self.lr_schedulers()  # type: ignore[misc]
        x, target = self.batch_inputs(batch)
        out = self.reconstruction_losses(x, target)
        recon = out["recon"]
        gan_on = self.global_step >= self.disc_start
        g_total = out["loss"]
        if gan_on:
            frozen = {n: p.detach() for n, p in self.discriminator.named_parameters()}
            fake_g = torch.func.functional_call(
                self.discriminator, frozen, (diff_augment(recon, self.diff_aug),)
            )
            g_adv = generator_loss(fake_g, self.gen_loss)
            if self.use_adaptive_weight:
                w = adaptive_weight(out["rec"], g_adv, self.model.decoder.pred.weight) * self.disc_weight
            else:
                w = torch.tensor(self.disc_weight, device=recon.device)
            g_total = g_total + w * g_adv
            real = self.discriminator(diff_augment(target, self.diff_aug))
            fake = self.discriminator(diff_augment(recon.detach(), self.diff_aug))
            d_loss = discriminator_loss(real, fake, self.disc_loss)
            out.update(
                gan_g=g_adv.detach(),
                gan_weight=w.detach(),
                disc=d_loss.detach(),
                logits_real=real.detach().mean(),
                logits_fake=fake.detach().mean(),
            )
        else:
            # Zero-weighted use of every trainable discriminator parameter keeps DDP's reducer happy.
            d_loss = sum((p.sum() * 0.0 for p in self._disc_params()), recon.new_zeros(()))
        self.manual_backward(g_total + d_loss)  # the gradients were released after the last step
        if self.grad_clip:
            norm = self.clip(self.trainable_parameters(), self.grad_clip)
            self.log("train/grad_norm", norm, on_step=True)
            if gan_on:
                self.clip(self._disc_params(), self.grad_clip)
        opt_g.step()
        sched_g.step()
        if gan_on:
            opt_d.optimizer.step()  # raw step: global_step counts generator steps only
            sched_d.step()
        opt_g.zero_grad(set_to_none=True)  # released now, not kept through the next forward
        opt_d.zero_grad(set_to_none=True)
        out["loss"] = g_total.detach()
        self.log_losses("train", out, batch)
        return g_total.detach()


__all__ = ["Stage3GANModule"]
