"""The band split under its earlier names (kept so that existing imports keep working).

The band schemes live in :mod:`uae.layers.bands` (one module each), the spectral helpers in
:mod:`uae.layers.spectral`. ``BandProjector(num_bands, transform, softness, grid_size, scheme, schedule,
zigzag)`` is :func:`uae.layers.bands.build_band_scheme`: it returns the chosen scheme's object.
"""

from __future__ import annotations

from uae.layers.bands import BandScheme, build_band_scheme
from uae.layers.bands.authors_v1 import (
    authors_v1_band_masks,
    authors_v1_radii,
    authors_v1_ring_masks,
    authors_v1_split_iterative,
    check_authors_v1_schedule,
)
from uae.layers.bands.dct_zigzag import ZigzagLowpass, zigzag_keep_mask
from uae.layers.bands.smooth import band_masks, lowpass_masks
from uae.layers.spectral import (
    dct_matrix,
    fft_integer_frequencies,
    lowpass_filter,
    radial_frequency,
    zigzag_order,
    zigzag_rank,
)

#: The band split's earlier name: builds the scheme object (:func:`uae.layers.bands.build_band_scheme`).
BandProjector = build_band_scheme

__all__ = [
    "BandProjector",
    "BandScheme",
    "ZigzagLowpass",
    "authors_v1_band_masks",
    "authors_v1_radii",
    "authors_v1_ring_masks",
    "authors_v1_split_iterative",
    "band_masks",
    "check_authors_v1_schedule",
    "dct_matrix",
    "fft_integer_frequencies",
    "lowpass_filter",
    "lowpass_masks",
    "radial_frequency",
    "zigzag_keep_mask",
    "zigzag_order",
    "zigzag_rank",
]
