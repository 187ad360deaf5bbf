"""``uae fit`` / ``uae validate``: LightningCLI over the stage modules and :class:`uae.data.UAEDataModule`.

Examples::

    uae fit --config recipes/stage1_decoder_dinov2_b.yaml --data.root /data/imagenet
    uae fit --config recipes/finetune_folder.yaml --data.root ~/photos --model.pretrained org/uae-repo
    uae fit --config recipes/stage1_decoder_dinov2_b.yaml --ckpt_path runs/stage1/checkpoints/last.ckpt  # resume
    uae validate --config recipes/finetune_folder.yaml --data.root ~/photos

The model is chosen by ``model.class_path`` (``uae.training.Stage1DecoderModule``,
``Stage2SemanticModule``, ``Stage3GANModule``); data options are ``--data.*`` (no class path).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

from uae.training.export import export_main  # noqa: F401  (re-exported for a `uae export` entry)


def make_cli(args: Sequence[str], run: bool = True, **kwargs: Any) -> Any:
    """The ``LightningCLI`` of uae (stage module by ``model.class_path``, :class:`UAEDataModule` as ``data``).

    Args:
        args: Command-line arguments; with ``run=True`` the first is the sub-command (``fit``, ``validate``).
        run: Run the sub-command; ``False`` only parses and instantiates (``cli.model``, ``cli.trainer``...).
        **kwargs: More ``LightningCLI`` arguments.
    """
    from lightning.pytorch.cli import LightningCLI

    from uae.data.datamodule import UAEDataModule
    from uae.training.module import UAETrainingModule

    return LightningCLI(
        UAETrainingModule,
        UAEDataModule,
        subclass_mode_model=True,
        args=list(args),
        run=run,
        save_config_kwargs={"overwrite": True},
        auto_configure_optimizers=False,
        **kwargs,
    )


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
