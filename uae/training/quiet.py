"""Keep Lightning's advisory lines that do not apply to uae out of the training output.

Dropped (they are advice, not warnings, and uae has already made the choice they talk about):

* the "💡 Tip" lines advertising litlogger / litmodels;
* "TPU available: ..." / "HPU available: ..." / "IPU available: ..." device lines, and "GPU available:
  False, used: False" on machines without a GPU (the GPU line stays where there is one);
* "Seed set to N" (the seed is in the run's saved ``config.yaml``);
* "The number of training batches (N) is smaller than the logging interval" (short runs, small folders);
* "Found N module(s) in eval mode at the start of training" (frozen encoder, teacher and EMA copy are
  in eval mode by design);
* torch's "'pin_memory' argument is set as true but no accelerator is found";
* "Using ModelCheckpoint with manual optimization ... no pre-optimization state was saved" (stage 3's
  checkpoints are meant to hold the state after the step);
* torch's FutureWarning "`isinstance(treespec, LeafSpec)` is deprecated", raised inside Lightning 2.6;
* "The 'train_dataloader' does not have many workers" -- only when uae chose the number of workers
  from the hardware (``data.num_workers`` not set; :class:`uae.data.UAEDataModule` drops it itself, see
  :data:`uae.data.datamodule.FEW_WORKERS_ADVICE`); a user's explicit ``num_workers: 0`` keeps it.

Everything else (real warnings, errors, the GPU line, progress) is untouched. :func:`quiet_lightning`
is idempotent; ``uae fit`` / ``uae validate`` and the stage modules' ``setup`` call it.
"""

from __future__ import annotations

import logging
import re
import warnings

#: Messages of Lightning's rank-zero *info* logger that are dropped.
INFO_PATTERNS = (
    r"^💡 Tip:",
    r"^(TPU|HPU|IPU) available:",
    r"^GPU available: False, used: False",
    r"(^|\] )Seed set to \d+$",
)
#: ``warnings`` message regexes (from the start of the message) that are ignored.
WARNING_PATTERNS = (
    r"The number of training batches \(\d+\) is smaller than the logging interval",
    r"Found \d+ module\(s\) in eval mode at the start of training",
    r".*'pin_memory' argument is set as true but no accelerator is found",
    # Stage 3 steps its optimizers by hand; its checkpoints are meant to hold the post-step state.
    r"Using ModelCheckpoint with manual optimization and every_n_train_steps",
    # Lightning 2.6 on recent torch uses torch's deprecated pytree LeafSpec (Lightning's to fix, not ours).
    r"`isinstance\(treespec, LeafSpec\)` is deprecated",
)

LOGGERS = (
    "lightning.pytorch.utilities.rank_zero",
    "lightning.fabric.utilities.rank_zero",
    "lightning.fabric.utilities.seed",
)


class _DropAdvice(logging.Filter):
    """Drops log records whose message matches :data:`INFO_PATTERNS`."""

    _rx = re.compile("|".join(INFO_PATTERNS))

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            return not self._rx.search(record.getMessage())
        except Exception:  # a malformed record is not ours to judge
            return True


_FILTER = _DropAdvice()


def quiet_lightning() -> None:
    """Install the filters (idempotent)."""
    for name in LOGGERS:
        log = logging.getLogger(name)
        if _FILTER not in log.filters:
            log.addFilter(_FILTER)
    for pattern in WARNING_PATTERNS:
        if not any(f[0] == "ignore" and getattr(f[1], "pattern", None) == pattern for f in warnings.filters):
            warnings.filterwarnings("ignore", message=pattern)


__all__ = ["quiet_lightning"]
