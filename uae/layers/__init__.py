"""The paper's parts: unified encoder, band schemes (the band projector), band modulator, pixel decoder."""

from uae.layers.band_modulator import BandModulator
from uae.layers.bands import AuthorsV1Bands, BandScheme, SmoothBands, ZigzagLowpass, build_band_scheme
from uae.layers.bands.smooth import band_masks
from uae.layers.decoder import PixelDecoder
from uae.layers.encoder import UnifiedEncoder
from uae.layers.spectral import SpectralTransform, lowpass_filter, radial_frequency

__all__ = [
    "AuthorsV1Bands",
    "BandModulator",
    "BandScheme",
    "PixelDecoder",
    "SmoothBands",
    "SpectralTransform",
    "UnifiedEncoder",
    "ZigzagLowpass",
    "band_masks",
    "build_band_scheme",
    "lowpass_filter",
    "radial_frequency",
]
