"""The band schemes: how a latent grid's spectrum is cut into ``K`` bands, one module each.

* :class:`SmoothBands` (``"smooth"``, :mod:`.smooth`): the paper's split, smooth radial masks and the
  iterative residual split; the default for new models.
* :class:`AuthorsV1Bands` (``"authors_v1"``, :mod:`.authors_v1`): the authors' v1 hard rings.
* :class:`ZigzagLowpass` (``"dct_zigzag"``, :mod:`.dct_zigzag`): the authors' v2 keep-``N`` DCT low-pass.

All share :class:`BandScheme`'s interface; :func:`build_band_scheme` picks one by name, once, when the
model is built.
"""

from __future__ import annotations

from typing import Any

from uae.errors import InputError
from uae.layers.bands.authors_v1 import AuthorsV1Bands, check_authors_v1_schedule
from uae.layers.bands.base import BandScheme
from uae.layers.bands.dct_zigzag import ZigzagLowpass
from uae.layers.bands.smooth import SmoothBands

#: Scheme name (``UAEConfig.band_scheme``) -> class.
SCHEMES: dict[str, type[BandScheme]] = {
    SmoothBands.scheme: SmoothBands,
    AuthorsV1Bands.scheme: AuthorsV1Bands,
    ZigzagLowpass.scheme: ZigzagLowpass,
}


def build_band_scheme(
    num_bands: int,
    transform: str = "fft",
    softness: float = 0.5,
    grid_size: int = 16,
    scheme: str = "smooth",
    schedule: tuple[float, ...] | None = None,
    zigzag: dict[str, Any] | None = None,
) -> BandScheme:
    """The band scheme named ``scheme``, from the model-level settings (the fields of ``UAEConfig``).

    Args:
        num_bands: ``K`` (>= 1).
        transform: ``"fft"`` or ``"dct"``.
        softness: ``smooth`` only: raised-cosine transition width as a fraction of a band's width.
        grid_size: Default latent grid side (its masks are precomputed).
        scheme: ``"smooth"``, ``"authors_v1"`` (needs ``transform="fft"``) or ``"dct_zigzag"`` (needs
            ``num_bands=2`` and ``transform="dct"``).
        schedule: ``authors_v1`` only: the release's ``v_patch_nums`` radius schedule (``K`` values);
            ``None`` gives evenly spaced radii.
        zigzag: ``dct_zigzag`` only: ``keep_count``, ``count_min``, ``count_max``, ``apply_prob`` of
            :class:`ZigzagLowpass`.

    Returns:
        The scheme, an ``nn.Module`` without weights.

    Raises:
        InputError: An unknown scheme, or settings the scheme does not take.
    """
    if num_bands < 1:
        raise InputError(f"num_bands must be >= 1, got {num_bands}", param="num_bands")
    if scheme not in SCHEMES:
        raise InputError(f"band_scheme must be one of {tuple(SCHEMES)}, got {scheme!r}", param="band_scheme")
    if zigzag and scheme != ZigzagLowpass.scheme:
        raise InputError(
            f"zigzag options are only used by band scheme 'dct_zigzag', not {scheme!r}", param="zigzag"
        )
    if schedule is not None and scheme != AuthorsV1Bands.scheme:
        raise InputError(
            f"a band schedule is only used by scheme='authors_v1', not {scheme!r}", param="schedule"
        )
    if scheme == ZigzagLowpass.scheme:
        if num_bands != 2 or transform != "dct":
            raise InputError(
                f"band scheme 'dct_zigzag' needs num_bands=2 and transform='dct', got {num_bands}, {transform!r}",
                param="num_bands",
            )
        return ZigzagLowpass(**(zigzag or {}), grid_size=grid_size)
    if scheme == AuthorsV1Bands.scheme:
        check_authors_v1_schedule(schedule, num_bands, transform)
        return AuthorsV1Bands(num_bands, schedule=schedule, grid_size=grid_size)
    return SmoothBands(num_bands, transform=transform, softness=softness, grid_size=grid_size)


__all__ = ["SCHEMES", "AuthorsV1Bands", "BandScheme", "SmoothBands", "ZigzagLowpass", "build_band_scheme"]
