"""The band explorer: encode an image once, decode any number of bands on demand (``uae app``, ``uae bands``).

:class:`BandExplorer` caches each image's encoding (and each band count's decode), so the app's band
slider and filter controls only decode; :func:`open_image` reads an untrusted upload;
:func:`band_picture_files` draws the progressive decodes and band energies of image files.
"""

from __future__ import annotations

import hashlib
import numbers
import os
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from PIL import Image

from uae.data.transforms import resolve_data_config
from uae.errors import InputError, MissingFileError, UAEError
from uae.inference import as_model, check_image_files, load_images, psnr
from uae.paths import output_file

if TYPE_CHECKING:  # pragma: no cover
    from uae.models.uae import UAE

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
        MissingFileError: No such file.
        InputError: Not an image PIL can read, or too large; the message names the file.
    """
    from uae.data.image_io import read_image_with_notes

    path = Path(path)
    if not path.is_file():
        raise MissingFileError(f"image not found: {path.name}")
    nbytes = path.stat().st_size
    if nbytes > max_bytes:
        raise InputError(
            f"{path.name} is too large: {nbytes / 2**20:.1f} MiB (limit {max_bytes / 2**20:.0f} MiB)"
        )
    try:
        return read_image_with_notes(path, max_pixels)
    except UAEError as e:
        e.args = (str(e).replace(str(path), path.name),)  # same type and parameter, the base name only
        raise


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


def _own(t: torch.Tensor) -> torch.Tensor:
    """A float CPU copy with storage of its own: a view of a batch would keep the whole batch cached, and the
    caller's tensor may change after it is cached."""
    return t.detach().float().cpu().clone(memory_format=torch.contiguous_format)


def _ssim(pred: torch.Tensor, target: torch.Tensor) -> float:
    from torchmetrics.functional.image import structural_similarity_index_measure

    return float(
        structural_similarity_index_measure(pred[None].float(), target[None].float(), data_range=1.0)
    )


def analysis_bytes(a: BandAnalysis) -> int:
    """Memory held by one cached analysis: its tensors and every decode stored with it (bytes)."""
    tensors = [a.image, a.target, a.latent, a.bands, a.energy, a.reconstruction]
    tensors += [img for img, _ in a.decodes.values()]
    seen: set[int] = set()
    total = 0
    for t in tensors:  # the full decode is the reconstruction itself: count each storage once
        ptr = t.untyped_storage().data_ptr()
        if ptr not in seen:
            seen.add(ptr)
            total += t.untyped_storage().nbytes()
    return total


class BandExplorer:
    """The computations behind ``uae app``: encode once per image, decode any number of bands on demand.

    Encodings are cached per image content (least recently used first out), and so are the decodes of
    each band count, so moving a slider only decodes (and only once per position). The cache is bounded
    twice: at most ``cache_size`` analyses (an original and each filtered version count separately) and
    at most ``max_cache_bytes`` of tensors, decodes included (the most recent analysis always stays).
    Nothing else keeps an evicted analysis alive. Thread-safe.

    Args:
        model: A :class:`uae.UAE` (put in eval mode here).
        cache_size: Analyses kept in the cache.
        max_cache_bytes: Memory the cached tensors may hold (:func:`analysis_bytes`).
    """

    def __init__(self, model, cache_size: int = 32, max_cache_bytes: int = 256 * 2**20) -> None:
        self.model = model.eval()
        self.cache_size = max(1, int(cache_size))
        self.max_cache_bytes = max(0, int(max_cache_bytes))
        self._cache: OrderedDict[str, BandAnalysis] = OrderedDict()
        self._bytes: dict[str, int] = {}
        self._lock = threading.RLock()

    @property
    def cache_bytes(self) -> int:
        """Memory held by the cached analyses now (bytes)."""
        with self._lock:
            return sum(self._bytes.values())

    def __len__(self) -> int:
        """Analyses in the cache."""
        with self._lock:
            return len(self._cache)

    def _store(self, a: BandAnalysis) -> None:
        """Account for ``a`` (new, or grown by a decode) and evict the least recently used beyond the bounds."""
        with self._lock:
            if a.key not in self._cache or self._cache[a.key] is not a:
                return  # evicted meanwhile (its caller still holds it; the cache does not)
            self._bytes[a.key] = analysis_bytes(a)
            while len(self._cache) > 1 and (
                len(self._cache) > self.cache_size or sum(self._bytes.values()) > self.max_cache_bytes
            ):
                key, _ = self._cache.popitem(last=False)
                self._bytes.pop(key, None)

    @property
    def num_bands(self) -> int:
        """``K``."""
        return self.model.config.num_bands

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def prepare(self, image: Image.Image) -> tuple[torch.Tensor, torch.Tensor]:
        """An RGB PIL image -> ``(input (3, H, W), target (3, H', W'))``, read as the model is evaluated.

        The model's data config (:func:`uae.data.resolve_data_config`): uae's centre crop and bicubic
        resize, or a converted release's own crop and resize.
        """
        from uae.data.transforms import create_transform, resolve_data_config

        res = create_transform(resolve_data_config(self.model))(image.convert("RGB"))
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
        image = _own(image)
        target = image if target is None else _own(target)
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
                raise InputError(
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
            self._store(a)
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
            for key in (a.key, f.key):
                self._cache.pop(key, None)
                self._bytes.pop(key, None)

    @torch.no_grad()
    def decode(self, analysis: BandAnalysis, upto: int) -> tuple[torch.Tensor, float]:
        """Decode from bands ``0..upto`` -> ``(image (3, H', W'), PSNR in dB against the target)`` (cached)."""
        k = self.num_bands
        if isinstance(upto, bool) or not isinstance(upto, numbers.Integral) or not 0 <= upto < k:
            raise InputError(
                f"upto must be in 0..{k - 1} (an integer band index), got {upto!r}", param="upto"
            )
        upto = int(upto)
        with self._lock:
            if upto not in analysis.decodes:
                bands = analysis.bands[None].to(self.device)
                img = self.model.decode_bands(bands, upto=upto).sample[0].float().cpu()
                analysis.decodes[upto] = (img, float(psnr(img[None], analysis.target[None])[0]))
                self._store(analysis)
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
                    img = img.clone()  # its own storage: a view would keep the whole (K, 3, H, W) stack
                    analysis.decodes[k] = (img, float(psnr(img[None], analysis.target[None])[0]))
                self._store(analysis)
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
            raise InputError(f"radius must be in 0..sqrt(2) (1 = Nyquist), got {radius}", param="radius")
        fn = make_filter(kind, float(radius))
        if fn is None:
            return analysis
        return self.analyse(fn(analysis.image), fn(analysis.target))


def bundled_photos() -> list[Path]:
    """The sample photographs offered by ``uae app``: ``$UAE_PHOTO_DIR/*.png`` when set, else the ones that
    ship with the package (:func:`uae.models.bundled.bundled_photos`: installed package data, or the
    source tree's ``tests/assets/``). Empty when there are none."""
    from uae.models.bundled import bundled_photos as shipped

    env = os.environ.get("UAE_PHOTO_DIR")
    if not env:
        return shipped()
    return sorted(p for p in Path(env).glob("*.png") if p.is_file())


@dataclass
class BandRow:
    """One image of a band picture: its path as given, its band energies and progressive PSNRs.

    Attributes:
        source: The input file.
        energy: ``(K,)`` each band's share of the latent energy.
        psnrs: ``(K,)`` PSNR (dB) of the decode from bands ``0..k`` against the input crop.
    """

    source: str
    energy: torch.Tensor
    psnrs: torch.Tensor


def band_picture_files(
    paths: Sequence[str | os.PathLike],
    *,
    model: str | UAE = "uae_demo",
    out: str | os.PathLike = "bands.png",
    device: str | torch.device = "cpu",
) -> tuple[Path, list[BandRow]]:
    """One picture of progressive decodes from bands ``0..k`` and band energies, a row per image file.

    Args:
        paths: Image files.
        model: A :class:`uae.UAE`, or a registered name, model directory or Hub repo id.
        out: The picture (PNG, JPEG, ...); never one of the inputs.
        device: Torch device.

    Returns:
        ``(picture path, one BandRow per image)``.

    Raises:
        MissingFileError: An input does not exist.
        InputError: ``out`` is an input, a folder or under a file; an input is not a readable image.
    """
    from uae.files import atomic_write
    from uae.visualize import band_figure, pil_format

    paths = [str(p) for p in paths]
    check_image_files(paths)
    dest = output_file(out, param="out", inputs=paths)
    net = as_model(model, device)
    images, targets = load_images(paths, data_config=resolve_data_config(net))
    explorer = BandExplorer(net, cache_size=1)
    rows, pictures = [], []
    for path, image, target in zip(paths, images, targets):
        a = explorer.analyse(image, target)
        decodes, psnrs = explorer.progressive(a)
        rows.append(BandRow(path, a.energy, psnrs))
        pictures.append((a.energy, decodes, psnrs, explorer.band0_rgb(a)))
    energy, decodes, psnrs, band0 = (torch.stack(t) for t in zip(*pictures))
    titles = [Path(p).name for p in paths]
    figure = band_figure(images, decodes, energy, titles=titles, psnrs=psnrs, band0_rgb=band0)
    with atomic_write(dest) as tmp:
        figure.save(tmp, format=pil_format(dest))
    return dest, rows
