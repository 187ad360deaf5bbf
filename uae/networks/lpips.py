"""LPIPS: where its torchvision backbone weights are found, and the perceptual distance as a training loss.

The LPIPS linear heads ship inside torchmetrics; only the torchvision backbone (VGG16, AlexNet or
SqueezeNet 1.1, ImageNet weights) comes from the network, into ``$TORCH_HOME/hub/checkpoints``.
:func:`find_lpips_backbone` is the one place that decides where that file is (or may be downloaded to):
the training loss (:class:`LPIPSLoss`) and the evaluation metric
(:func:`uae.evaluation.metrics.resolve_lpips_backbone`) both ask it. :func:`lpips_network` is the one
place that reads it: with ``torch.load(weights_only=True)``, by uae (torchvision's loader unpickles
anything, so a file planted in the cache would run code), then handed to torchmetrics' network as a
state dict.
"""

from __future__ import annotations

import logging
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


def lpips_backbone_hash(net_type: str = "vgg") -> str:
    """The SHA-256 prefix torchvision's file name carries (``vgg16-397923af.pth`` -> ``"397923af"``)."""
    return LPIPS_BACKBONE_FILES[net_type].rsplit("-", 1)[1].removesuffix(".pth")


def read_lpips_backbone(
    net_type: str = "vgg", weights: str | Path | None = None, *, allow_download: bool = False
) -> dict[str, torch.Tensor]:
    """The torchvision backbone's state dict, read by uae with ``torch.load(weights_only=True)``.

    torchvision's own loader unpickles without ``weights_only`` (code in a planted
    ``$TORCH_HOME/hub/checkpoints/vgg16-397923af.pth`` would run); uae never lets it read the file. A
    download (``allow_download``, when :func:`find_lpips_backbone` allows it) is checked against the
    SHA-256 prefix in the file's name, as torchvision checks it.

    Raises:
        MissingFileError: As :func:`find_lpips_backbone`.
        UnsafeFileError: The file holds pickled code (refused, nothing runs).
        DamagedFileError: Not a state dict, or a download whose hash is not the file name's.
    """
    from uae.files import read_state_dict

    path = find_lpips_backbone(net_type, weights, allow_download=allow_download)
    if not path.is_file():
        _download_backbone(net_type, path)
    return read_state_dict(path, entries=(), what="LPIPS backbone weights")


def _download_backbone(net_type: str, path: Path) -> None:
    from uae.errors import DamagedFileError

    url = LPIPS_BACKBONE_URLS[net_type]
    path.parent.mkdir(parents=True, exist_ok=True)
    logger.info("Downloading the LPIPS %s backbone %s into %s", net_type, url, path.parent)
    try:
        torch.hub.download_url_to_file(
            url, str(path), hash_prefix=lpips_backbone_hash(net_type), progress=False
        )
    except RuntimeError as e:  # torch's message for a hash that does not match
        raise DamagedFileError(f"the download of {url} is not the expected file: {e}") from e
    except OSError as e:  # no network after all, a refused connection, a full disk
        raise MissingFileError(f"cannot download {url} into {path.parent}: {e}") from e


def _feature_slices(backbone: nn.Module) -> dict[str, str]:
    """torchmetrics cuts torchvision's ``features`` into slices that keep the layer indices as child names
    (``slice1.0`` for VGG and AlexNet, ``slices.0.0`` for SqueezeNet): slice prefix -> ``features.<i>.``."""
    out = {}
    for path, module in backbone.named_modules():
        names = [n for n, _ in module.named_children()]
        if path and isinstance(module, nn.Sequential) and names and all(n.isdigit() for n in names):
            out.update({f"{path}.{n}.": f"features.{n}." for n in names})
    return out


def _torchvision_name(key: str, slices: dict[str, str]) -> str:
    prefix = max((p for p in slices if key.startswith(p)), key=len, default=None)
    return key if prefix is None else slices[prefix] + key[len(prefix) :]


def lpips_network(
    net_type: LPIPSNet = "vgg", weights: str | Path | None = None, *, allow_download: bool = False
) -> nn.Module:
    """torchmetrics' LPIPS network with its torchvision backbone read by uae (:func:`read_lpips_backbone`).

    The network is torchmetrics' (its linear heads ship inside torchmetrics); the backbone is built
    without weights and given the state dict uae read, strictly (every backbone tensor from the file's
    ``features.*``, shapes checked, values finite).

    Args:
        net_type: ``"vgg"``, ``"alex"`` or ``"squeeze"``.
        weights: An explicit backbone file; default: the torch hub cache.
        allow_download: Download the backbone when missing and the network may be used.

    Returns:
        The network in eval mode, frozen: ``net(img1, img2, normalize=True)`` gives ``(B, 1, 1, 1)``
        distances of ``[0, 1]`` images.

    Raises:
        MissingFileError, UnsafeFileError, DamagedFileError: As :func:`read_lpips_backbone`.
        UAELoadError: The file's tensors do not fit the backbone (naming the keys).
    """
    from torchmetrics.functional.image.lpips import _NoTrainLpips

    from uae.errors import UAELoadError
    from uae.utils import non_finite_tensors

    state = read_lpips_backbone(net_type, weights, allow_download=allow_download)
    where = weights or lpips_backbone_path(net_type)
    net = _NoTrainLpips(net=net_type, pnet_rand=True)  # torchmetrics' heads, a backbone without weights
    own = net.net.state_dict()
    slices = _feature_slices(net.net)
    wanted = {k: _torchvision_name(k, slices) for k in own}
    missing = sorted(src for src in wanted.values() if src not in state)
    bad = sorted(
        f"{src} {tuple(state[src].shape)} vs {tuple(own[k].shape)}"
        for k, src in wanted.items()
        if src in state and state[src].shape != own[k].shape
    )
    unused = sorted(k for k in state if k.startswith("features.") and k not in set(wanted.values()))
    if missing or bad or unused:
        raise UAELoadError(
            f"{where} is not a torchvision {net_type} backbone: missing {missing[:8]}, shape mismatches "
            f"{bad[:8]}, unexpected {unused[:8]}",
            param="lpips_backbone_weights",
        )
    mapped = {k: state[src] for k, src in wanted.items()}
    if non_finite := non_finite_tensors(mapped):
        from uae.errors import DamagedFileError

        raise DamagedFileError(f"{where}: backbone weights hold NaN or inf values: {non_finite}")
    net.net.load_state_dict(mapped, strict=True)
    net.requires_grad_(False)
    return net.eval()


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
        UnsafeFileError: The backbone file holds pickled code (read with ``weights_only=True``: refused).
    """

    def __init__(self, net_type: LPIPSNet = "vgg", backbone_weights: str | None = None) -> None:
        super().__init__()
        try:
            self.net = lpips_network(net_type, backbone_weights)
        except MissingFileError as e:
            if backbone_weights is not None:
                raise
            raise MissingFileError(
                f"{e}; or pass lpips_backbone_weights (a file), or train without LPIPS (lpips_weight: 0)",
                param="lpips_backbone_weights",
            ) from None

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
    "lpips_backbone_hash",
    "lpips_backbone_path",
    "lpips_network",
    "read_lpips_backbone",
]
