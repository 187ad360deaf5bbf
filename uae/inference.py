"""Inference helpers and the ``uae reconstruct`` / ``uae bands`` commands.

Images are read with PIL, converted to RGB, centre-cropped to a square and resized (bicubic,
antialiased) to the model's input size; this pre-processing is explicit here, the model itself never
resizes. Reconstructions come out at the model's output size.
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import os
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from PIL import Image

from uae.cliargs import is_one_of, output_dir, output_file
from uae.factory import load_model
from uae.utils import check_device

logger = logging.getLogger(__name__)


def load_image(path: str | os.PathLike, size: int, out_size: int | None = None) -> dict[str, torch.Tensor]:
    """Read one image as the model's input (centre crop, bicubic resize).

    Args:
        path: Image file (any format PIL reads).
        size: Model input side.
        out_size: Also return the same crop at this side as ``"target"`` (defaults to ``size``).

    Returns:
        ``{"image": (3, size, size), "target": (3, out_size, out_size)}`` floats in ``[0, 1]``.

    Raises:
        FileNotFoundError: The file does not exist.
        ValueError: PIL cannot read it, or it exceeds the pixel budget (naming the file; see
            :mod:`uae.data.image_io`: 16-bit and float images are scaled to 8 bits, never clipped).
    """
    from uae.data.datasets import image_transform
    from uae.data.image_io import read_image

    im = read_image(path)
    out_size = out_size or size
    res = image_transform(size, train=False, out_size=out_size)(im)
    if isinstance(res, dict):
        return res
    return {"image": res, "target": res}


def load_images(
    paths: Sequence[str | os.PathLike], size: int, out_size: int | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Several images as a batch: ``(images (N, 3, size, size), targets (N, 3, out, out))``.

    All files are checked before any work is done, so a bad file fails fast with its name.
    """
    items = [load_image(p, size, out_size) for p in paths]
    return torch.stack([i["image"] for i in items]), torch.stack([i["target"] for i in items])


def psnr(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-image PSNR in dB of ``(N, 3, H, W)`` tensors in ``[0, 1]`` -> ``(N,)``."""
    mse = (a.float() - b.float()).pow(2).flatten(1).mean(1).clamp_min(1e-12)
    return 10.0 * torch.log10(1.0 / mse)


@torch.no_grad()
def reconstruct(model, images: torch.Tensor, batch_size: int = 16) -> torch.Tensor:
    """Reconstruct ``(N, 3, H, W)`` images in batches -> ``(N, 3, H', W')`` in ``[0, 1]``."""
    device = next(model.parameters()).device
    outs = [
        model(images[i : i + batch_size].to(device)).sample.cpu() for i in range(0, len(images), batch_size)
    ]
    return torch.cat(outs)


def bicubic_round_trip(images: torch.Tensor, side: int) -> torch.Tensor:
    """Bicubic down-sampling to ``side x side`` (antialiased) and back up to the input size, clamped to ``[0, 1]``."""
    h, w = images.shape[-2:]
    small = torch.nn.functional.interpolate(
        images.float(), size=(side, side), mode="bicubic", antialias=True, align_corners=False
    )
    return torch.nn.functional.interpolate(small, size=(h, w), mode="bicubic", align_corners=False).clamp(
        0, 1
    )


@torch.no_grad()
def compare_with_bicubic(model, images: torch.Tensor, batch_size: int = 16) -> dict[str, dict[str, float]]:
    """PSNR / SSIM of the model's reconstructions and of two bicubic baselines of the same "latent size".

    * ``"bicubic_grid"``: down to the latent grid side ``h`` (``3*h*w`` values: as many pixels as
      latent positions);
    * ``"bicubic_equal_values"``: down to the side ``s = floor(sqrt(C*h*w / 3))`` whose RGB image holds
      about as many values as the latent ``C*h*w`` (floats vs 8-bit pixels are not counted).

    Args:
        model: A :class:`uae.UAE` in eval mode whose output size equals its input size.
        images: ``(N, 3, H, W)`` in ``[0, 1]`` at the model's input size.
        batch_size: Reconstruction batch size.

    Returns:
        ``{name: {"psnr": dB, "ssim": value, "side": s}}`` averaged over the images (``side`` only for
        the baselines), plus ``"uae"``.

    Raises:
        ValueError: Output and input sizes differ (the baselines would not be comparable).
    """
    from torchmetrics.functional import structural_similarity_index_measure as ssim

    c = model.config
    if c.output_size != images.shape[-1]:
        raise ValueError(
            f"compare_with_bicubic needs output size == input size, got {c.output_size} vs {images.shape[-1]}"
        )
    images = images.float()
    recon = reconstruct(model, images, batch_size)
    sides = {
        "bicubic_grid": c.grid_size,
        "bicubic_equal_values": int((c.latent_dim * c.grid_size**2 / 3) ** 0.5),
    }
    out: dict[str, dict[str, float]] = {}
    for name, pred, side in [("uae", recon, None)] + [
        (k, bicubic_round_trip(images, s), s) for k, s in sides.items()
    ]:
        row = {"psnr": float(psnr(pred, images).mean()), "ssim": float(ssim(pred, images, data_range=1.0))}
        if side is not None:
            row["side"] = side
        out[name] = row
    return out


def _check_paths(paths: Sequence[str]) -> None:
    for p in paths:
        if not Path(p).is_file():
            raise FileNotFoundError(f"image not found: {p}")


def _free_name(out: Path, stem: str, used: set[str], inputs: Sequence[str]) -> str:
    """``stem``, or ``stem_2``, ``stem_3``...: a ``.png`` name in ``out`` not used yet and not an input file."""
    name, n = stem, 1
    while name in used or is_one_of(out / f"{name}.png", inputs):
        n += 1
        name = f"{stem}_{n}"
    used.add(name)
    return name


def run_reconstruct(args: argparse.Namespace) -> int:
    """``uae reconstruct`` with parsed options (:mod:`uae.commands.reconstruct`): reconstructions + band picture."""
    from uae.visualize import save_band_figure, save_image

    _check_paths(args.images)
    out = output_dir(args.out)
    check_device(args.device)
    model = load_model(args.model, device=args.device)
    c = model.config
    images, targets = load_images(args.images, c.img_size, c.output_size)
    recon = reconstruct(model, images, args.batch_size)
    scores = psnr(recon, targets)
    out.mkdir(parents=True, exist_ok=True)
    used: set[str] = set()
    for path, img, score in zip(args.images, recon, scores):
        name = _free_name(out, Path(path).stem, used, args.images)
        dest = save_image(img, out / f"{name}.png")
        print(f"{path} -> {dest}  (PSNR {float(score):.2f} dB vs the {c.output_size}px input crop)")
    if not args.no_bands:
        rows = args.max_band_rows
        titles = [Path(p).name for p in args.images[:rows]]
        name = _free_name(out, "bands", used, args.images)
        dest = save_band_figure(model, images[:rows].to(args.device), out / f"{name}.png", titles=titles)
        print(f"band picture -> {dest}")
    print(
        f"mean PSNR {float(scores.mean()):.2f} dB over {len(scores)} image(s) with {c.name} (K={c.num_bands})"
    )
    return 0


def run_bands(args: argparse.Namespace) -> int:
    """``uae bands`` with parsed options (:mod:`uae.commands.bands`): progressive decodes and band energies."""
    from uae.files import atomic_write
    from uae.visualize import band_figure, pil_format

    _check_paths(args.images)
    dest = output_file(args.out, "--out", inputs=args.images)
    check_device(args.device)
    model = load_model(args.model, device=args.device)
    c = model.config
    images, targets = load_images(args.images, c.img_size, c.output_size)
    explorer = BandExplorer(model, cache_size=1)
    rows = []
    for path, image, target in zip(args.images, images, targets):
        a = explorer.analyse(image, target)
        decodes, psnrs = explorer.progressive(a)
        rows.append((a.energy, decodes, psnrs, explorer.band0_rgb(a)))
        print(
            f"{path}: band energy "
            + " ".join(f"{float(v):.3f}" for v in a.energy)
            + " | PSNR from bands 0..k: "
            + " ".join(f"{float(p):.2f}" for p in psnrs)
            + " dB"
        )
    energy, decodes, psnrs, band0 = (torch.stack(t) for t in zip(*rows))
    titles = [Path(p).name for p in args.images]
    figure = band_figure(images, decodes, energy, titles=titles, psnrs=psnrs, band0_rgb=band0)
    with atomic_write(dest) as tmp:
        figure.save(tmp, format=pil_format(dest))
    print(f"band picture -> {dest}")
    return 0


# ---------------------------------------------------------------------- the band explorer (uae app, uae bands)
#: Largest upload the explorer decodes, in pixels (width x height); larger files are refused with a message.
MAX_IMAGE_PIXELS = 40_000_000
#: Largest upload in bytes.
MAX_IMAGE_BYTES = 50 * 1024 * 1024


def open_image(
    path: str | os.PathLike, max_pixels: int = MAX_IMAGE_PIXELS, max_bytes: int = MAX_IMAGE_BYTES
) -> tuple[Image.Image, list[str]]:
    """Open an untrusted image file as 8-bit RGB, with notes on what was changed to get there.

    The package's one image reader (:func:`uae.data.read_image_with_notes`) does the work: size limits
    are checked from the header before any pixel is decoded, animated files give their first frame,
    16-bit and float images are scaled to 8 bits (not clipped), transparency is flattened onto white.
    Messages name the file by its base name only (an upload's server-side path means nothing to a user).

    Args:
        path: Image file.
        max_pixels: Refuse images with more pixels than this.
        max_bytes: Refuse files larger than this.

    Returns:
        ``(image, notes)``: an RGB PIL image and human-readable notes (possibly empty).

    Raises:
        FileNotFoundError: No such file.
        ValueError: Not an image PIL can read, or too large; the message names the file.
    """
    from uae.data.image_io import read_image_with_notes

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"image not found: {path.name}")
    nbytes = path.stat().st_size
    if nbytes > max_bytes:
        raise ValueError(
            f"{path.name} is too large: {nbytes / 2**20:.1f} MiB (limit {max_bytes / 2**20:.0f} MiB)"
        )
    try:
        return read_image_with_notes(path, max_pixels)
    except ValueError as e:
        raise ValueError(str(e).replace(str(path), path.name)) from e


@dataclass
class BandAnalysis:
    """Everything the band explorer shows for one image (cached per image content).

    Attributes:
        key: Content hash of the input (and target).
        image: ``(3, H, W)`` model input in ``[0, 1]``.
        target: ``(3, H', W')`` the same crop at the output size (the PSNR / SSIM reference).
        latent: ``(C, h, w)`` encoder latent.
        bands: ``(K, C, h, w)`` band split of the latent (sums to ``latent``).
        energy: ``(K,)`` each band's share of the latent energy.
        reconstruction: ``(3, H', W')`` decode of all bands.
        psnr: PSNR (dB) of the reconstruction against ``target``.
        ssim: SSIM of the reconstruction against ``target``.
    """

    key: str
    image: torch.Tensor
    target: torch.Tensor
    latent: torch.Tensor
    bands: torch.Tensor
    energy: torch.Tensor
    reconstruction: torch.Tensor
    psnr: float
    ssim: float
    decodes: dict[int, tuple[torch.Tensor, float]] = field(default_factory=dict, repr=False)


def _ssim(pred: torch.Tensor, target: torch.Tensor) -> float:
    from torchmetrics.functional.image import structural_similarity_index_measure

    return float(
        structural_similarity_index_measure(pred[None].float(), target[None].float(), data_range=1.0)
    )


class BandExplorer:
    """The computations behind ``uae app``: encode once per image, decode any number of bands on demand.

    Encodings are cached per image content (least recently used first out), and so are the decodes of
    each band count, so moving a slider only decodes (and only once per position). Thread-safe.

    Args:
        model: A :class:`uae.UAE` (put in eval mode here).
        cache_size: Images kept in the cache (original and filtered versions count separately).
    """

    def __init__(self, model, cache_size: int = 32) -> None:
        self.model = model.eval()
        self.cache_size = max(1, int(cache_size))
        self._cache: OrderedDict[str, BandAnalysis] = OrderedDict()
        self._lock = threading.RLock()

    @property
    def num_bands(self) -> int:
        """``K``."""
        return self.model.config.num_bands

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def prepare(self, image: Image.Image) -> tuple[torch.Tensor, torch.Tensor]:
        """An RGB PIL image -> ``(input (3, H, W), target (3, H', W'))``: centre crop, bicubic resize."""
        from uae.data.datasets import image_transform

        c = self.model.config
        res = image_transform(c.img_size, train=False, out_size=c.output_size)(image.convert("RGB"))
        if isinstance(res, dict):
            return res["image"], res["target"]
        return res, res

    @torch.no_grad()
    def analyse(self, image: torch.Tensor | Image.Image, target: torch.Tensor | None = None) -> BandAnalysis:
        """Encode, split and reconstruct one image (cached by content).

        Args:
            image: ``(3, H, W)`` input at the model's input size in ``[0, 1]``, or a PIL image
                (cropped and resized with :meth:`prepare`).
            target: ``(3, H', W')`` reference for PSNR / SSIM (default: the input, which must then be
                at the output size too).

        Returns:
            The :class:`BandAnalysis`.
        """
        if isinstance(image, Image.Image):
            image, target = self.prepare(image)
        image = image.detach().float().cpu()
        target = image if target is None else target.detach().float().cpu()
        key = hashlib.sha1(
            image.numpy().tobytes() + target.numpy().tobytes() + str(tuple(target.shape)).encode()
        ).hexdigest()
        with self._lock:
            if key in self._cache:
                self._cache.move_to_end(key)
                return self._cache[key]
            x = image[None].to(self.device)
            enc = self.model.encode(x)
            recon = self.model.decode_bands(enc.bands).sample[0].float().cpu()
            if recon.shape != target.shape:
                raise ValueError(
                    f"reconstruction {tuple(recon.shape)} and target {tuple(target.shape)} differ in size"
                )
            a = BandAnalysis(
                key=key,
                image=image,
                target=target,
                latent=enc.latent[0].float().cpu(),
                bands=enc.bands[0].float().cpu(),
                energy=self.model.band_projector.band_energy(enc.latent.float())[0].cpu(),
                reconstruction=recon,
                psnr=float(psnr(recon[None], target[None])[0]),
                ssim=_ssim(recon, target),
            )
            a.decodes[self.num_bands - 1] = (recon, a.psnr)
            self._cache[key] = a
            while len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)
            return a

    def get(self, key: str) -> BandAnalysis | None:
        """The cached analysis with this :attr:`BandAnalysis.key`, or ``None`` (never seen, or evicted)."""
        with self._lock:
            a = self._cache.get(key)
            if a is not None:
                self._cache.move_to_end(key)
            return a

    def warmup(self) -> None:
        """Run every code path once on a gray image (first calls import and allocate; later ones are fast)."""
        from uae.visualize import band_energy_chart, radial_spectrum_chart

        c = self.model.config
        gray = Image.new("RGB", (c.img_size, c.img_size), (128, 128, 128))
        a = self.analyse(gray)
        self.progressive(a)
        self.band0_rgb(a)
        f = self.filtered(a, "lfc", 0.5)
        band_energy_chart({"a": a.energy, "b": f.energy})
        radial_spectrum_chart({"a": a.latent}, num_bands=self.num_bands)
        with self._lock:
            self._cache.pop(a.key, None)
            self._cache.pop(f.key, None)

    @torch.no_grad()
    def decode(self, analysis: BandAnalysis, upto: int) -> tuple[torch.Tensor, float]:
        """Decode from bands ``0..upto`` -> ``(image (3, H', W'), PSNR in dB against the target)`` (cached)."""
        k = self.num_bands
        if not 0 <= int(upto) < k:
            raise ValueError(f"upto must be in 0..{k - 1}, got {upto}")
        upto = int(upto)
        with self._lock:
            if upto not in analysis.decodes:
                bands = analysis.bands[None].to(self.device)
                img = self.model.decode_bands(bands, upto=upto).sample[0].float().cpu()
                analysis.decodes[upto] = (img, float(psnr(img[None], analysis.target[None])[0]))
            return analysis.decodes[upto]

    def progressive(self, analysis: BandAnalysis) -> tuple[torch.Tensor, torch.Tensor]:
        """All progressive decodes: ``(decodes (K, 3, H', W'), psnrs (K,))``; ``decodes[k]`` uses bands ``0..k``."""
        from uae.visualize import progressive_decodes

        with self._lock:
            missing = [k for k in range(self.num_bands) if k not in analysis.decodes]
            if missing:
                bands = analysis.bands[None].to(self.device)
                decodes, _ = progressive_decodes(self.model, bands=bands, upto=missing)
                for k, img in zip(missing, decodes[0].float().cpu()):
                    analysis.decodes[k] = (img, float(psnr(img[None], analysis.target[None])[0]))
            pairs = [analysis.decodes[k] for k in range(self.num_bands)]
        return torch.stack([p[0] for p in pairs]), torch.tensor([p[1] for p in pairs])

    def band0_rgb(self, analysis: BandAnalysis) -> torch.Tensor:
        """Band 0's features as a ``(3, h, w)`` picture (:func:`uae.visualize.pca_rgb`)."""
        from uae.visualize import pca_rgb

        return pca_rgb(analysis.bands[0])

    def filtered(self, analysis: BandAnalysis, kind: str, radius: float) -> BandAnalysis:
        """The analysis of the input after a low-pass (``"lfc"``) or high-pass (``"hfc"``) filter.

        The filter (:mod:`uae.evaluation.filtered`: ideal radial mask at ``radius`` in units of the
        Nyquist frequency; the high-pass image on mid-gray) is applied to the input and to the target,
        and PSNR / SSIM are measured against the filtered target. ``"original"`` returns ``analysis``.
        """
        from uae.evaluation.filtered import make_filter

        if not 0.0 <= float(radius) <= 2**0.5 + 1e-6:
            raise ValueError(f"radius must be in 0..sqrt(2) (1 = Nyquist), got {radius}")
        fn = make_filter(kind, float(radius))
        if fn is None:
            return analysis
        return self.analyse(fn(analysis.image), fn(analysis.target))


def bundled_photos() -> list[Path]:
    """The sample photographs shipped with the source tree (``tests/assets/*.png``; empty if absent)."""
    root = Path(os.environ.get("UAE_PHOTO_DIR", Path(__file__).resolve().parents[1] / "tests" / "assets"))
    return sorted(p for p in root.glob("*.png") if p.is_file())
