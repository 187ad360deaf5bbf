"""Band pictures: progressive decodes from bands ``0..k``, each band's share of the latent energy, and the
latent's radial power spectrum (the charts of the app, ``uae bands`` and ``uae spectrum``).

Everything renders with matplotlib's Agg canvas (no display, no global pyplot state) or PIL.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from PIL import Image

from uae.errors import InputError
from uae.files import atomic_write
from uae.layers.spectral import radial_power, relative_power

if TYPE_CHECKING:
    from uae.models.uae import UAE


def to_pil(image: torch.Tensor) -> Image.Image:
    """A ``(3, H, W)`` float tensor in ``[0, 1]`` -> RGB PIL image (values clamped)."""
    if image.ndim != 3 or image.shape[0] != 3:
        raise InputError(f"expected an image of shape (3, H, W), got {tuple(image.shape)}", param="image")
    arr = (image.detach().float().clamp(0, 1).permute(1, 2, 0).cpu().numpy() * 255.0).round().astype(np.uint8)
    return Image.fromarray(arr)


def save_image(image: torch.Tensor | Image.Image, path: str | os.PathLike) -> Path:
    """Save a ``(3, H, W)`` tensor in ``[0, 1]`` (or a PIL image) as an image file (format from the suffix).

    The file is written atomically: a reader never sees half of it.
    """
    path = Path(path)
    with atomic_write(path) as tmp:
        (to_pil(image) if isinstance(image, torch.Tensor) else image).save(tmp, format=pil_format(path))
    return path


def pil_format(path: Path) -> str | None:
    """Pillow's format name for a file suffix (the temp file's name must not decide it)."""
    Image.init()
    return Image.EXTENSION.get(path.suffix.lower())


@torch.no_grad()
def progressive_decodes(
    model: UAE,
    x: torch.Tensor | None = None,
    *,
    bands: torch.Tensor | None = None,
    upto: Iterable[int] | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Decode from bands ``0..k`` for every ``k`` (:meth:`uae.UAE.decode_bands`), and the band energy shares.

    Args:
        model: A :class:`uae.UAE` (put in eval mode by the caller).
        x: ``(B, 3, H, W)`` images in ``[0, 1]``, encoded here; or
        bands: ``(B, K, C, h, w)`` bands already encoded (``model.encode(x).bands``).
        upto: The decodes to make, each the last band kept; default ``0..K-1``.

    Returns:
        ``(decodes, energy)``: ``decodes (B, N, 3, H', W')`` where ``decodes[:, i]`` is
        ``model.decode_bands(bands, upto=upto[i]).sample`` (by default ``N = K`` and ``decodes[:, -1]`` is
        the full reconstruction), and, when ``x`` is given, ``energy (B, K)``, each band's share of the
        latent's spectral energy (rows sum to 1); ``None`` when ``bands`` are given.

    Raises:
        InputError: Neither or both of ``x`` and ``bands`` given, or an ``upto`` out of range.
    """
    if (x is None) == (bands is None):
        raise InputError("progressive_decodes needs either x (images) or bands, not both", param="x")
    energy = None
    if x is not None:
        enc = model.encode(x)
        bands = enc.bands
        energy = model.band_projector.band_energy(enc.latent)
    steps = range(model.config.num_bands) if upto is None else upto
    return torch.stack([model.decode_bands(bands, upto=k).sample for k in steps], dim=1), energy


def _check_band_shapes(inputs: torch.Tensor, decodes: torch.Tensor, energy: torch.Tensor) -> tuple[int, int]:
    """``(B, K)`` of ``decodes (B, K, 3, H, W)``, checked against ``inputs (B, ...)`` and ``energy (B, K)``."""
    b, k = decodes.shape[:2]
    if inputs.shape[0] != b or energy.shape != (b, k):
        raise InputError(
            f"inconsistent shapes: inputs {tuple(inputs.shape)}, decodes {tuple(decodes.shape)}, "
            f"energy {tuple(energy.shape)}",
            param="decodes",
        )
    return b, k


def band_figure(
    inputs: torch.Tensor,
    decodes: torch.Tensor,
    energy: torch.Tensor,
    titles: Sequence[str] | None = None,
    dpi: int = 100,
    psnrs: torch.Tensor | None = None,
    band0_rgb: torch.Tensor | None = None,
) -> Image.Image:
    """One picture: per image a row with the input, the decodes from bands ``0..k`` and a bar chart of band energy.

    Args:
        inputs: ``(B, 3, H, W)`` inputs in ``[0, 1]`` (shown at the decodes' size).
        decodes: ``(B, K, 3, H', W')`` from :func:`progressive_decodes`.
        energy: ``(B, K)`` energy shares.
        titles: Optional row labels (e.g. file names).
        dpi: Resolution of the rendering.
        psnrs: Optional ``(B, K)`` PSNR (dB) of each decode, written under it.
        band0_rgb: Optional ``(B, 3, h, w)`` band-0 features as colours (:func:`pca_rgb`), shown after the input.

    Returns:
        The picture as an RGB PIL image.
    """
    b, k = _check_band_shapes(inputs, decodes, energy)
    size = decodes.shape[-2:]
    if inputs.shape[-2:] != size:
        inputs = torch.nn.functional.interpolate(
            inputs.float(), size=size, mode="bicubic", align_corners=False
        )
    if psnrs is not None and tuple(psnrs.shape) != (b, k):
        raise InputError(f"psnrs must have shape ({b}, {k}), got {tuple(psnrs.shape)}", param="psnrs")
    if band0_rgb is not None and (band0_rgb.ndim != 4 or band0_rgb.shape[:2] != (b, 3)):
        raise InputError(
            f"band0_rgb must have shape ({b}, 3, h, w), got {tuple(band0_rgb.shape)}", param="band0_rgb"
        )
    extra = 1 if band0_rgb is not None else 0
    cols = k + 2 + extra
    fig = new_figure(1.8 * cols, 1.9 * b + 0.3 + (0.2 * b if psnrs is not None else 0), dpi)
    axes = fig.subplots(b, cols, squeeze=False)
    for i in range(b):
        row = [inputs[i]] + ([band0_rgb[i]] if extra else []) + [decodes[i, j] for j in range(k)]
        labels = ["input"] + (["band 0 features\n(PCA -> RGB)"] if extra else [])
        labels += [band_label(j, k) for j in range(k)]
        for j, (img, label) in enumerate(zip(row, labels)):
            ax = axes[i, j]
            ax.imshow(
                img.detach().float().clamp(0, 1).permute(1, 2, 0).cpu().numpy(), interpolation="nearest"
            )
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                _title(ax, label, fontsize=8)
            if j == 0 and titles is not None:
                ax.set_ylabel(str(titles[i]), fontsize=7)
            d = j - 1 - extra
            if psnrs is not None and d >= 0:
                ax.set_xlabel(f"PSNR {float(psnrs[i, d]):.2f} dB", fontsize=7)
        ax = axes[i, -1]
        draw_band_energy(ax, {"": energy[i]}, fontsize=7, compact=True)
        if i == 0:
            _title(ax, "energy per band", fontsize=8)
    fig.tight_layout()
    return figure_to_pil(fig)


def _font(size: int):
    """PIL's default font at ``size`` px (FreeType, Pillow >= 10.1), else its fixed bitmap font."""
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError, ImportError):  # old Pillow or no FreeType
        return ImageFont.load_default()


def band_strip(
    inputs: torch.Tensor,
    decodes: torch.Tensor,
    energy: torch.Tensor,
    titles: Sequence[str] | None = None,
    cell: int = 128,
) -> Image.Image:
    """The band picture drawn with PIL alone (``uae reconstruct``'s ``bands.png``; no matplotlib).

    Per image a row: the input, the decodes from bands ``0..k`` (each enlarged to ``cell`` pixels, kept
    sharp) and each band's share of the latent energy as labelled bars. :func:`band_figure` draws the
    same content as a matplotlib chart (``uae bands``, the app), which costs about half a second of
    start-up for the import alone.

    Args:
        inputs: ``(B, 3, H, W)`` inputs in ``[0, 1]``.
        decodes: ``(B, K, 3, H', W')`` from :func:`progressive_decodes`.
        energy: ``(B, K)`` energy shares.
        titles: Optional row labels (e.g. file names).
        cell: Side of each picture in pixels.

    Returns:
        The picture as an RGB PIL image.
    """
    from PIL import ImageDraw

    b, k = _check_band_shapes(inputs, decodes, energy)
    if titles is not None and len(titles) != b:
        raise InputError(f"titles must name the {b} rows, got {len(titles)}", param="titles")
    font = _font(12)
    gap, head, label = 6, 18, 16 if titles is not None else 0
    cols = k + 2
    width = gap + cols * (cell + gap)
    height = head + b * (label + cell + gap) + gap
    canvas = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(canvas)
    headers = ["input"] + [band_label(j, k) for j in range(k)] + ["energy per band"]
    for j, text in enumerate(headers):
        draw.text((gap + j * (cell + gap) + cell // 2, head // 2), text, fill="black", font=font, anchor="mm")
    for i in range(b):
        top = head + i * (label + cell + gap)
        if titles is not None:
            draw.text((gap, top + label // 2), str(titles[i]), fill="black", font=font, anchor="lm")
        y = top + label
        for j, img in enumerate([inputs[i]] + [decodes[i, j] for j in range(k)]):
            canvas.paste(enlarge(img, cell), (gap + j * (cell + gap), y))
        x0 = gap + (k + 1) * (cell + gap)
        bar_h = max(4, min(22, (cell - 4) // k - 4))
        box = max(8, cell - 64)  # "0 [bar] 46.2%"
        for j, share in enumerate(float(v) for v in energy[i]):
            by = y + 2 + j * (bar_h + 4)
            bx = x0 + 14
            fill = bx + round((box - 1) * min(max(share, 0.0), 1.0))
            draw.text((x0, by + bar_h // 2), str(j), fill="black", font=font, anchor="lm")
            draw.rectangle([bx, by, bx + box - 1, by + bar_h], outline=(200, 200, 200))
            draw.rectangle([bx, by, fill, by + bar_h], fill=(31, 119, 180))
            draw.text(
                (bx + box + 4, by + bar_h // 2), f"{100 * share:.1f}%", fill="black", font=font, anchor="lm"
            )
    return canvas


def save_band_figure(
    model,
    x: torch.Tensor,
    path: str | os.PathLike,
    titles: Sequence[str] | None = None,
    chart: bool = True,
) -> Path:
    """Compute :func:`progressive_decodes` for ``x`` and save :func:`band_figure` as a PNG.

    Args:
        model: A :class:`uae.UAE` in eval mode.
        x: ``(B, 3, H, W)`` images in ``[0, 1]`` at the model's input size.
        path: Output file.
        titles: Optional row labels.
        chart: The matplotlib chart (:func:`band_figure`); ``False``: the same content drawn with PIL
            alone (:func:`band_strip`, no matplotlib import).

    Returns:
        The written path.
    """
    decodes, energy = progressive_decodes(model, x)
    draw = band_figure if chart else band_strip
    return save_image(draw(x, decodes, energy, titles=titles), path)


# ---------------------------------------------------------------------- charts shared by the CLI and the app
#: Label of the band-energy axis: each band's fraction of the latent's spectral energy (sums to 1 over bands).
ENERGY_AXIS_LABEL = "share of latent energy\n(fraction; bands sum to 1)"
#: Label of the band axis.
BAND_AXIS_LABEL = "band (0 = lowest spatial frequencies)"


def band_label(upto: int, num_bands: int) -> str:
    """Name of the decode from bands ``0..upto`` of ``num_bands``: ``"band 0"``, ``"bands 0..1"``, ``"all 3 bands"``."""
    if upto == num_bands - 1:
        return f"all {num_bands} bands" if num_bands > 1 else "reconstruction"
    return f"bands 0..{upto}" if upto else "band 0"


def _title(ax, text: str, fontsize: float) -> None:
    """A title above an axis at a fixed place (``set_title`` re-measures every tick label on each draw)."""
    ax.text(0.5, 1.02, text, transform=ax.transAxes, ha="center", va="bottom", fontsize=fontsize)


def figure_to_pil(fig) -> Image.Image:
    """Render a matplotlib figure made by :func:`new_figure` to an RGB PIL image."""
    fig.canvas.draw()
    rgba = np.asarray(fig.canvas.buffer_rgba())
    return Image.fromarray(rgba[..., :3].copy())


def new_figure(width: float, height: float, dpi: int):
    """A matplotlib ``Figure`` (``width x height`` inches) on its own Agg canvas: no pyplot, no global state."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=dpi)
    FigureCanvasAgg(fig)
    return fig


def draw_band_energy(
    ax, series: dict[str, torch.Tensor | Sequence[float]], fontsize: float = 9, compact: bool = False
) -> None:
    """Grouped bar chart of band-energy shares on a matplotlib axis, with labelled axes.

    Args:
        ax: A matplotlib ``Axes``.
        series: ``{label: (K,) shares}``; one bar colour per entry, a legend when an entry has a label.
        fontsize: Size of the axis labels (ticks are one smaller).
        compact: Short axis labels (for small panels).
    """
    values = [
        np.asarray(torch.as_tensor(v, dtype=torch.float32).detach().cpu(), dtype=float)
        for v in series.values()
    ]
    if not values:
        raise InputError("no band energies to draw: series is empty", param="series")
    k = len(values[0])
    if any(len(v) != k for v in values):
        raise InputError(
            f"all series need the same number of bands, got {[len(v) for v in values]}", param="series"
        )
    width = 0.8 / len(values)
    colors = ["tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple"]
    for j, (label, v) in enumerate(zip(series, values)):
        x = np.arange(k) + j * width - 0.4 + width / 2
        ax.bar(x, v, width=width, color=colors[j % len(colors)], label=label or None)
    ax.set_ylim(0, 1)
    ax.set_xticks(range(k))
    ax.set_xlabel("band (0 = lowest freq.)" if compact else BAND_AXIS_LABEL, fontsize=fontsize)
    ax.set_ylabel("energy share (fraction)" if compact else ENERGY_AXIS_LABEL, fontsize=fontsize)
    ax.tick_params(labelsize=max(fontsize - 1, 5))
    if any(series):
        ax.legend(fontsize=max(fontsize - 1, 5))


def band_energy_chart(
    series: dict[str, torch.Tensor | Sequence[float]],
    title: str = "energy per band of the latent",
    dpi: int = 100,
    annotate: bool = True,
) -> Image.Image:
    """A labelled bar chart of band-energy shares (one group of bars per band, one colour per series).

    Args:
        series: ``{label: (K,) shares}`` (e.g. ``{"original": e0, "low-pass r=0.25": e1}``).
        title: Chart title.
        dpi: Resolution.
        annotate: Write each bar's percentage above it.

    Returns:
        RGB PIL image.
    """
    fig = new_figure(5.0, 3.4, dpi)
    ax = fig.subplots()
    draw_band_energy(ax, series)
    if annotate:
        for patch in ax.patches:
            ax.annotate(
                f"{100 * patch.get_height():.1f}%",
                (patch.get_x() + patch.get_width() / 2, patch.get_height()),
                ha="center",
                va="bottom",
                fontsize=7,
            )
    _title(ax, title, fontsize=10)
    # fixed margins: tight_layout costs a draw
    fig.subplots_adjust(left=0.16, right=0.97, bottom=0.15, top=0.9)
    return figure_to_pil(fig)


#: Label of the radial-frequency axis of a spectrum chart.
FREQUENCY_AXIS_LABEL = "radial frequency (1 = Nyquist of the latent grid)"
#: Label of the power axis of a spectrum chart: mean power per coefficient relative to white noise.
POWER_AXIS_LABEL = "mean power per coefficient\n(relative; white noise = 1)"


def draw_radial_spectrum(
    ax,
    series: dict[str, tuple[torch.Tensor | Sequence[float], torch.Tensor | Sequence[float]]],
    num_bands: int | None = None,
    fontsize: float = 9,
) -> None:
    """Radial power spectra on a matplotlib axis (log scale), with labelled axes and a legend.

    Args:
        ax: A matplotlib ``Axes``.
        series: ``{label: (rho (R,), relative power (R,))}``: bin frequencies (1 = Nyquist) and mean
            power per coefficient relative to the grid's mean (white noise = 1), as
            :func:`uae.layers.spectral.relative_power` gives them.
        num_bands: Shade the nominal bands ``[k/K, (k+1)/K)`` (the last one reaches sqrt(2)); ``None``: no shading.
        fontsize: Size of the axis labels (ticks and legend are one smaller).
    """
    top = 0.0
    for label, (rho, power) in series.items():
        rho = np.asarray(torch.as_tensor(rho, dtype=torch.float32).detach().cpu(), dtype=float)
        power = np.asarray(torch.as_tensor(power, dtype=torch.float32).detach().cpu(), dtype=float)
        ax.semilogy(rho, np.maximum(power, 1e-12), marker="o", ms=4, label=label)
        top = max(top, float(rho.max()))
    ax.axhline(1.0, color="gray", lw=0.8, ls="--", label="white noise")
    if num_bands:
        shades = ["#dbe9f6", "#fde0c5", "#d5f0d5", "#f6d5d5", "#e6dcf2"]
        for k in range(num_bands):
            lo, hi = k / num_bands, (k + 1) / num_bands if k < num_bands - 1 else max(top, 2**0.5)
            ax.axvspan(lo, hi, color=shades[k % len(shades)], alpha=0.6, lw=0, zorder=0)
            ax.text(
                (lo + hi) / 2,
                0.98,
                f"band {k}",
                transform=ax.get_xaxis_transform(),
                ha="center",
                va="top",
                fontsize=max(fontsize - 2, 5),
            )
    ax.set_xlabel(FREQUENCY_AXIS_LABEL, fontsize=fontsize)
    ax.set_ylabel(POWER_AXIS_LABEL, fontsize=fontsize)
    ax.tick_params(labelsize=max(fontsize - 1, 5))
    ax.legend(fontsize=max(fontsize - 1, 5), loc="lower left")


def radial_spectrum_chart(
    latents: dict[str, torch.Tensor],
    num_bands: int | None = None,
    title: str = "radial power spectrum of the latent",
    dpi: int = 100,
) -> Image.Image:
    """Radial power spectrum of latent grids (log scale), with the nominal band cut-offs shaded.

    The power ``|Z|^2`` of the orthonormal 2-D FFT, summed over channels, is averaged per coefficient in
    radial bins and expressed relative to the grid's mean power per coefficient (white noise = 1), as
    in ``uae spectrum``.

    Args:
        latents: ``{label: (C, h, w) or (B, C, h, w)}`` latent grids (batches are averaged).
        num_bands: Shade the nominal bands ``[k/K, (k+1)/K)`` (the last one reaches sqrt(2)); ``None``: no shading.
        title: Chart title.
        dpi: Resolution.

    Returns:
        RGB PIL image.
    """
    series = {}
    for label, z in latents.items():
        bin_power, count, rho = radial_power((z[None] if z.ndim == 3 else z).detach().float().cpu())
        series[label] = (rho, relative_power(bin_power, count).mean(0))
    fig = new_figure(5.0, 3.4, dpi)
    ax = fig.subplots()
    draw_radial_spectrum(ax, series, num_bands=num_bands)
    _title(ax, title, fontsize=10)
    # fixed margins: tight_layout costs a draw
    fig.subplots_adjust(left=0.16, right=0.97, bottom=0.15, top=0.9)
    return figure_to_pil(fig)


def pca_rgb(features: torch.Tensor) -> torch.Tensor:
    """Project a feature grid onto its first three principal components, shown as RGB.

    Each component is scaled to ``[0, 1]`` with its 1st-99th percentile range over the grid's
    positions; component signs are fixed so that the largest loading is positive (the colours do not
    flip between runs).

    Args:
        features: ``(C, h, w)`` (e.g. band 0 of the latent) or ``(B, C, h, w)`` (one PCA per image).

    Returns:
        ``(3, h, w)`` (or ``(B, 3, h, w)``) floats in ``[0, 1]``.
    """
    if features.ndim == 4:
        return torch.stack([pca_rgb(f) for f in features])
    if features.ndim != 3:
        raise InputError(
            f"expected features of shape (C, h, w), got {tuple(features.shape)}", param="features"
        )
    c, h, w = features.shape
    x = features.detach().float().cpu().reshape(c, h * w).T  # (N, C)
    x = x - x.mean(0, keepdim=True)
    _, _, vh = torch.linalg.svd(x.double(), full_matrices=False)
    comps = vh[:3].float()  # (<=3, C)
    idx = comps.abs().argmax(1)
    comps = comps * torch.sign(comps[torch.arange(len(comps)), idx])[:, None]
    proj = x @ comps.T  # (N, <=3)
    if proj.shape[1] < 3:
        proj = torch.cat([proj, proj.new_zeros(len(proj), 3 - proj.shape[1])], 1)
    lo = torch.quantile(proj, 0.01, dim=0)
    hi = torch.quantile(proj, 0.99, dim=0)
    rgb = ((proj - lo) / (hi - lo).clamp_min(1e-8)).clamp(0, 1)
    return rgb.T.reshape(3, h, w)


def enlarge(image: torch.Tensor | Image.Image, side: int, smooth: bool = False) -> Image.Image:
    """A ``(3, H, W)`` tensor or PIL image as a PIL image whose longer side is ``side`` (pixels kept sharp)."""
    im = to_pil(image) if isinstance(image, torch.Tensor) else image
    scale = side / max(im.size)
    size = (max(1, round(im.width * scale)), max(1, round(im.height * scale)))
    return im.resize(size, Image.BICUBIC if smooth else Image.NEAREST)
