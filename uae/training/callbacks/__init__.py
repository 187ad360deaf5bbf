"""The Lightning callbacks every stage module attaches (``configure_callbacks``): the EMA step, the image
grids and the random state of exact resumes."""

from uae.training.callbacks.ema import EMAUpdate, model_ema
from uae.training.callbacks.images import ImageGrids, eval_mode, image_grid
from uae.training.callbacks.rng_state import RNGState, restore_rng_state, rng_state

__all__ = [
    "EMAUpdate",
    "ImageGrids",
    "RNGState",
    "eval_mode",
    "image_grid",
    "model_ema",
    "restore_rng_state",
    "rng_state",
]
