"""Image transforms: uae's own, a release's own evaluation pipeline, and timm's data-config API.

A model's evaluation preprocessing travels with it (``model.pretrained_cfg``, see
:mod:`uae.models.preprocess`); :func:`resolve_data_config` reads it and :func:`create_transform` builds
the transform, with timm's names (``timm.data.resolve_data_config(model=m)`` returns the same timm
fields for a uae model). Three pipelines (``preprocess``):

* ``"uae"`` (:class:`ImageTransform`): a square crop of the whole shorter side (centre in eval,
  random in training), resized by PIL (bicubic, antialiased) to each size: what uae's recipes train on.
* ``"adm"`` (:class:`AdmTransform`): the evaluation of the authors' releases (WeichenFan/UAE
  ``eval_uae.py`` on ``old_uae``, ``src/stage1_sample_ddp.py`` on ``main``) and of RAE
  (``src/stage1_sample_ddp.py``): ADM's ``center_crop_arr`` at the output size (PIL box halvings
  while the shorter side is at least twice the size, one PIL bicubic resize of the shorter side to it,
  centre crop), ``/ 255``; that crop is the reference, and the model input is the crop resized by
  their ``encode``: torch bicubic, ``align_corners=False``, no antialias, not clamped
  (:func:`resize_images`).
* ``"timm"``: a plain timm data config (a timm model's): timm's own ``create_transform``.

Every image reaches these as RGB PIL (:func:`uae.data.image_io.read_image`).
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from uae.data.image_io import to_rgb
from uae.errors import InputError
from uae.models.config import UAEConfig
from uae.models.preprocess import TIMM_FIELDS, data_config_for

#: Pipelines :func:`create_transform` builds (``preprocess`` of a data config).
PIPELINES = ("uae", "adm", "timm")
#: timm's defaults for fields a data config leaves out (``timm.data.resolve_data_config``).
TIMM_DEFAULTS: dict[str, Any] = {
    "input_size": (3, 224, 224),
    "interpolation": "bicubic",
    "mean": (0.485, 0.456, 0.406),
    "std": (0.229, 0.224, 0.225),
    "crop_pct": 0.875,
    "crop_mode": "center",
}
_PIL_MODES = {
    "bicubic": Image.Resampling.BICUBIC,
    "bilinear": Image.Resampling.BILINEAR,
    "lanczos": Image.Resampling.LANCZOS,
}


def to_tensor(im: Image.Image, uint8: bool = False) -> torch.Tensor:
    """PIL RGB image -> ``(3, H, W)`` float32 in ``[0, 1]`` (``uint8 / 255``, as torchvision's ``ToTensor``;
    without importing torchvision, which costs seconds at start-up).

    Args:
        im: An RGB image.
        uint8: Return the ``uint8`` pixels ``(3, H, W)`` unscaled instead (:func:`scale_uint8` makes the
            same float tensor later, e.g. on the GPU).
    """
    x = torch.from_numpy(np.array(im, copy=True)).permute(2, 0, 1)
    return x if uint8 else x.float().div_(255.0)


def scale_uint8(x: torch.Tensor) -> torch.Tensor:
    """``uint8`` pixels -> float32 ``x / 255`` (what :func:`to_tensor` returns; any shape and device, bit
    for bit the same on each: IEEE division is correctly rounded); other dtypes are returned unchanged."""
    return x.float().div_(255.0) if x.dtype == torch.uint8 else x


class ImageTransform:
    """Resize the shorter side, crop a square, optionally flip, and convert to a float tensor.

    Train mode: random crop position (or a random-resized crop when ``scale`` is given) and a random
    horizontal flip. Eval mode: deterministic center crop, no flip.

    Args:
        size: Side of ``"image"`` (the encoder input).
        train: Random crop + flip instead of a center crop.
        out_size: Side of ``"target"`` (the decoder output). ``None`` or ``size``: no target.
        hflip: Use random horizontal flips in train mode.
        scale: Train only: ``(min, max)`` area fraction of a random-resized crop (torchvision's
            ``RandomResizedCrop``, aspect ratio in [3/4, 4/3]); ``None`` keeps the full shorter side.
        interpolation: PIL resampling for resizing (``"bicubic"``, ``"bilinear"``, ``"lanczos"``).
        uint8: Return ``uint8`` pixels instead of floats (a quarter of the bytes from the loader's workers
            to the model; :func:`scale_uint8` turns a batch into exactly the floats).
    """

    def __init__(
        self,
        size: int,
        train: bool = False,
        out_size: int | None = None,
        hflip: bool = True,
        scale: tuple[float, float] | None = None,
        interpolation: str = "bicubic",
        uint8: bool = False,
    ) -> None:
        if size <= 0 or (out_size is not None and out_size <= 0):
            raise InputError(f"image sizes must be positive, got size={size}, out_size={out_size}")
        if scale is not None and not (0 < scale[0] <= scale[1] <= 1):
            raise InputError(f"scale must satisfy 0 < min <= max <= 1, got {scale}")
        if interpolation not in _PIL_MODES:
            raise InputError(
                f"interpolation must be one of {sorted(_PIL_MODES)}, got {interpolation!r}",
                param="interpolation",
            )
        self.size = int(size)
        self.out_size = None if out_size is None or out_size == size else int(out_size)
        self.train = train
        self.hflip = hflip
        self.scale = scale
        self.interpolation = _PIL_MODES[interpolation]
        self.uint8 = uint8

    def _crop_box(self, w: int, h: int) -> tuple[int, int, int, int]:
        """``(top, left, height, width)`` of the crop in the original image."""
        if self.train and self.scale is not None:
            from torchvision.transforms import RandomResizedCrop

            dummy = torch.empty(1, h, w)  # get_params only reads the shape
            return RandomResizedCrop.get_params(dummy, list(self.scale), [3 / 4, 4 / 3])
        s = min(w, h)
        if self.train:
            top, left = random.randint(0, h - s), random.randint(0, w - s)
        else:
            top, left = (h - s) // 2, (w - s) // 2
        return top, left, s, s

    def __call__(self, im: Image.Image) -> torch.Tensor | dict[str, torch.Tensor]:
        """Transform one PIL image.

        Returns:
            ``(3, size, size)`` float tensor in [0, 1], or ``{"image": (3, size, size),
            "target": (3, out_size, out_size)}`` when ``out_size`` differs from ``size``.
        """
        im = to_rgb(im)
        w, h = im.size
        top, left, ch, cw = self._crop_box(w, h)
        flip = self.train and self.hflip and random.random() < 0.5
        # The crop is done on the PIL image first, then resized (antialiased by PIL) to each size.
        crop = im.crop((left, top, left + cw, top + ch))
        if flip:
            crop = crop.transpose(Image.FLIP_LEFT_RIGHT)

        def resized(side: int) -> torch.Tensor:
            if crop.size == (side, side):
                return to_tensor(crop, self.uint8)
            # what torchvision's resize does with a PIL image (PIL always antialiases)
            return to_tensor(crop.resize((side, side), self.interpolation), self.uint8)

        image = resized(self.size)
        if self.out_size is None:
            return image
        return {"image": image, "target": resized(self.out_size)}

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(size={self.size}, train={self.train}, out_size={self.out_size}, "
            f"hflip={self.hflip}, scale={self.scale}" + (", uint8=True)" if self.uint8 else ")")
        )


def image_transform(
    size: int,
    train: bool = False,
    out_size: int | None = None,
    hflip: bool = True,
    scale: tuple[float, float] | None = None,
    interpolation: str = "bicubic",
    uint8: bool = False,
) -> Callable[[Image.Image], torch.Tensor | dict[str, torch.Tensor]]:
    """The standard transform: resize shorter side + center crop (random crop + flip in train).

    Args:
        size: Output side (encoder input resolution).
        train: Random crop position and horizontal flip instead of a deterministic center crop.
        out_size: Decoder output resolution; when it differs from ``size`` the transform returns
            ``{"image": (3, size, size), "target": (3, out_size, out_size)}`` from the same crop.
        hflip: Random horizontal flips in train mode.
        scale: Train only: area range of a random-resized crop (``None``: full shorter side).
        interpolation: ``"bicubic"`` (default), ``"bilinear"`` or ``"lanczos"``.
        uint8: ``uint8`` pixels instead of floats (see :class:`ImageTransform`).

    Returns:
        A callable ``PIL.Image -> (3, size, size) float tensor in [0, 1]`` (or the dict above).
    """
    return ImageTransform(
        size,
        train=train,
        out_size=out_size,
        hflip=hflip,
        scale=scale,
        interpolation=interpolation,
        uint8=uint8,
    )


# ---------------------------------------------------------------------------------------------- releases
def adm_center_crop(im: Image.Image, size: int) -> Image.Image:
    """ADM's centre crop (``center_crop_arr`` of guided-diffusion, used by the authors' and RAE's evaluation).

    While the shorter side is at least ``2 * size`` the image is halved with PIL's box filter
    (integer halving of each side); then one PIL bicubic resize brings the shorter side to ``size``
    (each side scaled by ``size / shorter`` and rounded), and the centre ``size x size`` square is
    cut (offsets ``(side - size) // 2``).

    Args:
        im: An RGB PIL image.
        size: Side of the crop.

    Returns:
        The ``size x size`` RGB crop.
    """
    while min(im.size) >= 2 * size:
        im = im.resize(tuple(s // 2 for s in im.size), resample=Image.Resampling.BOX)
    scale = size / min(im.size)
    im = im.resize(tuple(round(s * scale) for s in im.size), resample=Image.Resampling.BICUBIC)
    w, h = im.size
    top, left = (h - size) // 2, (w - size) // 2
    return im.crop((left, top, left + size, top + size))


def resize_images(
    images: torch.Tensor, size: int, *, antialias: bool = False, interpolation: str = "bicubic"
) -> torch.Tensor:
    """Resize a batch to the encoder input size the way the releases' ``encode`` does.

    The authors' ``UnifiedUAE.encode`` (v1), ``UAE._preprocess_encoder_input`` (v2) and RAE's
    ``RAE.encode`` resize every input whose side is not ``encoder_input_size`` with
    ``F.interpolate(mode="bicubic", align_corners=False)``: no antialias, not clamped (bicubic overshoot
    leaves ``[0, 1]`` by a little, which uae's input check tolerates). uae's models never resize: this
    is the step their evaluation runs between the 256 px crop and the 224 px encoder.

    Args:
        images: ``(B, 3, H, W)`` (or ``(3, H, W)``) in ``[0, 1]``.
        size: The model's ``config.img_size``.
        antialias: Antialias the resize (the releases do not).
        interpolation: ``"bicubic"`` or ``"bilinear"`` (torch modes).

    Returns:
        ``(B, 3, size, size)`` (or ``(3, size, size)``); ``images`` itself when it already has that size.
    """
    if interpolation not in ("bicubic", "bilinear"):
        raise InputError(
            f"interpolation must be 'bicubic' or 'bilinear' for a tensor resize, got {interpolation!r}",
            param="interpolation",
        )
    if images.shape[-2:] == (size, size):
        return images
    batch = images if images.ndim == 4 else images[None]
    out = F.interpolate(
        batch, size=(size, size), mode=interpolation, align_corners=False, antialias=antialias
    )
    return out if images.ndim == 4 else out[0]


class AdmTransform:
    """The releases' evaluation pipeline: ADM centre crop at ``resize_size``, then a tensor resize.

    Args:
        size: Side of ``"image"`` (the model's input, ``img_size``).
        resize_size: Side of the ADM crop (the releases' ``--image-size``, their decoder's output size).
        target_size: Side of ``"target"``; the crop itself when equal to ``resize_size``, else the crop
            resized with PIL (bicubic, antialiased). ``None`` or ``size``: no target.
        antialias: Antialias the resize from ``resize_size`` to ``size`` (the releases do not).
        interpolation: Torch mode of that resize (``"bicubic"``).
    """

    #: Always decode at full size: the releases' pipeline box-downsamples the full image itself, and a
    #: draft decode would change its input (see :func:`transform_draft_size`).
    draft_size = None

    def __init__(
        self,
        size: int,
        resize_size: int,
        target_size: int | None = None,
        antialias: bool = False,
        interpolation: str = "bicubic",
    ) -> None:
        for name, value in (("size", size), ("resize_size", resize_size), ("target_size", target_size)):
            if value is not None and value <= 0:
                raise InputError(f"{name} must be positive, got {value}", param=name)
        resize_images(torch.zeros(1, 3, 1, 1), 1, interpolation=interpolation)  # checks the mode
        self.size, self.resize_size = int(size), int(resize_size)
        self.target_size = None if target_size is None or target_size == size else int(target_size)
        self.antialias, self.interpolation = bool(antialias), interpolation

    def __call__(self, im: Image.Image) -> torch.Tensor | dict[str, torch.Tensor]:
        """Transform one PIL image -> ``(3, size, size)``, or ``{"image", "target"}`` as :class:`ImageTransform`."""
        crop = adm_center_crop(to_rgb(im), self.resize_size)
        ref = to_tensor(crop)
        image = resize_images(ref, self.size, antialias=self.antialias, interpolation=self.interpolation)
        if self.target_size is None:
            return image
        if self.target_size != self.resize_size:
            side = self.target_size
            ref = to_tensor(crop.resize((side, side), _PIL_MODES["bicubic"]))
        return {"image": image, "target": ref}

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(size={self.size}, resize_size={self.resize_size}, "
            f"target_size={self.target_size}, antialias={self.antialias})"
        )


class Normalized:
    """``(x - mean) / std`` on the ``"image"`` of another transform (never on its ``"target"``)."""

    def __init__(self, transform: Callable[[Image.Image], Any], mean: Any, std: Any) -> None:
        self.transform = transform
        self.mean = torch.tensor(mean, dtype=torch.float32).view(3, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32).view(3, 1, 1)

    def __call__(self, im: Image.Image) -> torch.Tensor | dict[str, torch.Tensor]:
        out = self.transform(im)
        if isinstance(out, dict):
            return {**out, "image": (out["image"] - self.mean) / self.std}
        return (out - self.mean) / self.std

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.transform!r}, mean={self.mean.flatten().tolist()})"


def transform_draft_size(transform: Any) -> int | None:
    """The shorter side a transform needs from the decoded image (the ``draft_size`` of
    :func:`uae.data.image_io.read_image`), or ``None`` when it is not known (decode at full size).

    A transform may state it as an attribute ``draft_size`` (an int, or ``None`` for "full size"); for
    an :class:`ImageTransform` it is the larger output side, divided by ``sqrt(3/4 * scale[0])`` for a
    training random-resized crop (its smallest crop's shorter side, so no crop is upsampled).
    """
    if isinstance(transform, Normalized):
        return transform_draft_size(transform.transform)
    if hasattr(transform, "draft_size"):
        value = transform.draft_size
        return int(value) if value else None
    if isinstance(transform, ImageTransform):
        side = max(transform.size, transform.out_size or 0)
        if transform.train and transform.scale is not None:
            side = math.ceil(side / math.sqrt(0.75 * transform.scale[0]))
        return side
    return None


# ---------------------------------------------------------------------------------------------- data config
def resolve_data_config(
    model: Any = None,
    *,
    args: Mapping[str, Any] | None = None,
    pretrained_cfg: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """A model's evaluation data config: its ``pretrained_cfg`` with overrides (timm's keywords).

    ``resolve_data_config(model=m)`` and ``resolve_data_config(pretrained_cfg=cfg)`` work as in timm;
    the result also holds uae's fields (``preprocess``, ``resize_size``, ``antialias``,
    ``target_size``). A plain timm config (no ``preprocess``) resolves to ``preprocess="timm"`` with
    timm's defaults for missing fields.

    Args:
        model: A :class:`uae.UAE` (or anything with a ``pretrained_cfg`` dict, e.g. a timm model), or a
            :class:`~uae.models.config.UAEConfig`.
        args: Overrides: ``input_size`` (3-tuple) or ``img_size`` (int), ``interpolation``, ``mean``,
            ``std``, ``crop_pct``, ``crop_mode``, ``preprocess``, ``resize_size``, ``antialias``,
            ``target_size`` (``None`` values are ignored, as in timm).
        pretrained_cfg: Use this dict instead of the model's.

    Returns:
        A new dict with every timm field and uae's fields.

    Raises:
        InputError: Neither a model with a ``pretrained_cfg`` nor ``pretrained_cfg``; an unknown
            ``preprocess``; a malformed ``input_size``.
    """
    if pretrained_cfg is None:
        if isinstance(model, UAEConfig):
            pretrained_cfg = data_config_for(model)
        elif model is not None and isinstance(getattr(model, "pretrained_cfg", None), Mapping):
            pretrained_cfg = model.pretrained_cfg
        else:
            raise InputError(
                f"resolve_data_config needs a model with a pretrained_cfg, or pretrained_cfg=; got "
                f"{type(model).__name__}",
                param="model",
            )
    cfg = dict(pretrained_cfg)
    cfg.setdefault("preprocess", "timm")
    for key, value in TIMM_DEFAULTS.items():
        if cfg.get(key) is None:
            cfg[key] = value
    overrides = {k: v for k, v in dict(args or {}).items() if v is not None}
    if "img_size" in overrides:
        overrides.setdefault("input_size", (3, int(overrides["img_size"]), int(overrides["img_size"])))
        overrides.pop("img_size")
    cfg.update(overrides)
    if cfg["preprocess"] not in PIPELINES:
        raise InputError(
            f"preprocess must be one of {PIPELINES}, got {cfg['preprocess']!r}", param="preprocess"
        )
    size = tuple(cfg["input_size"])
    if len(size) != 3 or size[0] != 3 or size[1] != size[2] or size[1] < 1:
        raise InputError(f"input_size must be (3, S, S), got {cfg['input_size']}", param="input_size")
    cfg["input_size"] = tuple(int(v) for v in size)
    cfg.setdefault("target_size", cfg["input_size"][1])
    cfg.setdefault("antialias", cfg["preprocess"] != "adm")
    if cfg["preprocess"] == "adm" and not cfg.get("resize_size"):
        cfg["resize_size"] = cfg["target_size"]
    cfg.setdefault("resize_size", None)
    return cfg


def create_transform(
    cfg: Mapping[str, Any] | None = None,
    *,
    train: bool = False,
    target: bool = True,
    uint8: bool = False,
    **kwargs: Any,
) -> Callable[[Image.Image], torch.Tensor | dict[str, torch.Tensor]]:
    """The transform a data config describes (timm's ``create_transform`` with uae's pipelines).

    ``create_transform(resolve_data_config(model=m))`` reads an image the way the model's release
    evaluates; timm's keywords (``input_size``, ``interpolation``, ``mean``, ``std``, ``crop_pct``,
    ``crop_mode``, ``is_training``) can be given instead of, or on top of, ``cfg``.

    Args:
        cfg: A data config (:func:`resolve_data_config`); ``None``: from the keywords alone.
        train: uae's training transform (random square crop + flip, :class:`ImageTransform`) at the
            config's sizes, whatever the pipeline; ``is_training`` is the same (timm's name).
        target: Also return the reference (``{"image", "target"}``) when ``target_size`` differs from
            the input size; ``False``: the input only.
        uint8: Where the pipeline ends in plain ``[0, 1]`` pixels (uae's evaluation pipeline with the
            identity ``mean``/``std``), return them as ``uint8`` (:func:`scale_uint8` gives the floats);
            the other pipelines return floats regardless.
        **kwargs: Overrides of ``cfg`` (as :func:`resolve_data_config`'s ``args``).

    Returns:
        ``PIL.Image -> (3, S, S)`` float tensor (``[0, 1]`` with the identity ``mean``/``std`` of uae's
        models), or ``{"image": (3, S, S), "target": (3, T, T)}``.

    Raises:
        InputError: Invalid config values (naming the field).
    """
    train = bool(kwargs.pop("is_training", False)) or train
    cfg = resolve_data_config(pretrained_cfg=dict(cfg or {}), args=kwargs)
    size = cfg["input_size"][1]
    out = cfg["target_size"] if target else None
    if cfg["preprocess"] == "timm" and not train:
        from timm.data import create_transform as timm_transform

        return timm_transform(**{k: cfg[k] for k in TIMM_FIELDS}, is_training=False)
    if train:
        tf: Callable[..., Any] = ImageTransform(
            size, train=True, out_size=out, interpolation=cfg["interpolation"]
        )
    elif cfg["preprocess"] == "adm":
        tf = AdmTransform(size, cfg["resize_size"], out, cfg["antialias"], cfg["interpolation"])
    else:
        if float(cfg["crop_pct"]) != 1.0 or cfg["crop_mode"] != "center":
            raise InputError(
                "the 'uae' pipeline crops the whole shorter side at the centre (crop_pct=1.0, crop_mode="
                f"'center'), got crop_pct={cfg['crop_pct']}, crop_mode={cfg['crop_mode']!r}; use "
                "preprocess='timm' for timm's crops",
                param="crop_pct",
            )
        tf = ImageTransform(size, out_size=out, interpolation=cfg["interpolation"])
    mean, std = tuple(cfg["mean"]), tuple(cfg["std"])
    if any(not math.isclose(m, 0.0) for m in mean) or any(not math.isclose(s, 1.0) for s in std):
        tf = Normalized(tf, mean, std)
    elif uint8 and isinstance(tf, ImageTransform) and not train:
        tf.uint8 = True
    return tf


__all__ = [
    "PIPELINES",
    "AdmTransform",
    "ImageTransform",
    "Normalized",
    "adm_center_crop",
    "create_transform",
    "image_transform",
    "resize_images",
    "resolve_data_config",
    "scale_uint8",
    "to_tensor",
]
