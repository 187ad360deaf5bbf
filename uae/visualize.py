"""Band pictures: progressive decodes from bands ``0..k`` and each band's share of the latent energy.

Everything renders with matplotlib's Agg canvas (no display, no global pyplot state) or PIL.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image


def to_pil(image: torch.Tensor) -> Image.Image:
    """A ``(3, H, W)`` float tensor in ``[0, 1]`` -> RGB PIL image (values clamped)."""
    if image.ndim != 3 or image.shape[0] != 3:
        raise ValueError(f"expected an image of shape (3, H, W), got {tuple(image.shape)}")
    arr = (image.detach().float().clamp(0, 1).permute(1, 2, 0).cpu().numpy() * 255.0).round().astype(np.uint8)
    return Image.fromarray(arr)


def save_image(image: torch.Tensor, path: str | os.PathLike) -> Path:
    """Save a ``(3, H, W)`` tensor in ``[0, 1]`` as an image file (format from the suffix)."""
    from uae.files import atomic_write

    path = Path(path)
    with atomic_write(path) as tmp:
        to_pil(image).save(tmp, format=pil_format(path))
    return path


def pil_format(path: Path) -> str | None:
    """Pillow's format name for a file suffix (the temp file's name must not decide it)."""
    Image.init()
    return Image.EXTENSION.get(path.suffix.lower())


@torch.no_grad()
def progressive_decodes(model, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Decode from bands ``0..k`` for every ``k``, and the band energy shares.

    Args:
        model: A :class:`uae.UAE` (put in eval mode by the caller).
        x: ``(B, 3, H, W)`` images in ``[0, 1]``.

    Returns:
        ``(decodes, energy)``: ``decodes (B, K, 3, H', W')`` where ``decodes[:, k]`` is
        ``model.decode_bands(bands, upto=k).sample`` (``k = K-1`` is the full reconstruction), and
        ``energy (B, K)``, each band's share of the latent's spectral energy (rows sum to 1).
    """
    enc = model.encode(x)
    k = model.config.num_bands
    decodes = torch.stack([model.decode_bands(enc.bands, upto=i).sample for i in range(k)], dim=1)
    energy = model.band_projector.band_energy(enc.latent)
    return decodes, energy


def band_figure(
    inputs: torch.Tensor,
    decodes: torch.Tensor,
    energy: torch.Tensor,
    titles: Sequence[str] | None = None,
    dpi: int = 100,
) -> Image.Image:
    """One picture: per image a row with the input, the decodes from bands ``0..k`` and a bar chart of band energy.

    Args:
        inputs: ``(B, 3, H, W)`` inputs in ``[0, 1]`` (shown at the decodes' size).
        decodes: ``(B, K, 3, H', W')`` from :func:`progressive_decodes`.
        energy: ``(B, K)`` energy shares.
        titles: Optional row labels (e.g. file names).
        dpi: Resolution of the rendering.

    Returns:
        The picture as an RGB PIL image.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    b, k = decodes.shape[:2]
    if inputs.shape[0] != b or energy.shape != (b, k):
        raise ValueError(
            f"inconsistent shapes: inputs {tuple(inputs.shape)}, decodes {tuple(decodes.shape)}, energy {tuple(energy.shape)}"
        )
    size = decodes.shape[-2:]
    if inputs.shape[-2:] != size:
        inputs = torch.nn.functional.interpolate(
            inputs.float(), size=size, mode="bicubic", align_corners=False
        )
    cols = k + 2
    fig = Figure(figsize=(1.8 * cols, 1.9 * b + 0.3), dpi=dpi)
    FigureCanvasAgg(fig)
    axes = fig.subplots(b, cols, squeeze=False)
    for i in range(b):
        row = [inputs[i]] + [decodes[i, j] for j in range(k)]
        labels = ["input"] + [f"bands 0..{j}" if j else "band 0" for j in range(k)]
        labels[-1] = f"all {k} bands" if k > 1 else "reconstruction"
        for j, (img, label) in enumerate(zip(row, labels)):
            ax = axes[i, j]
            ax.imshow(img.detach().float().clamp(0, 1).permute(1, 2, 0).cpu().numpy())
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_title(label, fontsize=8)
            if j == 0 and titles is not None:
                ax.set_ylabel(str(titles[i]), fontsize=7)
        ax = axes[i, -1]
        share = energy[i].detach().float().cpu().numpy()
        ax.bar(range(k), share, color="tab:blue")
        ax.set_ylim(0, 1)
        ax.set_xticks(range(k))
        ax.tick_params(labelsize=6)
        if i == 0:
            ax.set_title("energy share", fontsize=8)
    fig.tight_layout()
    fig.canvas.draw()
    rgba = np.asarray(fig.canvas.buffer_rgba())
    return Image.fromarray(rgba[..., :3].copy())


def save_band_figure(
    model, x: torch.Tensor, path: str | os.PathLike, titles: Sequence[str] | None = None
) -> Path:
    """Compute :func:`progressive_decodes` for ``x`` and save :func:`band_figure` as a PNG.

    Args:
        model: A :class:`uae.UAE` in eval mode.
        x: ``(B, 3, H, W)`` images in ``[0, 1]`` at the model's input size.
        path: Output file.
        titles: Optional row labels.

    Returns:
        The written path.
    """
    from uae.files import atomic_write

    decodes, energy = progressive_decodes(model, x)
    path = Path(path)
    with atomic_write(path) as tmp:
        band_figure(x, decodes, energy, titles=titles).save(tmp, format=pil_format(path))
    return path
