"""Every recipe instantiates through LightningCLI with tiny overrides; fine-tuning runs end to end."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml

import uae
from uae.commands.lightning_cli import fit_main, make_cli
from uae.training import Stage1DecoderModule, Stage2SemanticModule, Stage3GANModule

RECIPES = Path(__file__).resolve().parents[1] / "recipes"
PAPER = {
    "stage1_decoder_dinov2_b.yaml": Stage1DecoderModule,
    "stage2_semantic_dinov2_b.yaml": Stage2SemanticModule,
    "stage3_gan_dinov2_b.yaml": Stage3GANModule,
    "stage1_decoder_dinov2_l.yaml": Stage1DecoderModule,
    "stage2_semantic_dinov2_l.yaml": Stage2SemanticModule,
    "stage3_gan_dinov2_l.yaml": Stage3GANModule,
}


pytestmark = pytest.mark.usefixtures("cli_one_thread")


def tiny_overrides(root: Path, out: Path, cls: type) -> list[str]:
    args = [
        "--model.model_name",
        "uae_test",
        "--model.pretrained",
        "null",
        "--model.encoder_weights",
        "null",
        "--model.lpips_weight",
        "0",
        "--model.export_dir",
        str(out / "export"),
        "--data.root",
        str(root),
        "--data.dataset",
        "folder",
        "--data.val_root",
        "null",
        "--data.num_workers",
        "0",
        "--data.batch_size",
        "2",
        "--data.pin_memory",
        "false",
        "--trainer.accelerator",
        "cpu",
        "--trainer.devices",
        "1",
        "--trainer.num_nodes",
        "1",
        "--trainer.strategy",
        "auto",
        "--trainer.precision",
        "32",
        "--trainer.max_steps",
        "2",
        "--trainer.default_root_dir",
        str(out),
        "--trainer.logger",
        "false",
        "--trainer.callbacks",
        "[]",
        "--trainer.enable_checkpointing",
        "false",
        "--trainer.val_check_interval",
        "2",
        "--trainer.limit_val_batches",
        "1",
    ]
    if cls is not Stage1DecoderModule:
        args += ["--model.teacher_weights", "null"]
    if cls is Stage3GANModule:
        args += ["--model.disc_weights", "null", "--model.disc_start", "1"]
    return args


# The image stages' recipes (the generators' ldm_*.yaml are tested in test_ldm_recipes.py).
ALL = sorted(p.name for p in RECIPES.glob("*.yaml") if not p.name.startswith("ldm_"))
STAGES = {c.__name__: c for c in (Stage1DecoderModule, Stage2SemanticModule, Stage3GANModule)}


def test_recipes_present():
    assert set(PAPER) | {"finetune_folder.yaml"} <= set(ALL)


def test_fit_help_names_every_bundled_recipe():
    from uae.commands.fit import build_parser

    text = build_parser("fit").format_help()
    stems = {p.stem for p in RECIPES.glob("*.yaml")}
    # the _l recipes are named as "(and _l)" after their _b siblings
    missing = [s for s in stems if s not in text and not (s.endswith("_l") and f"{s[:-2]}_b" in text)]
    assert not missing, missing


@pytest.mark.parametrize("name", sorted(PAPER) + ["finetune_folder.yaml"])
def test_recipe_header_documents_scale(name):
    path = RECIPES / name
    text = "\n".join(line for line in path.read_text().splitlines() if line.startswith("#"))
    for key in ("global batch", "steps", "hardware", "lr scaling"):
        assert key in text, f"{name} header lacks '{key}'"
    cfg = yaml.safe_load(path.read_text())
    t = cfg["trainer"]
    assert {"strategy", "devices", "num_nodes"} <= set(t)
    if name in PAPER:
        assert t["devices"] * t["num_nodes"] * cfg["data"]["batch_size"] in (32, 64, 512)
        assert cfg["model"]["class_path"] == f"uae.training.{PAPER[name].__name__}"


@pytest.mark.parametrize("name", ALL)
def test_recipe_instantiates_tiny(name, image_folder, tmp_path):
    path = RECIPES / name
    cfg = yaml.safe_load(path.read_text())
    cls = STAGES[cfg["model"]["class_path"].rsplit(".", 1)[-1]]
    cli = make_cli(["--config", str(path), *tiny_overrides(image_folder, tmp_path, cls)], run=False)
    assert type(cli.model) is cls
    assert cli.model.model.config.name == "uae_test"
    assert cli.trainer.max_steps == 2
    # The recipe's own settings survive the tiny overrides.
    assert cli.model.lr == pytest.approx(float(cfg["model"]["init_args"]["lr"]))
    if cls is Stage3GANModule:
        assert cli.model.ema is not None and cli.model.ema.decay == 0.9978
        assert cli.model.disc_weight == 0.75 and cli.model.automatic_optimization is False


def test_fsdp_strategy_of_large_recipes_parses():
    from jsonargparse import ArgumentParser
    from lightning.pytorch.strategies import FSDPStrategy, Strategy
    from timm.models.vision_transformer import Block

    for name in ("stage1_decoder_dinov2_l.yaml", "stage2_semantic_dinov2_l.yaml"):
        cfg = yaml.safe_load((RECIPES / name).read_text())
        parser = ArgumentParser()
        parser.add_argument("--strategy", type=Strategy)
        ns = parser.instantiate_classes(parser.parse_object({"strategy": cfg["trainer"]["strategy"]}))
        assert isinstance(ns.strategy, FSDPStrategy)
        assert cfg["model"]["init_args"]["ema_decay"] is None  # EMA is off under FSDP
        assert ns.strategy.kwargs["auto_wrap_policy"]._module_classes == {
            Block
        }  # one FSDP unit per ViT block
        assert ns.strategy.kwargs["use_orig_params"] is True  # Lightning's default; frozen teacher needs it


def test_finetune_folder_recipe_fits_and_exports(image_folder, tmp_path):
    torch.manual_seed(0)
    start = tmp_path / "pretrained"
    uae.create_model("uae_test").save_pretrained(start)
    out = tmp_path / "run"
    args = [
        "--config",
        str(RECIPES / "finetune_folder.yaml"),
        *tiny_overrides(image_folder, out, Stage1DecoderModule),
    ]
    args += ["--model.pretrained", str(start)]
    assert fit_main(args) == 0
    exported = uae.UAE.from_pretrained(out / "export")
    original = uae.UAE.from_pretrained(start)
    for k, v in exported.state_dict().items():
        if k.startswith("encoder."):
            assert torch.equal(v, original.state_dict()[k]), k  # the encoder stayed frozen
    assert any(
        not torch.equal(v, original.state_dict()[k])
        for k, v in exported.state_dict().items()
        if k.startswith("decoder.")
    )
    assert (out / "config.yaml").is_file()  # LightningCLI saved the resolved config


def test_missing_data_root_is_a_clear_error(tmp_path):
    args = [
        "--config",
        str(RECIPES / "finetune_folder.yaml"),
        "--model.model_name",
        "uae_test",
        "--model.pretrained",
        "null",
        "--trainer.accelerator",
        "cpu",
        "--data.root",
        str(tmp_path / "nope"),
    ]
    with pytest.raises(FileNotFoundError, match="does not exist"):
        make_cli(args, run=False)


def test_uae_fit_empty_folder_is_one_line_error_before_training(tmp_path, capsys):
    from uae.cli import main

    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("no images here")
    out = tmp_path / "run"
    args = ["fit", "--config", str(RECIPES / "finetune_folder.yaml")]
    args += tiny_overrides(tmp_path / "empty", out, Stage1DecoderModule)
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "uae fit: error: no images found in" in err and "empty" in err
    assert not (out / "export").exists()


def test_uae_validate_runs_on_a_folder(image_folder, tmp_path):
    start = tmp_path / "pretrained"
    uae.create_model("uae_test").save_pretrained(start)
    args = [
        "--config",
        str(RECIPES / "finetune_folder.yaml"),
        *tiny_overrides(image_folder, tmp_path, Stage1DecoderModule),
    ]
    args += ["--model.pretrained", str(start), "--data.val_fraction", "0.25"]
    cli = make_cli(["validate", *args])  # what `uae validate` runs
    psnr = float(cli.trainer.callback_metrics["val/psnr"])
    assert 0 < psnr < 60 and cli.trainer.global_step == 0
