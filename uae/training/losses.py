"""Training losses: pixel (L1/L2), LPIPS, band-0 semantic loss, and the GAN pieces (discriminators,
hinge/vanilla losses, adaptive generator weight, DiffAugment).

All image tensors are ``(B, 3, H, W)`` in the ``[0, 1]`` scale unless stated otherwise.
"""

from __future__ import annotations

import contextlib
import logging
import math
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

logger = logging.getLogger(__name__)

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

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
        raise ValueError(
            f"pixel_loss: prediction {tuple(pred.shape)} and target {tuple(target.shape)} differ"
        )
    loss = pred.new_zeros(())
    if l1_weight:
        loss = loss + l1_weight * (pred - target).abs().mean()
    if l2_weight:
        loss = loss + l2_weight * (pred - target).pow(2).mean()
    return loss


# --------------------------------------------------------------------------- LPIPS

#: torchvision backbone checkpoints LPIPS needs, by torchmetrics ``net_type``.
LPIPS_BACKBONE_FILES = {
    "vgg": "vgg16-397923af.pth",
    "alex": "alexnet-owt-7be5be79.pth",
    "squeeze": "squeezenet1_1-b8a52dc0.pth",
}
LPIPS_BACKBONE_URLS = {
    "vgg": "https://download.pytorch.org/models/vgg16-397923af.pth",
    "alex": "https://download.pytorch.org/models/alexnet-owt-7be5be79.pth",
    "squeeze": "https://download.pytorch.org/models/squeezenet1_1-b8a52dc0.pth",
}


def lpips_backbone_path(net_type: str = "vgg") -> Path:
    """Where torchvision looks for the LPIPS backbone: ``$TORCH_HOME/hub/checkpoints/<file>``."""
    if net_type not in LPIPS_BACKBONE_FILES:
        raise ValueError(f"LPIPS net_type must be one of {sorted(LPIPS_BACKBONE_FILES)}, got {net_type!r}")
    return Path(torch.hub.get_dir()) / "checkpoints" / LPIPS_BACKBONE_FILES[net_type]


@contextlib.contextmanager
def _hub_dir_with(file: Path, name: str) -> Iterator[None]:
    """Temporarily point ``torch.hub`` at a folder whose ``checkpoints/<name>`` is ``file``.

    The previous state is restored exactly: when no directory was set explicitly, ``torch.hub`` goes
    back to following ``$TORCH_HOME`` (``set_dir(get_dir())`` would pin today's value for good).
    """
    old = getattr(torch.hub, "_hub_dir", None)
    with tempfile.TemporaryDirectory() as tmp:
        ck = Path(tmp) / "checkpoints"
        ck.mkdir()
        try:
            (ck / name).symlink_to(file.resolve())
        except OSError:  # no symlinks (some filesystems): copy
            shutil.copy(file, ck / name)
        torch.hub.set_dir(tmp)
        try:
            yield
        finally:
            torch.hub._hub_dir = old


class LPIPSLoss(nn.Module):
    """LPIPS perceptual distance as a loss, built on torchmetrics' ``LearnedPerceptualImagePatchSimilarity``.

    The LPIPS linear heads ship with torchmetrics; the torchvision backbone weights must be present:
    ``$TORCH_HOME/hub/checkpoints/vgg16-397923af.pth`` (for ``net_type="vgg"``), or an explicit
    ``backbone_weights`` file. The check happens at construction, so a training run fails before
    its first step, never mid-run. The backbone is frozen and kept in eval mode.

    Args:
        net_type: ``"vgg"`` (the authors' choice), ``"alex"`` or ``"squeeze"``.
        backbone_weights: Path of the torchvision backbone checkpoint; default: the torch hub cache.

    Raises:
        FileNotFoundError: The backbone file is missing (the message names the file, where to put it,
            and the URL), or ``backbone_weights`` does not exist.
    """

    def __init__(
        self, net_type: Literal["vgg", "alex", "squeeze"] = "vgg", backbone_weights: str | None = None
    ) -> None:
        super().__init__()
        from torchmetrics.image.lpip import LearnedPerceptualImagePatchSimilarity

        expected = lpips_backbone_path(net_type)
        if backbone_weights is not None:
            path = Path(backbone_weights).expanduser()
            if not path.is_file():
                raise FileNotFoundError(f"LPIPS backbone weights not found: {path}")
            ctx: contextlib.AbstractContextManager = _hub_dir_with(path, expected.name)
        else:
            if not expected.is_file():
                raise FileNotFoundError(
                    f"LPIPS needs the torchvision {net_type} backbone weights {expected.name}, not found at "
                    f"{expected}. Download {LPIPS_BACKBONE_URLS[net_type]} into {expected.parent} (or set "
                    "TORCH_HOME), pass lpips_backbone_weights=<file>, or train without LPIPS (lpips_weight: 0)."
                )
            ctx = contextlib.nullcontext()
        with ctx:
            metric = LearnedPerceptualImagePatchSimilarity(net_type=net_type, normalize=True)
        self.net = metric.net
        self.net.requires_grad_(False)
        self.net.eval()

    def train(self, mode: bool = True) -> LPIPSLoss:  # the backbone always stays in eval mode
        super().train(mode)
        self.net.eval()
        return self

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Mean LPIPS distance between ``(B, 3, H, W)`` images in ``[0, 1]`` (scalar)."""
        return self.net(pred.float(), target.float(), normalize=True).mean()


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
        raise ValueError(f"semantic_loss: bands {tuple(bands.shape)} vs teacher {tuple(teacher_bands.shape)}")
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
    raise ValueError(f"discriminator loss must be 'hinge' or 'vanilla', got {kind!r}")


def generator_loss(fake_logits: torch.Tensor, kind: str = "vanilla") -> torch.Tensor:
    """Generator adversarial loss: ``hinge``: ``-mean(fake)``; ``vanilla`` (non-saturating): ``mean(softplus(-fake))``."""
    if kind == "hinge":
        return -fake_logits.mean()
    if kind == "vanilla":
        return F.softplus(-fake_logits).mean()
    raise ValueError(f"generator loss must be 'hinge' or 'vanilla', got {kind!r}")


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


# --------------------------------------------------------------------------- DiffAugment


def diff_augment(
    x: torch.Tensor, policy: str = "color,translation,cutout", generator: torch.Generator | None = None
) -> torch.Tensor:
    """Differentiable augmentation (Zhao et al., 2020) applied identically-distributed to real and fake.

    Args:
        x: ``(B, C, H, W)`` images (any scale; colour ops assume roughly ``[0, 1]``).
        policy: Comma-separated subset of ``color``, ``translation``, ``cutout``.
        generator: Optional RNG.

    Returns:
        Augmented images, same shape; gradients flow to ``x``.
    """
    if not policy:
        return x
    b, _, h, w = x.shape
    dev = x.device

    def rand(*shape: int) -> torch.Tensor:
        return torch.rand(*shape, device=dev, generator=generator, dtype=x.dtype)

    for op in (p.strip() for p in policy.split(",") if p.strip()):
        if op == "color":
            x = x + (rand(b, 1, 1, 1) - 0.5)  # brightness
            mean = x.mean(dim=1, keepdim=True)
            x = (x - mean) * (rand(b, 1, 1, 1) * 2) + mean  # saturation
            mean = x.mean(dim=(1, 2, 3), keepdim=True)
            x = (x - mean) * (rand(b, 1, 1, 1) + 0.5) + mean  # contrast
        elif op == "translation":
            sh, sw = int(h * 0.125 + 0.5), int(w * 0.125 + 0.5)
            tx = (rand(b) * (2 * sh + 1)).long() - sh
            ty = (rand(b) * (2 * sw + 1)).long() - sw
            gy, gx = torch.meshgrid(torch.arange(h, device=dev), torch.arange(w, device=dev), indexing="ij")
            iy = (gy.unsqueeze(0) + tx.view(b, 1, 1) + 1).clamp(0, h + 1)
            ix = (gx.unsqueeze(0) + ty.view(b, 1, 1) + 1).clamp(0, w + 1)
            padded = F.pad(x, [1, 1, 1, 1])  # zero border
            flat = padded.flatten(2)  # (B, C, (H+2)*(W+2))
            idx = (iy * (w + 2) + ix).flatten(1).unsqueeze(1).expand(-1, x.shape[1], -1)
            x = flat.gather(2, idx).view_as(x)
        elif op == "cutout":
            ch, cw = int(h * 0.5 + 0.5), int(w * 0.5 + 0.5)
            oy = (rand(b) * (h + (1 - ch % 2))).long()
            ox = (rand(b) * (w + (1 - cw % 2))).long()
            gy = torch.arange(h, device=dev).view(1, h, 1)
            gx = torch.arange(w, device=dev).view(1, 1, w)
            y0 = (oy - ch // 2).view(b, 1, 1)
            x0 = (ox - cw // 2).view(b, 1, 1)
            inside = (gy >= y0) & (gy < y0 + ch) & (gx >= x0) & (gx < x0 + cw)
            x = x * (~inside).unsqueeze(1).to(x.dtype)
        else:
            raise ValueError(f"unknown DiffAugment op {op!r}; use color, translation, cutout")
    return x


# --------------------------------------------------------------------------- discriminators


class PatchDiscriminator(nn.Module):
    """A small PatchGAN discriminator (used when no DINO weights are given).

    Strided 4x4 convs with GroupNorm and LeakyReLU; outputs a logit map.

    Args:
        in_channels: Image channels.
        base_channels: Width of the first conv.
        num_layers: Strided conv layers after the first one.
    """

    def __init__(self, in_channels: int = 3, base_channels: int = 64, num_layers: int = 3) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(in_channels, base_channels, 4, 2, 1), nn.LeakyReLU(0.2, True)]
        ch = base_channels
        for i in range(1, num_layers + 1):
            out = base_channels * min(2**i, 8)
            stride = 2 if i < num_layers else 1
            layers += [
                nn.Conv2d(ch, out, 4, stride, 1),
                nn.GroupNorm(min(32, out // 4) or 1, out),
                nn.LeakyReLU(0.2, True),
            ]
            ch = out
        layers.append(nn.Conv2d(ch, 1, 3, 1, 1))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, 3, H, W)`` images in ``[0, 1]`` -> logits ``(B, 1, h', w')``."""
        return self.net(x * 2.0 - 1.0)


class DinoDiscriminator(nn.Module):
    """RAE-style discriminator: a frozen DINO ViT (timm) and trainable per-layer heads on its tokens.

    Args:
        weights: File with the ViT weights (timm or original DINO key names), or a timm Hub id
            (``"timm/vit_small_patch8_224.dino"``) read from the Hub cache; required.
        arch: timm architecture name (RAE: DINO-S/8, ``"vit_small_patch8_224"``).
        layers: Block indices whose token features feed a head (default: 4 evenly spaced).
        img_size: Input side the images are resized to.
        arch_kwargs: Extra timm ``create_model`` arguments (e.g. for tiny test models).

    Raises:
        FileNotFoundError: ``weights`` not available (the message names what to supply).
    """

    def __init__(
        self,
        weights: str,
        arch: str = "vit_small_patch8_224",
        layers: Sequence[int] | None = None,
        img_size: int = 224,
        arch_kwargs: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        import timm

        from uae.layers.encoder import read_state_dict
        from uae.models.dinov2 import resolve_dinov2_weights

        path = resolve_dinov2_weights(str(weights))  # a local file, or a timm Hub id from the cache
        kwargs = dict(arch_kwargs or {})
        kwargs.setdefault("img_size", img_size)
        self.backbone = timm.create_model(
            arch, pretrained=False, num_classes=0, dynamic_img_size=True, **kwargs
        )
        state = read_state_dict(path)
        from timm.models.vision_transformer import checkpoint_filter_fn

        state = checkpoint_filter_fn(state, self.backbone)
        state = {k: v for k, v in state.items() if not k.startswith("head")}
        missing, unexpected = self.backbone.load_state_dict(state, strict=False)
        if missing or unexpected:
            raise ValueError(
                f"DINO discriminator weights {path} do not match {arch}: missing {missing}, unexpected {unexpected}"
            )
        self.backbone.requires_grad_(False)
        self.backbone.eval()
        depth = len(self.backbone.blocks)
        self.layers = (
            list(layers) if layers is not None else sorted({round(i * (depth - 1) / 3) for i in range(4)})
        )
        dim = self.backbone.embed_dim
        self.img_size = img_size
        self.heads = nn.ModuleList(
            nn.Sequential(nn.Conv1d(dim, dim, 1), nn.LeakyReLU(0.2, True), nn.Conv1d(dim, 1, 1))
            for _ in self.layers
        )
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def train(self, mode: bool = True) -> DinoDiscriminator:  # the backbone stays in eval mode
        super().train(mode)
        self.backbone.eval()
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, 3, H, W)`` images in ``[0, 1]`` -> logits ``(B, n_layers * tokens)``."""
        if x.shape[-1] != self.img_size or x.shape[-2] != self.img_size:
            x = F.interpolate(
                x, size=(self.img_size, self.img_size), mode="bilinear", align_corners=False, antialias=True
            )
        x = (x - self.mean) / self.std
        feats = self.backbone.forward_intermediates(
            x, indices=self.layers, output_fmt="NLC", intermediates_only=True
        )
        logits = [head(f.transpose(1, 2)).flatten(1) for head, f in zip(self.heads, feats)]
        return torch.cat(logits, dim=1)


def build_discriminator(
    weights: str | None = None,
    arch: str = "vit_small_patch8_224",
    img_size: int = 224,
    arch_kwargs: dict[str, Any] | None = None,
    patch_channels: int = 64,
    patch_layers: int = 3,
) -> nn.Module:
    """A :class:`DinoDiscriminator` when ``weights`` is given, else a :class:`PatchDiscriminator`."""
    if weights:
        return DinoDiscriminator(weights, arch=arch, img_size=img_size, arch_kwargs=arch_kwargs)
    logger.info("No DINO discriminator weights given: using a PatchGAN discriminator")
    return PatchDiscriminator(base_channels=patch_channels, num_layers=patch_layers)


def cosine_schedule(step: int, total: int, warmup: int, min_ratio: float) -> float:
    """LR multiplier: linear warm-up over ``warmup`` steps, then cosine from 1 to ``min_ratio`` at ``total``."""
    if warmup > 0 and step < warmup:
        return (step + 1) / warmup
    if total <= warmup:
        return 1.0
    t = min(1.0, (step - warmup) / max(1, total - warmup))
    return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * t))


__all__ = [
    "LPIPSLoss",
    "DinoDiscriminator",
    "PatchDiscriminator",
    "adaptive_weight",
    "build_discriminator",
    "cosine_schedule",
    "diff_augment",
    "discriminator_loss",
    "generator_loss",
    "lpips_backbone_path",
    "pixel_loss",
    "semantic_loss",
]
