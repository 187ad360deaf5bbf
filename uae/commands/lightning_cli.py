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
import os
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
from lightning.pytorch.callbacks import LearningRateMonitor, ModelCheckpoint, ProgressBar
from lightning.pytorch.cli import LightningCLI
from lightning.pytorch.trainer import Trainer
from lightning.pytorch.utilities.exceptions import MisconfigurationException, SIGTERMException

from uae.commands._options import CLIError
from uae.data.datamodule import UAEDataModule
from uae.errors import ConfigError, UAEError, for_flags
from uae.training import LatentDataModule, LatentDiffusionModule, Stage3GANModule, UAETrainingModule
from uae.training.callbacks import StepProgressBar
from uae.training.callbacks.checkpoints import SIGTERM_EXIT
from uae.training.checkpoint_io import CKPT_KEYWORDS, fetch_checkpoint, is_url, read_checkpoint
from uae.training.precision import select_precision
from uae.training.quiet import quiet_lightning
from uae.training.resume import resume_changes
from uae.training.runs import RUN_LAYOUT, default_logger, fit_interval, run_paths

logger = logging.getLogger(__name__)

#: Trainer and sub-command options the library's errors may name.
TRAINER_FLAGS = {
    "precision": "--trainer.precision",
    "strategy": "--trainer.strategy",
    "ckpt_path": "--ckpt_path",
    "weights_only": "--weights_only",
}


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


def _class(class_path: Any) -> type | None:
    module, _, name = str(class_path).rpartition(".")
    try:
        found = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError, ValueError):
        return None
    return found if isinstance(found, type) else None


def _checkpoint_entries(trainer_cfg: Any) -> list[Any]:
    """The configured ``ModelCheckpoint`` callbacks (entries with ``class_path`` and ``init_args``)."""
    callbacks = trainer_cfg.get("callbacks") or []
    if not isinstance(callbacks, list):
        callbacks = [callbacks]
    out = []
    for entry in callbacks:
        cls = _class(entry.get("class_path")) if hasattr(entry, "get") else None
        if cls is not None and issubclass(cls, ModelCheckpoint) and entry.get("init_args") is not None:
            out.append(entry)
    return out


def export_default(cfg: Any) -> str | None:
    """A model without an ``export_dir`` exports to ``<trainer.default_root_dir>/export``
    (:func:`uae.training.runs.run_paths`); returns the folder set, or ``None``."""
    model = cfg.get("model")
    model_args = model.get("init_args") if model is not None and hasattr(model, "get") else None
    if model_args is None or "export_dir" not in model_args or model_args["export_dir"] is not None:
        return None
    out = str(run_paths(cfg["trainer"].get("default_root_dir") or os.getcwd())["export"])
    model_args["export_dir"] = out
    return out


def scale_to_budget(cfg: Any) -> list[str]:
    """Shorten step intervals longer than ``trainer.max_steps`` (validation, periodic checkpoints) to a tenth
    of the run (:func:`uae.training.runs.fit_interval`), so a short fine-tune still validates and saves.

    Returns:
        What was changed, one line each.
    """
    trainer_cfg = cfg["trainer"]
    max_steps = int(trainer_cfg.get("max_steps") or -1)
    lines = []
    vci = trainer_cfg.get("val_check_interval")
    if isinstance(vci, int) and not isinstance(vci, bool):
        trainer_cfg["val_check_interval"], msg = fit_interval(vci, max_steps, "Validation interval")
        lines += [msg] if msg else []
    for entry in _checkpoint_entries(trainer_cfg):
        every = entry["init_args"].get("every_n_train_steps")
        if isinstance(every, int) and every > 0:
            entry["init_args"]["every_n_train_steps"], msg = fit_interval(
                every, max_steps, "Checkpoint interval"
            )
            lines += [msg] if msg else []
    return lines


def _config(cli: LightningCLI) -> Any:
    """The parsed configuration of the sub-command (or the whole one without a sub-command)."""
    sub = cli.config.get("subcommand")
    return cli.config[sub] if sub else cli.config


#: Loggers whose folder defaults to the run's own (``save_dir`` is required by Lightning for both).
RUN_FOLDER_LOGGERS = ("TensorBoardLogger", "CSVLogger")
_RUN_FOLDER = "<the run's folder>"


def with_run_folder_logger(args: Sequence[str]) -> list[str]:
    """``args`` with ``--trainer.logger.save_dir`` set to a placeholder for the run's folder when a TensorBoard
    or CSV logger is chosen on the command line without one (Lightning requires it; jsonargparse said only
    "Does not validate against any of the Union subtypes"). :func:`logger_folders` fills it in."""
    out = list(args)
    if any(a.startswith(("--trainer.logger.save_dir", "--trainer.logger.init_args.save_dir")) for a in out):
        return out
    for i, a in enumerate(out):
        value = a.partition("=")[2] if a.startswith("--trainer.logger=") else None
        if a == "--trainer.logger" and i + 1 < len(out):
            value = out[i + 1]
        if value is not None and value.rpartition(".")[2] in RUN_FOLDER_LOGGERS:
            at = i + (1 if a.startswith("--trainer.logger=") else 2)
            return [*out[:at], "--trainer.logger.save_dir", _RUN_FOLDER, *out[at:]]
    return out


def logger_folders(cfg: Any) -> None:
    """A logger given without ``save_dir`` (:func:`with_run_folder_logger`) writes in ``<default_root_dir>/logs``."""
    trainer_cfg = cfg["trainer"]
    entries = trainer_cfg.get("logger")
    for entry in entries if isinstance(entries, list) else [entries]:
        init = entry.get("init_args") if hasattr(entry, "get") else None
        if init is not None and init.get("save_dir") == _RUN_FOLDER:
            init["save_dir"] = str(
                run_paths(trainer_cfg.get("default_root_dir") or os.getcwd())["logs"].parent
            )
            if init.get("name") == "lightning_logs":  # Lightning's default: the run's own layout instead
                init["name"] = RUN_LAYOUT["logs"]


class UAECLI(LightningCLI):
    """LightningCLI that reads checkpoints safely, resumes honestly, keeps each run in its own folder, fits
    the intervals to the step budget, picks precision from the hardware and names the recipe."""

    def parse_arguments(self, parser: Any, args: Any) -> None:
        super().parse_arguments(parser, args)
        cfg = _config(self)
        logger_folders(cfg)
        if self.config.get("subcommand") in (None, "fit"):  # before a resume compares the options
            export_default(cfg)
        for line in scale_to_budget(cfg):  # validate too: the checkpoint callbacks' state keys match fit's
            logger.info("%s", line)

    def _checked_checkpoint(self) -> dict[str, Any] | None:
        """Read ``ckpt_path`` now, with ``weights_only=True`` (an ``http(s)://`` one downloaded first, and the
        sub-command pointed at the local copy); Lightning then loads it with ``weights_only=True`` too."""
        cfg = _config(self)
        if "weights_only" in cfg:
            if cfg["weights_only"] is False:
                raise CLIError(
                    "weights_only false is not supported: uae loads checkpoints with weights_only=True only "
                    "(a checkpoint that needs more can run code when loaded)",
                    param="weights_only",
                )
            cfg["weights_only"] = True
        ckpt_path = cfg.get("ckpt_path")
        if not ckpt_path or str(ckpt_path) in CKPT_KEYWORDS:
            return None
        source = str(ckpt_path)
        if is_url(source):
            local: str | Path = fetch_checkpoint(source)
            cfg["ckpt_path"] = str(local)
        else:
            local = source if "://" in source else Path(source).expanduser()
        return read_checkpoint(local, mmap=isinstance(local, Path), source=source)

    def add_arguments_to_parser(self, parser: Any) -> None:
        # data without a class_path (every image recipe) is the image DataModule's options
        parser.set_defaults({"data": {"class_path": "uae.data.UAEDataModule"}})

    def _parse_ckpt_path(self) -> None:
        sub = self.config.get("subcommand")
        checkpoint = self._checked_checkpoint() if sub else None
        if sub != "fit" or checkpoint is None:
            return super()._parse_ckpt_path()  # validate: the checkpoint's options, as LightningCLI does
        ckpt_path = self.config[sub]["ckpt_path"]
        hparams = checkpoint.get("hyper_parameters", {})
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
            stage = _class(cfg["model"].get("class_path", ""))
            prec = select_precision(trainer.get("accelerator", "auto"), getattr(stage, "SUPPORTS_FP16", True))
            trainer["precision"] = prec
            logger.info("Precision %s (from the hardware; set --trainer.precision to choose)", prec)

    def instantiate_trainer(self, **kwargs: Any) -> Trainer:
        """The trainer, with uae's defaults where the configuration leaves them open: the logger
        (:func:`uae.training.runs.default_logger`), checkpoint folders (``<default_root_dir>/checkpoints``)
        and the step-based progress bar."""
        trainer_cfg = _config(self)["trainer"]
        paths = run_paths(trainer_cfg.get("default_root_dir") or os.getcwd())
        if trainer_cfg.get("logger") in (None, True):
            kwargs.setdefault("logger", default_logger(paths["logs"].parent))
        trainer_init = self._get(self.config_init, "trainer")
        callbacks = trainer_init.get("callbacks") or []
        callbacks = list(callbacks) if isinstance(callbacks, (list, tuple)) else [callbacks]
        if trainer_cfg.get("logger") is False and any(isinstance(c, LearningRateMonitor) for c in callbacks):
            # the recipes log the learning rate; with no logger there is nowhere to log it (Lightning refuses)
            callbacks = [c for c in callbacks if not isinstance(c, LearningRateMonitor)]
            trainer_init["callbacks"] = callbacks
            logger.info("No logger (trainer.logger false): the recipe's LearningRateMonitor is left out")
        if trainer_cfg.get("enable_progress_bar") is not False and not any(
            isinstance(c, ProgressBar) for c in callbacks
        ):  # Lightning's default bar counts the epoch's batches; this one the run's steps
            trainer_init["callbacks"] = [*callbacks, StepProgressBar()]
        trainer = super().instantiate_trainer(**kwargs)
        for cb in trainer.checkpoint_callbacks:  # configured or Lightning's default: inside the run's folder
            if isinstance(cb, ModelCheckpoint) and cb.dirpath is None:
                cb.dirpath = os.path.realpath(paths["checkpoints"])
        return trainer

    def after_instantiate_classes(self) -> None:
        cfg = _config(self)
        files = cfg.get("config") or []
        recipe = [str(getattr(f, "relative", f)) for f in files]
        model = getattr(self, "model", None)
        if model is not None and hasattr(model, "recipe"):
            model.recipe = recipe
        if isinstance(model, UAETrainingModule):
            total = sum(p.numel() for p in model.parameters())
            trained = sum(p.numel() for p in model.trainable_parameters())
            logger.info(
                "%s (stage %d): %.1f M of %.1f M parameters train",
                type(model).__name__,
                model.STAGE,
                trained / 1e6,
                total / 1e6,
            )
        super().after_instantiate_classes()


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def _causes(e: BaseException) -> list[BaseException]:
    """``e`` and its chain of causes (``raise ... from``), outermost first."""
    chain = [e]
    while chain[-1].__cause__ is not None and len(chain) < 50:
        chain.append(chain[-1].__cause__)
    return chain


#: Packages an option's class may need, and how to install them.
INSTALL_HINTS = {
    "tensorboard": "pip install 'uae[tensorboard]'",
    "tensorboardX": "pip install 'uae[tensorboard]'",
}


def _real_cause(e: BaseException) -> BaseException:
    """The user error that jsonargparse hid behind "Does not validate against any of the Union subtypes":
    the outermost uae error in the chain of causes, or a missing optional package as a one-line
    :class:`~uae.errors.ConfigError` saying what to install."""
    chain = _causes(e)
    for cause in chain:
        if isinstance(cause, UAEError):
            return cause
    for cause in chain:
        if isinstance(cause, ModuleNotFoundError):
            text = str(cause)
            if "tensorboard" in text.lower():
                return ConfigError(
                    f"the TensorBoard logger needs TensorBoard, which is not installed: "
                    f"{INSTALL_HINTS['tensorboard']} (or pip install tensorboard), or leave trainer.logger "
                    "unset for CSV logs"
                )
            name = getattr(cause, "name", None) or text
            hint = INSTALL_HINTS.get(str(name), f"pip install {name}")
            return ConfigError(f"an option needs the package {name!r}, which is not installed: {hint}")
    return e


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

    On top of LightningCLI:

    * ``--ckpt_path`` is read by uae first with ``weights_only=True`` (an ``http(s)://`` address is
      downloaded to a temporary file first; offline it is refused), and Lightning loads it with
      ``weights_only=True`` (``--weights_only false`` is refused); a pickle is refused in one line;
    * the run stays in its ``trainer.default_root_dir``: checkpoints in ``checkpoints/``, logs in ``logs/``
      (TensorBoard when installed, else CSV), the export in ``export/`` (:func:`export_default`);
    * ``--trainer.logger TensorBoardLogger`` / ``CSVLogger`` without a ``save_dir`` logs into the run's
      ``logs/`` (:func:`with_run_folder_logger`);
    * step intervals longer than ``max_steps`` (validation, checkpoints) shrink to a tenth of the run
      (:func:`scale_to_budget`); the progress bar counts steps over the run, with its ETA
      (:class:`uae.training.callbacks.StepProgressBar`); no model-summary table (one line instead);
    * ``trainer.precision`` left unset is chosen from the hardware
      (:func:`uae.training.precision.select_precision`);
    * resuming refuses ``model.*`` options that differ from the checkpoint's, except those in
      :data:`uae.training.resume.RESUME_APPLIED`, which are applied with a warning;
    * the recipe file is recorded for the model card; Lightning's advice that does not apply is dropped
      (:mod:`uae.training.quiet`);
    * an invalid option raises its real cause, not jsonargparse's "Does not validate against any of the
      Union subtypes", with its parameter named as the flag; a class whose optional package is missing
      (``TensorBoardLogger``) says what to install.

    Args:
        args: Command-line arguments; with ``run=True`` the first is the sub-command (``fit``, ``validate``).
        run: Run the sub-command; ``False`` only parses and instantiates (``cli.model``, ``cli.trainer``...).
        **kwargs: More ``LightningCLI`` arguments.
    """
    quiet_lightning()
    trainer_defaults = {"enable_model_summary": False, **kwargs.pop("trainer_defaults", {})}
    try:
        return UAECLI(
            pl.LightningModule,
            pl.LightningDataModule,
            subclass_mode_model=True,
            subclass_mode_data=True,
            args=with_run_folder_logger(args),
            run=run,
            save_config_kwargs={"overwrite": True},
            auto_configure_optimizers=False,
            trainer_defaults=trainer_defaults,
            **kwargs,
        )
    except MisconfigurationException as e:  # Lightning's word for an invalid combination of options
        raise ConfigError(f"invalid trainer configuration: {_first_line(e)}") from e
    except UAEError as e:
        named = _with_flags(e)
        if named is e:
            raise
        raise named from e  # the original (with its traceback) stays visible with UAE_DEBUG=1
    except (ValueError, ImportError) as e:
        cause = _real_cause(e)
        if cause is e:
            raise
        if isinstance(cause, UAEError) and _with_flags(cause) is not cause:
            raise _with_flags(cause) from cause
        if cause not in _causes(e):  # a new message for a missing package: keep the chain for UAE_DEBUG=1
            raise cause from e
        raise cause from None  # jsonargparse's wrapper says nothing more


def _cli(subcommand: str, argv: Sequence[str], **kwargs: Any) -> LightningCLI:
    # sys.argv must stay as it is: Lightning's DDP launcher re-runs it for the other ranks. The
    # arguments reach LightningCLI through ``args``, so its warning about both being set is noise.
    warnings.filterwarnings("ignore", message="LightningCLI's args parameter is intended")
    return make_cli([subcommand, *argv], **kwargs)


def fit_main(argv: Sequence[str]) -> int:
    """``uae fit --config recipes/<recipe>.yaml [--section.key value ...]``: train one stage.

    Returns:
        0; 143 when stopped by SIGTERM (after writing ``last.ckpt``, see
        :class:`uae.training.callbacks.SaveOnSigterm`).
    """
    try:
        _cli("fit", argv)
    except SIGTERMException as e:
        return int(e.code) if isinstance(e.code, int) and e.code else SIGTERM_EXIT
    return 0


def validate_main(argv: Sequence[str]) -> int:
    """``uae validate --config recipes/<recipe>.yaml [--ckpt_path CKPT]``: validation loop only (143 when
    stopped by SIGTERM)."""
    try:
        _cli("validate", argv)
    except SIGTERMException as e:
        return int(e.code) if isinstance(e.code, int) and e.code else SIGTERM_EXIT
    return 0


__all__ = [
    "UAECLI",
    "fit_main",
    "flags",
    "make_cli",
    "export_default",
    "scale_to_budget",
    "validate_main",
]
