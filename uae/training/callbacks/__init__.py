"""The Lightning callbacks every stage module attaches (``configure_callbacks``): the EMA step, the image
grids, the random state and epoch counter of exact resumes, atomic checkpoints and the checkpoint on SIGTERM;
and the step-based progress bar of ``uae fit`` (:class:`StepProgressBar`)."""

from uae.training.callbacks.checkpoints import AtomicCheckpoints, SaveOnSigterm
from uae.training.callbacks.ema import EMAUpdate, model_ema
from uae.training.callbacks.exact_resume import EpochBoundaryResume
from uae.training.callbacks.images import ImageGrids, eval_mode, image_grid
from uae.training.callbacks.progress import StepProgressBar
from uae.training.callbacks.rng_state import RNGState, restore_rng_state, rng_state

__all__ = [
    "AtomicCheckpoints",
    "EMAUpdate",
    "EpochBoundaryResume",
    "ImageGrids",
    "RNGState",
    "SaveOnSigterm",
    "StepProgressBar",
    "eval_mode",
    "image_grid",
    "model_ema",
    "restore_rng_state",
    "rng_state",
]
