"""What the ``uae`` commands share when printing: tables, the notes on unavailable metrics and skipped
images, and the metric notes' options named as flags."""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

#: Library wordings in the reconstruction metrics' notes -> the evaluation commands' flags.
METRIC_NOTE_FLAGS = {
    "inception_weights=PATH": "--inception-weights PATH",
    "lpips=False": "--no-lpips",
    "fid=False": "--no-fid",
}


def format_table(rows: Sequence[Sequence[Any]], header: Sequence[str]) -> str:
    """A plain-text table with aligned columns (floats with 4 decimals, ``None`` as ``-``)."""

    def fmt(v: Any) -> str:
        if isinstance(v, float):
            return f"{v:.4f}"
        return "-" if v is None else str(v)

    cells = [[fmt(v) for v in r] for r in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) if cells else len(h) for i, h in enumerate(header)]
    line = "  ".join(h.ljust(w) for h, w in zip(header, widths))
    sep = "  ".join("-" * w for w in widths)
    body = ["  ".join(c.ljust(w) for c, w in zip(r, widths)) for r in cells]
    return "\n".join([line, sep, *body])


def num_skipped(*summaries: Mapping[str, Any]) -> int:
    """Files skipped in one or more ``{"used", "skipped", "skipped_files"}`` summaries, each file once."""
    files: set[str] = set()
    for s in summaries:
        files.update(s["skipped_files"])
    return len(files)


def print_notes(*, unavailable: Mapping[str, str] | None = None, skipped: int = 0) -> None:
    """The lines under a result table: metrics that could not be computed (with the reason), skipped images."""
    for k, why in (unavailable or {}).items():
        print(f"  {k}: unavailable - {why}")
    if skipped:
        print(f"  skipped {skipped} unreadable or too large image(s); see the result file")


def metric_notes_for_flags(unavailable: Mapping[str, str]) -> dict[str, str]:
    """The ``unavailable`` reasons of a metrics result with the options named as the commands' flags."""
    out = {}
    for metric, why in unavailable.items():
        for words, flag in METRIC_NOTE_FLAGS.items():
            why = why.replace(words, flag)
        out[metric] = why
    return out


#: Loggers whose "<metric> unavailable: <reason>" warnings the evaluation commands print as notes instead.
METRIC_LOGGERS = ("uae.evaluation.metrics",)


class _DropUnavailable(logging.Filter):
    """Drops "<metric> unavailable: ..." records (the command prints each reason once, as a note)."""

    _rx = re.compile(r"^\w+ unavailable: ")

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            return not self._rx.match(record.getMessage())
        except Exception:  # a malformed record is not ours to judge
            return True


@contextlib.contextmanager
def notes_instead_of_warnings() -> Iterator[None]:
    """Within the block, the metrics' "unavailable" warnings are not logged: the command prints each reason
    once under its table (:func:`print_notes`, with the options named as flags). Other warnings show."""
    flt = _DropUnavailable()
    loggers = [logging.getLogger(name) for name in METRIC_LOGGERS]
    for log in loggers:
        log.addFilter(flt)
    try:
        yield
    finally:
        for log in loggers:
            log.removeFilter(flt)


def percent(value: float | None, digits: int = 1) -> str | None:
    """A fraction as a percentage string (``0.8889`` -> ``"88.9"``), ``None`` unchanged."""
    return None if value is None else f"{100 * value:.{digits}f}"
