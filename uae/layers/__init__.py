"""The paper's parts: unified encoder, band projector, band modulator, pixel decoder."""

from uae.layers.band_modulator import BandModulator
from uae.layers.band_projector import BandProjector, band_masks, lowpass_filter, radial_frequency
from uae.layers.decoder import PixelDecoder
from uae.layers.encoder import UnifiedEncoder

__all__ = [
    "BandModulator",
    "BandProjector",
    "PixelDecoder",
    "UnifiedEncoder",
    "band_masks",
    "lowpass_filter",
    "radial_frequency",
]
