"""``uae fit`` as a user meets it: resume options, one-line errors, hardware defaults, export card, quiet output."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import uae
from uae.cli import main
from uae.commands.lightning_cli import make_cli
from uae.training.precision import select_precision

RECIPES = Path(__file__).resolve().parents[1] / "recipes"
FINETUNE = str(RECIPES / "finetune_folder.yaml")


@pytest.fixture(autouse=True)
def _one_thread(monkeypatch):
    monkeypatch.setattr("sys.argv", ["uae"])
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def start(tmp_path) -> Path:
    torch.manual_seed(0)
    path = tmp_path / "parent"
    uae.create_model("uae_test").save_pretrained(path)
    return path


def tiny(root: Path, out: Path, *more: str, checkpoints: bool = False) -> list[str]:
    args = ["--config", FINETUNE, "--model.lpips_weight", "0", "--model.log_images_every_n_steps", "0"]
    args += ["--model.export_dir", str(out / "export"), "--data.root", str(root), "--data.batch_size", "2"]
    args += ["--data.num_workers", "0", "--trainer.accelerator", "cpu", "--trainer.precision", "32"]
    args += ["--trainer.max_steps", "2", "--trainer.default_root_dir", str(out), "--trainer.logger", "false"]
    args += ["--trainer.limit_val_batches", "1", "--trainer.val_check_interval", "2"]
    args += ["--trainer.enable_progress_bar", "false", "--trainer.num_sanity_val_steps", "0"]
    if checkpoints:
        cb = {
            "class_path": "lightning.pytorch.callbacks.ModelCheckpoint",
            "init_args": {"dirpath": str(out / "ckpt"), "save_last": True, "every_n_train_steps": 1},
        }
        args += ["--trainer.callbacks", json.dumps([cb])]
    else:
        args += ["--trainer.callbacks", "[]", "--trainer.enable_checkpointing", "false"]
    return [*args, *more]


# ---------------------------------------------------------------------------------------------- resume
def test_resume_refuses_changed_training_options_and_applies_export_dir(
    image_folder, start, tmp_path, capsys
):
    out = tmp_path / "run"
    assert main(["fit", *tiny(image_folder, out, "--model.pretrained", str(start), checkpoints=True)]) == 0
    last = out / "ckpt" / "last.ckpt"
    # No --model.pretrained: the recipe's "???" takes the checkpoint's value on resume.
    resume = ["--ckpt_path", str(last), "--trainer.max_steps", "3"]

    capsys.readouterr()
    args = tiny(
        image_folder, out, *resume, "--model.lr", "1e-3", "--model.ema_decay", "0.5", checkpoints=True
    )
    assert main(["fit", *args]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("uae fit: error: resuming"), err
    assert "model.lr (5e-05 in the checkpoint, 0.001 given)" in err[0] and "model.ema_decay" in err[0]

    other = (
        tmp_path / "other_run"
    )  # the export goes where the resumed run says, not to the first run's folder
    before = (out / "export" / "model.safetensors").read_bytes()
    args = tiny(image_folder, out, *resume, "--model.export_dir", str(other / "export"), checkpoints=True)
    assert main(["fit", *args]) == 0
    assert "Resuming with model.export_dir" in capsys.readouterr().err
    assert (other / "export" / "model.safetensors").is_file()
    assert (out / "export" / "model.safetensors").read_bytes() == before
    assert torch.load(last, map_location="cpu", weights_only=True)["global_step"] == 3


# ---------------------------------------------------------------------------------------------- errors
def test_bad_pretrained_gives_the_real_cause(image_folder, tmp_path, capsys):
    args = tiny(image_folder, tmp_path, "--model.pretrained", str(tmp_path / "no_such_model"))
    assert main(["fit", *args]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no_such_model" in err[0] and "Union subtypes" not in err[0], err


def test_finetune_recipe_requires_pretrained(image_folder, tmp_path, capsys):
    assert main(["fit", *tiny(image_folder, tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "pass --model.pretrained" in err[0], err
    assert not (tmp_path / "export").exists()


def test_unreadable_validation_split_is_an_error_before_training(image_folder, start, tmp_path, capsys):
    val = tmp_path / "val"
    val.mkdir()
    for i in range(2):
        (val / f"broken{i}.png").write_bytes(b"not a png at all")
    args = tiny(image_folder, tmp_path / "run", "--model.pretrained", str(start), "--data.val_root", str(val))
    assert main(["fit", *args]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("uae fit: error: none of the 2 validation images") and str(val) in err[-1], err
    assert not (tmp_path / "run" / "export").exists()


# ---------------------------------------------------------------------------------------------- hardware
@pytest.mark.parametrize(
    ("cuda", "bf16", "accelerator", "fp16_ok", "expected"),
    [
        (True, True, "auto", True, "bf16-mixed"),
        (True, True, "gpu", False, "bf16-mixed"),
        (True, False, "auto", True, "16-mixed"),
        (True, False, "cuda", False, "32-true"),  # stage 3 cannot use fp16 loss scaling
        (True, True, "cpu", True, "32-true"),
        (False, False, "auto", True, "32-true"),
    ],
)
def test_precision_from_the_hardware(monkeypatch, cuda, bf16, accelerator, fp16_ok, expected):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: bf16)
    assert select_precision(accelerator, fp16_ok) == expected


def test_cli_precision_auto_unless_set(image_folder, start, tmp_path, monkeypatch):
    base = tiny(image_folder, tmp_path, "--model.pretrained", str(start))
    i = base.index("--trainer.precision")
    unset = base[:i] + base[i + 2 :]
    assert make_cli(unset, run=False).trainer.precision == "32-true"  # CPU
    monkeypatch.setattr("uae.commands.lightning_cli.select_precision", lambda *a, **k: "bf16-mixed")
    assert make_cli(unset, run=False).trainer.precision == "bf16-mixed"
    assert make_cli(base, run=False).trainer.precision == "32-true"  # --trainer.precision 32 wins


def test_workers_from_the_cpus(monkeypatch, image_folder):
    from uae.data import UAEDataModule
    from uae.data import datamodule as dm_mod

    monkeypatch.setattr(dm_mod, "available_cpus", lambda: 32)
    assert dm_mod.auto_num_workers(1, "gpu") == 8 and dm_mod.auto_num_workers(8, "gpu") == 3
    assert dm_mod.auto_num_workers(1, "cpu") == 2
    monkeypatch.setattr(dm_mod, "available_cpus", lambda: 2)
    assert dm_mod.auto_num_workers(1, "gpu") == 1 and dm_mod.auto_num_workers(1, "cpu") == 0
    assert UAEDataModule(str(image_folder), image_size=32).resolved_num_workers() == 0  # CPU, 2 cores
    assert UAEDataModule(str(image_folder), image_size=32, num_workers=3).resolved_num_workers() == 3


# ---------------------------------------------------------------------------------------------- export
def test_finetuned_export_has_its_own_name_and_card(image_folder, start, tmp_path):
    out = tmp_path / "cats"
    args = tiny(image_folder, out, "--model.pretrained", str(start), "--data.val_fraction", "0.25")
    assert main(["fit", *args]) == 0
    export = out / "export"
    assert json.loads((export / "config.json").read_text())["name"] == "cats"
    card = (export / "README.md").read_text()
    assert "# cats" in card and "# uae_test" not in card
    assert f"Fine-tuned with `uae fit` from **`{start}`**" in card
    assert "stage 1 (`uae.training.Stage1DecoderModule`)" in card and "`finetune_folder.yaml`" in card
    assert f"folder `{image_folder}`: 6 training images, 2 validation images" in card
    assert "2 optimizer steps" in card and "EMA (decay 0.999)" in card
    assert f"init `{start} (frozen)`" in card
    assert "PSNR" in card and "Not evaluated" not in card
    named = tmp_path / "named"
    more = ["--model.pretrained", str(start), "--model.export_name", "my_uae", "--trainer.max_steps", "1"]
    assert main(["fit", *tiny(image_folder, named, *more)]) == 0
    assert uae.UAE.from_pretrained(named / "export").config.name == "my_uae"


# ---------------------------------------------------------------------------------------------- quiet
def test_uae_fit_output_has_no_lightning_advice_but_keeps_real_warnings(image_folder, start, tmp_path):
    out = tmp_path / "run"
    (out / "ckpt").mkdir(parents=True)
    (out / "ckpt" / "old.txt").write_text("a file from another run")  # -> a real Lightning warning
    args = tiny(image_folder, out, "--model.pretrained", str(start), checkpoints=True)
    i = args.index("--data.num_workers")
    args = args[:i] + args[i + 2 :]  # workers from the hardware
    args += ["--trainer.logger", "true", "--trainer.log_every_n_steps", "50"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.run(
        [sys.executable, "-m", "uae.cli", "fit", *args],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-3000:]
    for advice in (
        "💡",
        "Tip:",
        "TPU available",
        "HPU available",
        "smaller than the logging interval",
        "does not have many workers",
        "pin_memory",
        "module(s) in eval mode at the start",
        "Seed set to",  # the seed is in the run's config.yaml
        "Trainable params",  # the model-summary table: one line instead
        "Epoch 0",  # the epoch bar: one bar in steps instead
    ):
        assert advice not in log, (advice, log[-3000:])
    assert "exists and is not empty" in proc.stderr  # real warnings still reach the user
    assert "parameters train" in log  # the one-line summary
    gpu = "GPU available: True" if torch.cuda.is_available() else "GPU available: False, used: False"
    assert (gpu in log) == torch.cuda.is_available()  # the GPU line only where there is a GPU


def test_resume_changes_sorts_applied_and_refused_options():
    from uae.training.resume import REQUIRED, resume_changes

    saved = {"lr": 5e-05, "betas": (0.9, 0.95), "warmup_steps": 200, "export_dir": "a", "pretrained": "p"}
    given = {
        "lr": 5e-05,
        "betas": [0.9, 0.95],
        "warmup_steps": 200.0,
        "export_dir": "b",
        "pretrained": REQUIRED,
    }
    assert resume_changes(saved, given) == ({"export_dir": "b"}, [])  # lists vs tuples, 200 vs 200.0 alike
    changes = resume_changes(saved, {**given, "lr": 1e-3, "new_option": 1})
    assert changes.refused == [("lr", 5e-05, 1e-3)] and changes.applied == {"export_dir": "b"}


def test_bad_model_option_names_the_flag(image_folder, start, tmp_path, capsys):
    args = tiny(image_folder, tmp_path, "--model.pretrained", str(start), "--model.ema_decay", "1.5")
    assert main(["fit", *args]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["uae fit: error: --model.ema_decay must be in (0, 1) or None, got 1.5"], err
