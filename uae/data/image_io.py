"""Reading image files as 8-bit RGB: the one loader used by the datasets, ``uae.load_image`` and the CLIs.

Pillow's ``convert("RGB")`` clips high-bit-depth pixels instead of scaling them (a 16-bit grey PNG,
Pillow mode ``I;16``, turns all white). :func:`read_image` scales them to the 8-bit range first:

* ``I;16``, ``I;16L``, ``I;16B``, ``I;16N`` (16-bit grey): ``round(v / 257)`` (65535 -> 255);
* ``I`` (32-bit integer; Pillow also uses it for some 16-bit files): values within ``[0, 65535]`` are
  taken as 16-bit data (``/ 257``), other non-negative values as 32-bit (``/ (2**31 - 1)``),
  negative values as signed 32-bit (offset by ``2**31``);
* ``F`` (32-bit float): values within ``[0, 1]`` are taken as unit range, else within ``[0, 255]`` as
  8-bit, else within ``[0, 65535]`` as 16-bit; NaN and negative values become 0, larger values 255.

16-bit RGB(A) PNGs are already reduced to 8 bits by Pillow itself (mode ``RGB`` / ``RGBA``).

**Orientation.** The EXIF ``Orientation`` tag (values 2-8: mirrored and/or rotated by 90/180/270
degrees, as cameras and phones write it) is applied (:func:`PIL.ImageOps.exif_transpose`), so the
pixels come out upright as every photo viewer shows them.

**Draft decoding.** With ``draft_size`` (the shorter side the caller will resize to), a JPEG whose
both sides are at least :data:`DRAFT_GAP` times that is decoded at a reduced scale (1/2, 1/4 or 1/8,
the JPEG decoder's DCT scaling, :meth:`PIL.Image.Image.draft`), the largest that keeps both sides at
least ``DRAFT_GAP * draft_size``: the later antialiased resize still shrinks the image by 2x or more,
the rule Pillow uses for its own ``reducing_gap=2.0`` and ``thumbnail``. Decode + resize get 1.3-9x
faster. The output of a resize after it is not bit-identical to the one after a full decode: the crop
is placed on the reduced pixel grid (a shift of at most half a reduced pixel, i.e. a quarter of an
output pixel) and the DCT scaling is a box-like filter. Measured on photographs
(``benchmarks/decode_draft.py``, ``benchmarks/RESULTS.md``): at 224/256 px max abs 0.031 on [0, 1],
within Pillow's own ``reducing_gap=2.0`` tolerance (0.071); at 64 px up to 0.20 at sharp edges (mean
<= 0.011), the size of moving the full-decode crop by one source pixel (up to 0.15), which the centre
crop's own rounding does anyway.

Images larger than a pixel budget are refused from the header, before any pixel is decoded: a
13000x13000 PNG would cost about 1.5 GB per loader worker. The budget is :data:`MAX_PIXELS`
(overridden by the environment variable ``UAE_MAX_IMAGE_PIXELS``; ``0`` disables it) or the
``max_pixels`` argument.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from uae.errors import DamagedFileError, InputError, MissingFileError

#: The EXIF tag number of ``Orientation``.
_ORIENTATION = 0x0112

#: A JPEG is draft-decoded only down to this many times the requested side (see the module docstring).
DRAFT_GAP: int = 2

#: Default pixel budget (width * height) of one image: 2**26 = 67,108,864 (e.g. 8192 x 8192).
MAX_PIXELS: int = 2**26

#: Exceptions that mean "this file is not a readable image" (besides :class:`ImageTooLargeError`).
READ_ERRORS: tuple[type[BaseException], ...] = (
    UnidentifiedImageError,
    OSError,
    SyntaxError,
    ValueError,
    Image.DecompressionBombError,
    MemoryError,
)


class ImageTooLargeError(InputError):
    """An image exceeds the pixel budget (checked from the header, before decoding)."""


def default_max_pixels() -> int | None:
    """The pixel budget: ``UAE_MAX_IMAGE_PIXELS`` when set (``0``: no budget), else :data:`MAX_PIXELS`.

    Raises:
        InputError: The environment variable is not a non-negative integer.
    """
    env = os.environ.get("UAE_MAX_IMAGE_PIXELS")
    if env is None or not env.strip():
        return MAX_PIXELS
    try:
        value = int(env)
        if value < 0:
            raise ValueError
    except ValueError:
        raise InputError(f"UAE_MAX_IMAGE_PIXELS must be a non-negative integer, got {env!r}") from None
    return value or None


def _scale_to_uint8(im: Image.Image) -> Image.Image:
    """A single-channel high-bit-depth image (modes ``I;16*``, ``I``, ``F``) as mode ``L``."""
    a = np.asarray(im)
    if im.mode.startswith("I;16"):
        out = np.rint(a.astype(np.float64) / 257.0)
    elif im.mode == "I":
        a = a.astype(np.float64)
        lo, hi = (float(a.min()), float(a.max())) if a.size else (0.0, 0.0)
        if lo >= 0 and hi <= 65535:
            out = np.rint(a / 257.0)
        elif lo >= 0:
            out = np.rint(a * (255.0 / (2**31 - 1)))
        else:
            out = np.rint((a + 2**31) * (255.0 / (2**32 - 1)))
    else:  # "F"
        a = np.nan_to_num(a.astype(np.float64), nan=0.0, posinf=np.inf, neginf=0.0)
        finite = a[np.isfinite(a)]
        hi = float(finite.max()) if finite.size else 0.0
        scale = 255.0 if hi <= 1.0 else 1.0 if hi <= 255.0 else 1.0 / 257.0
        out = np.rint(a * scale)
    return Image.fromarray(np.clip(out, 0, 255).astype(np.uint8), mode="L")


def to_rgb(im: Image.Image) -> Image.Image:
    """Any Pillow image as 8-bit RGB: 16/32-bit integer and float pixels are scaled (never clipped) and
    transparent areas are flattened onto white (not onto whatever colour the hidden pixels have)."""
    if im.mode in ("I", "F") or im.mode.startswith("I;16"):
        im = _scale_to_uint8(im)
    if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
        rgba = im.convert("RGBA")
        return Image.alpha_composite(Image.new("RGBA", rgba.size, (255, 255, 255, 255)), rgba).convert("RGB")
    return im if im.mode == "RGB" else im.convert("RGB")


def conversion_notes(im: Image.Image) -> list[str]:
    """What :func:`to_rgb` changes about a just-opened image, as sentences for a person (may be empty)."""
    notes = []
    frames = getattr(im, "n_frames", 1)
    if frames > 1:
        notes.append(f"animated {im.format or 'image'} with {frames} frames: the first frame is used")
    orientation = _exif_orientation(im)
    if orientation not in (None, 1):
        notes.append(f"EXIF orientation {orientation}: turned upright")
    # Pillow < 10.3 opens a 16-bit grey PNG as I (a PNG has no 32-bit mode)
    if im.mode.startswith("I;16") or (im.mode == "I" and im.format == "PNG"):
        notes.append("16-bit image: scaled to 8 bits (not clipped)")
    elif im.mode in ("I", "F"):
        kind = "floating-point" if im.mode == "F" else "32-bit integer"
        notes.append(f"{kind} image: values scaled to 8 bits")
    if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
        alpha = im.convert("RGBA").getextrema()[3]
        if alpha[0] < 255:
            notes.append("transparent areas shown on white")
    return notes


def read_image(
    path: str | os.PathLike, max_pixels: int | None | str = "default", *, draft_size: int | None = None
) -> Image.Image:
    """Open, check the size of, fully decode, orient upright and convert one image file to 8-bit RGB.

    Args:
        path: Image file (any format Pillow reads).
        max_pixels: Pixel budget (width * height); ``"default"``: :func:`default_max_pixels`;
            ``None`` or ``0``: no budget.
        draft_size: The shorter side the caller needs (the target of its resize); a JPEG at least
            :data:`DRAFT_GAP` times larger on both sides is decoded at a reduced scale (see the module
            docstring). ``None``: always decode at full size.

    Returns:
        A loaded ``RGB`` image, upright (EXIF orientation applied).

    Raises:
        MissingFileError: The file does not exist.
        ImageTooLargeError: The header's size exceeds the budget (nothing decoded).
        DamagedFileError: Pillow cannot read it (the message names the file and the cause).
    """
    return read_image_with_notes(path, max_pixels, draft_size=draft_size)[0]


def draft_request(size: tuple[int, int], draft_size: int | None) -> tuple[int, int] | None:
    """The ``size`` argument of :meth:`PIL.Image.Image.draft` for an image of ``size`` (``(w, h)``), or
    ``None`` when no reduction keeps both sides at least ``DRAFT_GAP * draft_size``.

    A square request: the reduction is the same whichever way the EXIF orientation turns the image.
    """
    if not draft_size or draft_size <= 0:
        return None
    need = DRAFT_GAP * int(draft_size)
    if min(size) < 2 * need:  # not even a 1/2 reduction fits
        return None
    return need, need


def _exif_orientation(im: Image.Image) -> int | None:
    """The EXIF ``Orientation`` tag (1-8) of an opened image; ``None`` when absent or unreadable."""
    try:
        value = im.getexif().get(_ORIENTATION)
    except Exception:  # noqa: BLE001 - a broken EXIF block: keep the pixels as stored
        return None
    return value if isinstance(value, int) and 1 <= value <= 8 else None


def _orient(im: Image.Image) -> Image.Image:
    """``im`` turned upright by its EXIF ``Orientation`` tag (``im`` itself when it has none)."""
    if _exif_orientation(im) in (None, 1):
        return im
    return ImageOps.exif_transpose(im)


def read_image_with_notes(
    path: str | os.PathLike, max_pixels: int | None | str = "default", *, draft_size: int | None = None
) -> tuple[Image.Image, list[str]]:
    """:func:`read_image`, also returning :func:`conversion_notes` (for pages that tell the user)."""
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(f"image not found: {path}")
    budget = default_max_pixels() if max_pixels == "default" else (max_pixels or None)
    try:
        with warnings.catch_warnings():
            # Our own budget replaces Pillow's advisory warning; its hard limit still raises.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                w, h = im.size
                if budget is not None and w * h > budget:
                    raise ImageTooLargeError(
                        f"image {path} is {w}x{h} = {w * h:,} pixels, over the budget of {budget:,} "
                        "(set UAE_MAX_IMAGE_PIXELS or max_pixels to raise it)",
                        param="max_pixels",
                    )
                notes = conversion_notes(im)
                im.seek(0)
                request = draft_request(im.size, draft_size) if im.format == "JPEG" else None
                if request is not None:
                    im.draft(None, request)
                im.load()
                return to_rgb(_orient(im)), notes
    except ImageTooLargeError:
        raise
    except Image.DecompressionBombError as e:
        raise ImageTooLargeError(f"image {path} is too large for Pillow: {e}") from e
    except UnidentifiedImageError as e:
        raise DamagedFileError(
            f"cannot read image {path}: not an image (no format Pillow knows recognised it)"
        ) from e
    except READ_ERRORS as e:
        first = str(e).splitlines()[0] if str(e) else ""
        raise DamagedFileError(f"cannot read image {path}: {type(e).__name__}: {first}") from e
