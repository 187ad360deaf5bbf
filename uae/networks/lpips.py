"""LPIPS: where its torchvision backbone weights are found, and the perceptual distance as a training loss.

The LPIPS linear heads ship inside torchmetrics; only the torchvision backbone (VGG16, AlexNet or
SqueezeNet 1.1, ImageNet weights) comes from the network, into ``$TORCH_HOME/hub/checkpoints``.
:func:`find_lpips_backbone` is the one place that decides where that file is (or may be downloaded to):
the training loss (:class:`LPIPSLoss`) and the evaluation metric
(:func:`uae.evaluation.metrics.resolve_lpips_backbone`) both ask it.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

import torch
from torch import nn

from uae import online
from uae.errors import InputError, MissingFileError

logger = logging.getLogger(__name__)

#: torchvision backbone checkpoints LPIPS needs, by torchmetrics ``net_type`` (the file names carry the hash).
LPIPS_BACKBONE_FILES = {
    "vgg": "vgg16-397923af.pth",
    "alex": "alexnet-owt-7be5be79.pth",
    "squeeze": "squeezenet1_1-b8a52dc0.pth",
}
#: Where torchvision downloads them from.
LPIPS_BACKBONE_URLS = {
    net: f"https://download.pytorch.org/models/{f}" for net, f in LPIPS_BACKBONE_FILES.items()
}

LPIPSNet = Literal["vgg", "alex", "squeeze"]


def lpips_backbone_path(net_type: str = "vgg") -> Path:
    """Where torchvision looks for the LPIPS backbone: ``$TORCH_HOME/hub/checkpoints/<file>``.

    Raises:
        InputError: ``net_type`` is not ``"vgg"``, ``"alex"`` or ``"squeeze"`` (names ``lpips_net``, the
            parameter of the training modules and of the metrics).
    """
    if net_type not in LPIPS_BACKBONE_FILES:
        raise InputError(
            f"lpips_net must be one of {sorted(LPIPS_BACKBONE_FILES)}, got {net_type!r}", param="lpips_net"
        )
    return Path(torch.hub.get_dir()) / "checkpoints" / LPIPS_BACKBONE_FILES[net_type]


def find_lpips_backbone(
    net_type: str = "vgg", weights: str | Path | None = None, *, allow_download: bool = False
) -> Path:
    """The backbone checkpoint LPIPS loads: the one resolver of the package.

    Args:
        net_type: ``"vgg"``, ``"alex"`` or ``"squeeze"``.
        weights: An explicit checkpoint file (used instead of the torch hub cache); must exist.
        allow_download: When the cached file is missing, return its cache path anyway if a download may be
            tried (:func:`uae.online.may_download`): torchvision then downloads it there on first use.

    Returns:
        ``weights``, or the cached file ``$TORCH_HOME/hub/checkpoints/<file>`` (present, or about to be
        downloaded when ``allow_download``).

    Raises:
        InputError: Unknown ``net_type``.
        MissingFileError: ``weights`` does not exist (``param="lpips_backbone_weights"``), or the cached file
            is missing and cannot be downloaded; the message names the file, the folder and the URL.
    """
    expected = lpips_backbone_path(net_type)
    if weights is not None:
        path = Path(weights).expanduser()
        if not path.is_file():
            raise MissingFileError(
                f"LPIPS backbone weights not found: {path}", param="lpips_backbone_weights"
            )
        return path
    if expected.is_file():
        return expected
    url = LPIPS_BACKBONE_URLS[net_type]
    if allow_download and online.may_download(url):
        return expected
    raise MissingFileError(
        f"LPIPS needs the torchvision {net_type} backbone weights {expected.name}, not found at {expected}: "
        f"download {url} into {expected.parent} (or set TORCH_HOME)"
    )


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

    The backbone weights must be present (:func:`find_lpips_backbone`, no download): the check happens
    at construction, so a training run fails before its first step, never mid-run. The backbone is
    frozen and kept in eval mode.

    Args:
        net_type: ``"vgg"`` (the authors' choice), ``"alex"`` or ``"squeeze"``.
        backbone_weights: Path of the torchvision backbone checkpoint; default: the torch hub cache.

    Raises:
        MissingFileError: The backbone file is missing (the message names the file, where to put it,
            the URL, and how to train without LPIPS), or ``backbone_weights`` does not exist.
    """

    def __init__(self, net_type: LPIPSNet = "vgg", backbone_weights: str | None = None) -> None:
        super().__init__()
        from torchmetrics.image.lpip import LearnedPerceptualImagePatchSimilarity

        try:
            path = find_lpips_backbone(net_type, backbone_weights)
        except MissingFileError as e:
            if backbone_weights is not None:
                raise
            raise MissingFileError(
                f"{e}; or pass lpips_backbone_weights (a file), or train without LPIPS (lpips_weight: 0)",
                param="lpips_backbone_weights",
            ) from None
        expected = lpips_backbone_path(net_type)
        ctx = _hub_dir_with(path, expected.name) if path != expected else contextlib.nullcontext()
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


__all__ = [
    "LPIPS_BACKBONE_FILES",
    "LPIPS_BACKBONE_URLS",
    "LPIPSLoss",
    "find_lpips_backbone",
    "lpips_backbone_path",
]
