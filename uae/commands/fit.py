"""``uae fit`` / ``uae validate``: LightningCLI over the stage modules (:mod:`uae.commands.lightning_cli`).

LightningCLI builds its option list from the model and data classes, which needs Lightning, torch
and the classes themselves (seconds to import). ``--help`` is therefore answered here, from a short
summary built with the standard library only; ``--help-all`` asks LightningCLI for the full list.
Every other argument goes to LightningCLI unchanged.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

_USAGE = """\
uae {cmd} --config <recipe name or file.yaml> [--section.key value ...]{extra}

examples:
{examples}

common options (any key of the recipe can be given as --<section>.<key>):
  --config FILE|NAME      a recipe file, or a bundled recipe by name (repeatable; later files and
                          options override earlier ones): stage1_decoder_dinov2_b,
                          stage2_semantic_dinov2_b, stage3_gan_dinov2_b (and _l), finetune_folder,
                          demo; latent generators: ldm_demo, ldm_dit_dh_s_rae, ldm_dit_dh_xl_rae,
                          ldm_dit_dh_xl_uae_64token (`uae recipes` lists them, `uae recipes --copy DIR`
                          copies them out)
  --data.root DIR         image folder (required by most recipes; latent recipes: an `uae encode` folder)
  --data.dataset NAME     folder | imagenet | coco
  --data.batch_size N     --data.num_workers N   --data.val_root DIR   --data.val_fraction F
  --model.class_path CLS  uae.training.Stage1DecoderModule | Stage2SemanticModule | Stage3GANModule
                          | LatentDiffusionModule
  --model.pretrained ID   start from a registered name (uae_demo), a save_pretrained folder or a Hub
                          repo id (fine-tuning)
  --model.lr LR           --model.export_dir DIR   --model.export_name NAME
  --trainer.max_steps N   --trainer.devices N   --trainer.accelerator cpu|gpu|auto
  --trainer.precision P   --trainer.default_root_dir DIR
  --ckpt_path CKPT        {ckpt_help}
  --print_config          print the resolved configuration (YAML) and exit

full option list (all --data.*, --model.*, --trainer.* keys with types and defaults; imports
Lightning and the stage classes, a few seconds):
  uae {cmd} --help-all
  uae {cmd} --config <recipe> --help-all   (the options of that recipe's model class)
"""

_FIT_EXAMPLES = """\
  uae fit --config stage1_decoder_dinov2_b --data.root /data/imagenet
  uae fit --config finetune_folder --data.root ~/photos --model.pretrained uae_demo
  uae fit --config stage1_decoder_dinov2_b --ckpt_path <run>/checkpoints/last.ckpt  # resume
  uae fit --config ldm_demo --data.root <latents from uae encode>"""

_VALIDATE_EXAMPLES = """\
  uae validate --config finetune_folder --data.root ~/photos --model.pretrained uae_demo
  uae validate --config stage1_decoder_dinov2_b --ckpt_path <run>/checkpoints/last.ckpt"""

HELP_FLAGS = ("-h", "--help")
HELP_ALL = "--help-all"


def build_parser(subcommand: str = "fit") -> argparse.ArgumentParser:
    """The fast ``--help`` of ``uae fit`` / ``uae validate`` (a summary; LightningCLI does the parsing).

    Args:
        subcommand: ``"fit"`` or ``"validate"``.
    """
    fit = subcommand == "fit"
    text = _USAGE.format(
        cmd=subcommand,
        extra=" [--ckpt_path CKPT]",
        examples=_FIT_EXAMPLES if fit else _VALIDATE_EXAMPLES,
        ckpt_help="resume training from a Lightning checkpoint (weights, optimiser, EMA, data order)"
        if fit
        else "validate the weights of a Lightning checkpoint",
    )
    usage, _, epilog = text.partition("\n\n")
    parser = argparse.ArgumentParser(
        prog=f"uae {subcommand}",
        usage=usage,
        description=(
            "Train one UAE stage with LightningCLI: a recipe (YAML) gives the model class, data and trainer "
            "options; any option can be overridden on the command line."
            if fit
            else "Run the validation loop of a training recipe (LightningCLI), optionally on a checkpoint."
        ),
        epilog=epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        HELP_ALL, action="store_true", help="LightningCLI's full option list (slow: imports Lightning)"
    )
    return parser


def _recipe_path(value: str) -> str:
    """A ``--config`` value as LightningCLI should read it: an existing file as given, else the bundled
    recipe of that name (``finetune_folder``, ``finetune_folder.yaml``, ``recipes/finetune_folder.yaml``:
    :func:`uae.models.bundled.find_recipe`), so recipes work from any folder after ``pip install``.
    Inline YAML (``--config '{...}'``) is left to LightningCLI.

    Raises:
        MissingFileError: Neither a file nor a bundled recipe (one line naming the bundled ones).
    """
    from pathlib import Path

    if Path(value).expanduser().exists() or any(c in value for c in "{}:\n"):
        return value
    from uae.models.bundled import find_recipe

    return str(find_recipe(value))


def resolve_recipes(argv: Sequence[str]) -> list[str]:
    """``argv`` with each ``--config NAME`` / ``--config=NAME`` naming a bundled recipe replaced by its path."""
    out = list(argv)
    for i, arg in enumerate(out):
        if arg == "--config" and i + 1 < len(out):
            out[i + 1] = _recipe_path(out[i + 1])
        elif arg.startswith("--config="):
            out[i] = "--config=" + _recipe_path(arg.partition("=")[2])
    return out


def _run(subcommand: str, argv: Sequence[str]) -> int:
    argv = list(argv)
    if any(a in HELP_FLAGS for a in argv) and HELP_ALL not in argv:
        build_parser(subcommand).print_help(sys.stdout)
        return 0
    argv = ["--help" if a == HELP_ALL else a for a in resolve_recipes(argv)]
    from uae.commands.lightning_cli import fit_main, validate_main

    return (fit_main if subcommand == "fit" else validate_main)(argv)


def main(argv: Sequence[str]) -> int:
    """``uae fit``: the fast help, or LightningCLI's ``fit`` (:func:`uae.commands.lightning_cli.fit_main`)."""
    return _run("fit", argv)


def validate_main(argv: Sequence[str]) -> int:
    """``uae validate``: the fast help, or LightningCLI's ``validate`` (:func:`uae.commands.lightning_cli.validate_main`)."""
    return _run("validate", argv)
