"""The LightningCLI of ``uae fit`` / ``uae validate``: the stage module by ``model.class_path``,
:class:`uae.data.UAEDataModule` as ``data`` (another data module by ``data.class_path``: the latent
generator's :class:`uae.training.LatentDataModule`), and uae's rules on top (:func:`make_cli`).

Examples::

    uae fit --config recipes/stage1_decoder_dinov2_b.yaml --data.root /data/imagenet
    uae fit --config recipes/finetune_folder.yaml --data.root ~/photos --model.pretrained org/uae-repo
    uae fit --config recipes/stage1_decoder_dinov2_b.yaml --ckpt_path outputs/runs/uae_b/stage1/checkpoints/last.ckpt  # resume
    uae validate --config recipes/finetune_folder.yaml --data.root ~/photos

Heavy (Lightning, jsonargparse, the stage classes): imported by :mod:`uae.commands.fit` only once the fast
``--help`` is ruled out.
"""

from __future__ import annotations

import importlib
import inspect
import logging
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.cli import LightningCLI

from uae.commands._options import USER_ERRORS, CLIError
from uae.data.datamodule import UAEDataModule
from uae.errors import UAEError, for_flags
from uae.training import LatentDataModule, LatentDiffusionModule, Stage3GANModule, UAETrainingModule
from uae.training.precision import select_precision
from uae.training.quiet import quiet_lightning
from uae.training.resume import resume_changes

logger = logging.getLogger(__name__)

#: Trainer options the library's errors may name.
TRAINER_FLAGS = {"precision": "--trainer.precision", "strategy": "--trainer.strategy"}


def flags() -> dict[str, str]:
    """Library parameter -> LightningCLI flag: the stage modules' options are ``--model.<name>``, the data
    module's ``--data.<name>``, and a few trainer options ``--trainer.<name>``."""

    def params(cls: type) -> list[str]:
        return [n for n in inspect.signature(cls.__init__).parameters if n not in ("self", "kwargs")]

    out = {name: f"--data.{name}" for cls in (UAEDataModule, LatentDataModule) for name in params(cls)}
    for cls in (UAETrainingModule, Stage3GANModule, LatentDiffusionModule):
        out.update({name: f"--model.{name}" for name in params(cls)})
    return {**out, **TRAINER_FLAGS}


def _plain(v: Any) -> Any:
    """A jsonargparse namespace (and what it holds) as plain dicts and lists."""
    if hasattr(v, "as_dict"):
        return _plain(v.as_dict())
    if isinstance(v, Mapping):
        return {k: _plain(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    return v


def _stage_class(class_path: str) -> type | None:
    module, _, name = str(class_path).rpartition(".")
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError, ValueError):
        return None


class UAECLI(LightningCLI):
    """LightningCLI that resumes honestly, picks precision from the hardware and names the recipe."""

    def add_arguments_to_parser(self, parser: Any) -> None:
        # data without a class_path (every image recipe) is the image DataModule's options
        parser.set_defaults({"data": {"class_path": "uae.data.UAEDataModule"}})

    def _parse_ckpt_path(self) -> None:
        sub = self.config.get("subcommand")
        ckpt_path = self.config[sub].get("ckpt_path") if sub else None
        if sub != "fit" or not ckpt_path or not Path(ckpt_path).is_file():
            return super()._parse_ckpt_path()  # validate: the checkpoint's options, as LightningCLI does
        hparams = torch.load(ckpt_path, weights_only=True, map_location="cpu").get("hyper_parameters", {})
        given = self.config[sub]["model"]
        applied: dict[str, Any] = {}
        refused: list[str] = []
        if hparams:
            saved_cls = hparams.get("_class_path")
            if saved_cls and given.get("class_path") and saved_cls != given["class_path"]:
                refused.append(
                    f"model.class_path ({saved_cls} in the checkpoint, {given['class_path']} given)"
                )
            changes = resume_changes(hparams, _plain(given.get("init_args") or {}))
            applied = changes.applied
            refused += [
                f"model.{k} ({saved!r} in the checkpoint, {value!r} given)"
                for k, saved, value in changes.refused
            ]
        if refused:
            raise CLIError(
                f"resuming {ckpt_path} with options that differ from its hyper-parameters: "
                + "; ".join(refused)
                + " (a resume continues the same run: drop these options, or start a new run "
                "from the exported weights with --model.pretrained)"
            )
        super()._parse_ckpt_path()
        for key, value in applied.items():
            logger.warning("Resuming with model.%s = %r (the checkpoint had %r)", key, value, hparams[key])
            self.config[sub]["model"]["init_args"][key] = value

    def before_instantiate_classes(self) -> None:
        sub = self.config.get("subcommand")
        cfg = self.config[sub] if sub else self.config
        trainer = cfg["trainer"]
        if trainer.get("precision") is None:  # not set in the recipe nor on the command line
            stage = _stage_class(cfg["model"].get("class_path", ""))
            prec = select_precision(trainer.get("accelerator", "auto"), getattr(stage, "SUPPORTS_FP16", True))
            trainer["precision"] = prec
            logger.info("Precision %s (from the hardware; set --trainer.precision to choose)", prec)

    def after_instantiate_classes(self) -> None:
        sub = self.config.get("subcommand")
        cfg = self.config[sub] if sub else self.config
        files = cfg.get("config") or []
        recipe = [str(getattr(f, "relative", f)) for f in files]
        model = getattr(self, "model", None)
        if model is not None and hasattr(model, "recipe"):
            model.recipe = recipe
        super().after_instantiate_classes()


def _real_cause(e: BaseException) -> BaseException:
    """The user error that jsonargparse hid behind "Does not validate against any of the Union subtypes"."""
    seen = e
    while seen.__cause__ is not None:
        seen = seen.__cause__
    return seen if isinstance(seen, USER_ERRORS) else e


def _with_flags(e: UAEError) -> UAEError:
    """``e`` again, its parameter named as the command-line flag (``pretrained`` -> ``--model.pretrained``)."""
    if not e.param:
        return e
    try:
        return type(e)(for_flags(e, flags()))
    except TypeError:  # an error type with other constructor arguments: keep it as it is
        return e


def make_cli(args: Sequence[str], run: bool = True, **kwargs: Any) -> LightningCLI:
    """The ``LightningCLI`` of uae (stage module by ``model.class_path``, :class:`UAEDataModule` as ``data``).

    On top of LightningCLI: ``trainer.precision`` left unset is chosen from the hardware
    (:func:`uae.training.precision.select_precision`); resuming (``--ckpt_path``) refuses ``model.*`` options
    that differ from the checkpoint's, except those in :data:`uae.training.resume.RESUME_APPLIED`, which are
    applied with a warning; the recipe file is recorded for the model card; Lightning's advice that does not
    apply is dropped (:mod:`uae.training.quiet`); an invalid option raises its real cause, not jsonargparse's
    "Does not validate against any of the Union subtypes", with its parameter named as the flag.

    Args:
        args: Command-line arguments; with ``run=True`` the first is the sub-command (``fit``, ``validate``).
        run: Run the sub-command; ``False`` only parses and instantiates (``cli.model``, ``cli.trainer``...).
        **kwargs: More ``LightningCLI`` arguments.
    """
    quiet_lightning()
    try:
        return UAECLI(
            pl.LightningModule,
            pl.LightningDataModule,
            subclass_mode_model=True,
            subclass_mode_data=True,
            args=list(args),
            run=run,
            save_config_kwargs={"overwrite": True},
            auto_configure_optimizers=False,
            **kwargs,
        )
    except UAEError as e:
        named = _with_flags(e)
        if named is e:
            raise
        raise named from e  # the original (with its traceback) stays visible with UAE_DEBUG=1
    except ValueError as e:
        cause = _real_cause(e)
        if cause is e:
            raise
        if isinstance(cause, UAEError) and _with_flags(cause) is not cause:
            raise _with_flags(cause) from cause
        raise cause from None  # jsonargparse's wrapper says nothing more


def _cli(subcommand: str, argv: Sequence[str], **kwargs: Any) -> LightningCLI:
    # sys.argv must stay as it is: Lightning's DDP launcher re-runs it for the other ranks. The
    # arguments reach LightningCLI through ``args``, so its warning about both being set is noise.
    warnings.filterwarnings("ignore", message="LightningCLI's args parameter is intended")
    return make_cli([subcommand, *argv], **kwargs)


def fit_main(argv: Sequence[str]) -> int:
    """``uae fit --config recipes/<recipe>.yaml [--section.key value ...]``: train one stage."""
    _cli("fit", argv)
    return 0


def validate_main(argv: Sequence[str]) -> int:
    """``uae validate --config recipes/<recipe>.yaml [--ckpt_path CKPT]``: validation loop only."""
    _cli("validate", argv)
    return 0


__all__ = ["UAECLI", "fit_main", "flags", "make_cli", "validate_main"]
