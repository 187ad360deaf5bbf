"""``uae fit`` / ``uae validate``: LightningCLI over the stage modules and :class:`uae.data.UAEDataModule`.

Examples::

    uae fit --config recipes/stage1_decoder_dinov2_b.yaml --data.root /data/imagenet
    uae fit --config recipes/finetune_folder.yaml --data.root ~/photos --model.pretrained org/uae-repo
    uae fit --config recipes/stage1_decoder_dinov2_b.yaml --ckpt_path outputs/runs/uae_b/stage1/checkpoints/last.ckpt  # resume
    uae validate --config recipes/finetune_folder.yaml --data.root ~/photos

The model is chosen by ``model.class_path`` (``uae.training.Stage1DecoderModule``,
``Stage2SemanticModule``, ``Stage3GANModule``); data options are ``--data.*`` (no class path).
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

#: ``model.*`` options that may differ on resume: they are applied (with a warning), because they only
#: say where to read start-up weights from (replaced by the checkpoint's weights anyway) or where / how
#: often to write outputs. Every other option changes what is trained and is refused on resume.
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
)


def select_precision(accelerator: Any = "auto", supports_fp16: bool = True) -> str:
    """Training precision for the hardware: ``bf16-mixed`` where CUDA supports bf16, else ``16-mixed``
    on CUDA (``32-true`` when the stage cannot use fp16, i.e. stage 3), ``32-true`` on CPU / other
    accelerators.

    Args:
        accelerator: The trainer's ``accelerator`` setting (``"auto"``, ``"gpu"``, ``"cuda"``, ``"cpu"``...).
        supports_fp16: The stage module supports fp16 mixed precision (loss scaling).
    """
    import torch

    name = str(accelerator).lower() if isinstance(accelerator, str) else type(accelerator).__name__.lower()
    if not any(k in name for k in ("auto", "gpu", "cuda")) or not torch.cuda.is_available():
        return "32-true"
    if torch.cuda.is_bf16_supported():
        return "bf16-mixed"
    return "16-mixed" if supports_fp16 else "32-true"


def _normalise(v: Any) -> Any:
    if isinstance(v, (list, tuple)):
        return [_normalise(x) for x in v]
    if isinstance(v, dict):
        return {k: _normalise(x) for k, x in v.items()}
    if hasattr(v, "as_dict"):  # jsonargparse Namespace
        return _normalise(v.as_dict())
    if isinstance(v, int) and not isinstance(v, bool):
        return float(v)
    return v


def _real_cause(e: BaseException) -> BaseException:
    """The user error that jsonargparse hid behind "Does not validate against any of the Union subtypes"."""
    seen = e
    while seen.__cause__ is not None:
        seen = seen.__cause__
    from uae.cli import USER_ERRORS, CLIError

    return seen if isinstance(seen, (CLIError, *USER_ERRORS)) else e


def _cli_class() -> type:
    from lightning.pytorch.cli import LightningCLI

    class UAECLI(LightningCLI):
        """LightningCLI that resumes honestly, picks precision from the hardware and names the recipe."""

        def _parse_ckpt_path(self) -> None:
            sub = self.config.get("subcommand")
            ckpt_path = self.config[sub].get("ckpt_path") if sub else None
            if sub != "fit" or not ckpt_path or not Path(ckpt_path).is_file():
                return super()._parse_ckpt_path()  # validate: the checkpoint's options, as LightningCLI does
            import torch

            from uae.training.module import REQUIRED

            hparams = torch.load(ckpt_path, weights_only=True, map_location="cpu").get("hyper_parameters", {})
            given = self.config[sub]["model"]
            applied, refused = {}, []
            if hparams:
                saved_cls = hparams.get("_class_path")
                if saved_cls and given.get("class_path") and saved_cls != given["class_path"]:
                    refused.append(
                        f"model.class_path ({saved_cls} in the checkpoint, {given['class_path']} given)"
                    )
                for key, value in (given.get("init_args") or {}).items():
                    if (
                        key not in hparams
                        or value == REQUIRED
                        or _normalise(hparams[key]) == _normalise(value)
                    ):
                        continue  # unchanged, or "???" left in the recipe: the checkpoint's value
                    if key in RESUME_APPLIED:
                        applied[key] = value
                    else:
                        refused.append(f"model.{key} ({hparams[key]!r} in the checkpoint, {value!r} given)")
            if refused:
                from uae.cli import CLIError

                raise CLIError(
                    f"resuming {ckpt_path} with options that differ from its hyper-parameters: "
                    + "; ".join(refused)
                    + " (a resume continues the same run: drop these options, or start a new run "
                    "from the exported weights with --model.pretrained)"
                )
            super()._parse_ckpt_path()
            for key, value in applied.items():
                logger.warning(
                    "Resuming with model.%s = %r (the checkpoint had %r)", key, value, hparams[key]
                )
                self.config[sub]["model"]["init_args"][key] = value

        def before_instantiate_classes(self) -> None:
            sub = self.config.get("subcommand")
            cfg = self.config[sub] if sub else self.config
            trainer = cfg["trainer"]
            if trainer.get("precision") is None:  # not set in the recipe nor on the command line
                model_cls = str(cfg["model"].get("class_path", ""))
                prec = select_precision(trainer.get("accelerator", "auto"), "Stage3" not in model_cls)
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

    return UAECLI


def make_cli(args: Sequence[str], run: bool = True, **kwargs: Any) -> Any:
    """The ``LightningCLI`` of uae (stage module by ``model.class_path``, :class:`UAEDataModule` as ``data``).

    On top of LightningCLI: ``trainer.precision`` left unset is chosen from the hardware
    (:func:`select_precision`); resuming (``--ckpt_path``) refuses ``model.*`` options that differ from
    the checkpoint's, except those in :data:`RESUME_APPLIED`, which are applied with a warning; the
    recipe file is recorded for the model card; Lightning's advice that does not apply is dropped
    (:mod:`uae.training.quiet`); an invalid model option raises its real cause, not jsonargparse's
    "Does not validate against any of the Union subtypes".

    Args:
        args: Command-line arguments; with ``run=True`` the first is the sub-command (``fit``, ``validate``).
        run: Run the sub-command; ``False`` only parses and instantiates (``cli.model``, ``cli.trainer``...).
        **kwargs: More ``LightningCLI`` arguments.
    """
    from uae.data.datamodule import UAEDataModule
    from uae.training.module import UAETrainingModule
    from uae.training.quiet import quiet_lightning

    quiet_lightning()
    try:
        return _cli_class()(
            UAETrainingModule,
            UAEDataModule,
            subclass_mode_model=True,
            args=list(args),
            run=run,
            save_config_kwargs={"overwrite": True},
            auto_configure_optimizers=False,
            **kwargs,
        )
    except ValueError as e:
        cause = _real_cause(e)
        if cause is e:
            raise
        raise cause from None


def _cli(subcommand: str, argv: Sequence[str], **kwargs: Any) -> Any:
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
