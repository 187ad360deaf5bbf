"""Resuming a run: which changed options a resume may apply, compared as two plain dicts.

A resume (``uae fit --ckpt_path``) continues the same run, so an option that changes what is trained must
equal the checkpoint's; options that only say where start-up weights come from (replaced by the
checkpoint's weights anyway) or where / how often outputs are written may differ and are applied.
:func:`resume_changes` sorts the differences; ``uae fit`` (:mod:`uae.commands.lightning_cli`) reports them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

#: A recipe value the user must set (``pretrained: ???`` in ``recipes/finetune_folder.yaml``); on resume the
#: checkpoint's value is taken.
REQUIRED = "???"

#: Stage-module options that may differ on resume: applied (with a warning). Every other option changes
#: what is trained and is refused.
RESUME_APPLIED = (
    "export_dir",
    "export_name",
    "log_images_every_n_steps",
    "num_log_images",
    "pretrained",
    "encoder_weights",
    "teacher_weights",
    "disc_weights",
    "lpips_backbone_weights",
    "fid_every_n_steps",
    "fid_num_samples",
    "inception_weights",
    "sample_steps",
)


class ResumeChanges(NamedTuple):
    """The options given for a resume that differ from the checkpoint's hyper-parameters."""

    #: ``{option: given value}`` of the options in :data:`RESUME_APPLIED` (applied).
    applied: dict[str, Any]
    #: ``[(option, checkpoint value, given value)]`` of the others (a resume must not change them).
    refused: list[tuple[str, Any, Any]]


def _normalise(v: Any) -> Any:
    """Compare ``1`` and ``1.0``, tuples and lists alike (YAML, the command line and checkpoints differ)."""
    if isinstance(v, (list, tuple)):
        return [_normalise(x) for x in v]
    if isinstance(v, Mapping):
        return {k: _normalise(x) for k, x in v.items()}
    if isinstance(v, int) and not isinstance(v, bool):
        return float(v)
    return v


def resume_changes(saved: Mapping[str, Any], given: Mapping[str, Any]) -> ResumeChanges:
    """Sort the options of a resume that differ from the checkpoint's.

    Args:
        saved: The checkpoint's hyper-parameters (``checkpoint["hyper_parameters"]``).
        given: The stage module's options as given now (plain values). Options the checkpoint does not
            have, and :data:`REQUIRED` placeholders, are left out (the checkpoint's value holds).

    Returns:
        :class:`ResumeChanges`: the options applied, and the ones refused with both values.
    """
    applied: dict[str, Any] = {}
    refused: list[tuple[str, Any, Any]] = []
    for key, value in given.items():
        if key not in saved or value == REQUIRED or _normalise(saved[key]) == _normalise(value):
            continue
        if key in RESUME_APPLIED:
            applied[key] = value
        else:
            refused.append((key, saved[key], value))
    return ResumeChanges(applied, refused)


__all__ = ["REQUIRED", "RESUME_APPLIED", "ResumeChanges", "resume_changes"]
