"""The preprocessing that travels with a model: ``model.pretrained_cfg``, in timm's fields.

timm describes a model's input by a ``pretrained_cfg`` dict on the model (``input_size``,
``interpolation``, ``mean``, ``std``, ``crop_pct``, ``crop_mode``) that
``timm.data.resolve_data_config(model=m)`` reads. A :class:`uae.UAE` carries the same dict, derived from
its config (so ``save_pretrained`` / ``from_pretrained`` carry it in ``config.json``), plus the fields a
release's own evaluation needs:

* ``mean`` / ``std`` are ``(0, 0, 0)`` / ``(1, 1, 1)``: a UAE takes ``[0, 1]`` images and normalises
  them itself with ``pixel_mean`` / ``pixel_std`` (listed for information), so timm's
  ``create_transform(**resolve_data_config(model=m))`` gives inputs the model accepts.
* ``preprocess``: ``"uae"`` (centre crop of the whole shorter side, one PIL resize per size) or
  ``"adm"`` (the authors' and RAE's evaluation: ADM's ``center_crop_arr`` at ``resize_size``, then torch
  bicubic without antialias to ``input_size``), see :attr:`uae.models.config.UAEConfig.preprocess`.
* ``resize_size``: side of the crop before the final resize (``"adm"``; ``None`` for ``"uae"``, which
  resizes the crop straight to each size), ``antialias``: whether that final resize antialiases.
* ``target_size``: side of the reference image (the decoder's output, what PSNR compares with).

timm's own transform cannot express the ``"adm"`` pipeline (it resizes with PIL, once); its nearest
equivalent is what the timm fields give. :func:`uae.data.create_transform` reproduces both exactly.
"""

from __future__ import annotations

from typing import Any

from uae.models.config import UAEConfig

#: The fields timm's ``resolve_data_config`` reads from ``pretrained_cfg``.
TIMM_FIELDS = ("input_size", "interpolation", "mean", "std", "crop_pct", "crop_mode")


def data_config_for(config: UAEConfig, pixel_stats: tuple[Any, Any] | None = None) -> dict[str, Any]:
    """The evaluation preprocessing of a model with this config, as a timm-style ``pretrained_cfg`` dict.

    Args:
        config: The model's config.
        pixel_stats: ``(mean, std)`` the model normalises its input with (informational); ``None``
            leaves them out.

    Returns:
        ``{"input_size": (3, S, S), "interpolation", "mean", "std", "crop_pct", "crop_mode",
        "preprocess", "resize_size", "antialias", "target_size", "architecture"}`` (+ ``pixel_mean`` /
        ``pixel_std``).
    """
    adm = config.preprocess == "adm"
    cfg: dict[str, Any] = {
        "architecture": config.name,
        "input_size": (3, config.img_size, config.img_size),
        "interpolation": "bicubic",
        "mean": (0.0, 0.0, 0.0),
        "std": (1.0, 1.0, 1.0),
        "crop_pct": 1.0,
        "crop_mode": "center",
        "preprocess": config.preprocess,
        "resize_size": config.output_size if adm else None,
        "antialias": not adm,
        "target_size": config.output_size,
    }
    if pixel_stats is not None:
        mean, std = pixel_stats
        cfg["pixel_mean"] = tuple(float(v) for v in mean)
        cfg["pixel_std"] = tuple(float(v) for v in std)
    return cfg


__all__ = ["TIMM_FIELDS", "data_config_for"]
