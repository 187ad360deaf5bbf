"""``uae fit`` as a user meets it: resume options, one-line errors, hardware defaults, export card, quiet output."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import one_line_error

import uae
from uae.cli import main
from uae.commands.lightning_cli import make_cli
from uae.training.callbacks import StepProgressBar
from uae.training.precision import select_precision

RECIPES = Path(__file__).resolve().parents[1] / "recipes"
FINETUNE = str(RECIPES / "finetune_folder.yaml")


pytestmark = pytest.mark.usefixtures("cli_one_thread")


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


def test_pretrained_takes_a_registered_name_so_an_installed_package_can_fine_tune(
    image_folder, tmp_path, monkeypatch
):
    monkeypatch.chdir(tmp_path)  # no checkpoints/ folder here: the name resolves to the package's weights
    cli = make_cli(
        ["--config", FINETUNE, "--model.pretrained", "uae_demo", "--data.root", str(image_folder)],
        run=False,
    )
    want = uae.create_model("uae_demo", pretrained=True).state_dict()
    got = cli.model.model.state_dict()
    assert got.keys() == want.keys() and all(torch.equal(got[k], want[k]) for k in want)
    assert cli.model.model.training and any(p.requires_grad for p in cli.model.model.parameters())


def test_pretrained_refuses_a_registered_generator(image_folder, tmp_path, capsys):
    args = tiny(image_folder, tmp_path, "--model.pretrained", "dit_dh_test")
    one_line_error(capsys, main(["fit", *args]), "not a tokenizer", "--model.pretrained")


def test_no_logger_runs_the_recipe_without_its_learning_rate_monitor(image_folder, start, tmp_path):
    args = ["--config", FINETUNE, "--model.pretrained", str(start), "--data.root", str(image_folder)]
    args += ["--data.batch_size", "2", "--data.num_workers", "0", "--trainer.max_steps", "1"]
    args += [
        "--trainer.logger",
        "false",
        "--trainer.default_root_dir",
        str(tmp_path),
        "--trainer.limit_val_batches",
        "1",
    ]
    args += ["--trainer.enable_progress_bar", "false", "--model.log_images_every_n_steps", "0"]
    assert main(["fit", *args]) == 0  # Lightning refuses a LearningRateMonitor without a logger
    assert (tmp_path / "export" / "model.safetensors").is_file()


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
    # local folders are named by their last component only: a card must not carry this machine's paths
    assert f"Fine-tuned with `uae fit` from **`local folder {start.name}`**" in card
    assert "stage 1 (`uae.training.Stage1DecoderModule`)" in card and "`finetune_folder.yaml`" in card
    assert f"folder `{image_folder.name}`: 6 training images, 2 validation images" in card
    assert "2 optimizer steps" in card and "EMA (decay 0.999)" in card
    assert f"initial weights: `local folder {start.name} (frozen)`" in card
    assert "PSNR" in card and "Not evaluated" not in card
    assert str(tmp_path) not in card and str(image_folder) not in card
    from uae.models.card import check_card

    data = check_card(card).data  # the Hub's parser reads it; no local path anywhere
    assert data.base_model is None  # a local start is no Hub repo id
    assert "dinov2" not in data.tags  # random-init test encoder
    (psnr,) = data.eval_results
    assert psnr.metric_type == "psnr" and psnr.source_name is None  # measured by uae itself
    assert psnr.dataset_type == "imagefolder" and psnr.metric_value > 0
    named = tmp_path / "named"
    more = ["--model.pretrained", str(start), "--model.export_name", "my_uae", "--trainer.max_steps", "1"]
    assert main(["fit", *tiny(image_folder, named, *more)]) == 0
    assert uae.UAE.from_pretrained(named / "export").config.name == "my_uae"


def test_a_finetune_of_registered_weights_names_their_repo_and_license(image_folder, tmp_path, monkeypatch):
    from uae.models.card import check_card
    from uae.training.card import _registered_start

    # released weights: their Hub repo is the base model and their license carries over
    assert _registered_start("rae_base_p14_dinov2_vitxl.rae") == {
        "license": "mit",
        "base_model": "nyu-visionx/RAE-collections",
    }
    assert _registered_start("uae_base_p14_dinov2.authors_v2")["base_model"] == "weepiess2383/UAE"
    assert _registered_start("uae_test") == {}  # no weights
    assert _registered_start("org/repo") == {}
    monkeypatch.chdir(tmp_path)
    args = tiny(image_folder, tmp_path / "run", "--model.pretrained", "uae_demo", "--trainer.max_steps", "1")
    assert main(["fit", *args]) == 0
    card = check_card((tmp_path / "run" / "export" / "README.md").read_text())
    assert card.data.license == "apache-2.0" and card.data.base_model is None  # the demo is not on the Hub
    assert "Fine-tuned with `uae fit` from **`uae_demo`**" in card.text


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


# ---------------------------------------------------------------------------------------------- messages
class _Payload:
    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (exec, (f"open({self.marker!r}, 'w').close()",))


def test_pickled_encoder_weights_say_the_real_cause(image_folder, start, tmp_path, capsys):
    marker = tmp_path / "PAYLOAD_RAN"
    evil = tmp_path / "evil.pth"
    torch.save({"state_dict": _Payload(marker)}, evil)
    args = tiny(
        image_folder, tmp_path, "--model.pretrained", str(start), "--model.encoder_weights", str(evil)
    )
    assert main(["fit", *args]) == 2
    err = [line for line in capsys.readouterr().err.strip().splitlines() if not line.startswith("INFO ")]
    assert len(err) == 1 and "evil.pth" in err[0] and "weights_only=True" in err[0], err
    assert "Union subtypes" not in err[0] and not marker.exists()


@pytest.mark.skipif(
    importlib.util.find_spec("tensorboard") is not None
    or importlib.util.find_spec("tensorboardX") is not None,
    reason="TensorBoard is installed",
)
@pytest.mark.parametrize("more", [["--trainer.logger.save_dir", "x"], []], ids=["save_dir", "no_save_dir"])
def test_tensorboard_logger_without_tensorboard_says_what_to_install(
    image_folder, start, tmp_path, capsys, more
):
    args = tiny(image_folder, tmp_path, "--model.pretrained", str(start))
    args += ["--trainer.logger", "lightning.pytorch.loggers.TensorBoardLogger", *more]
    assert main(["fit", *args]) == 2
    err = [line for line in capsys.readouterr().err.strip().splitlines() if not line.startswith("INFO ")]
    assert len(err) == 1 and "pip install 'uae[tensorboard]'" in err[0], err


def test_a_logger_chosen_without_save_dir_writes_in_the_runs_logs_folder(image_folder, start, tmp_path):
    from uae.commands.lightning_cli import with_run_folder_logger

    args = tiny(image_folder, tmp_path, "--model.pretrained", str(start))
    at = args.index("--trainer.logger")
    del args[at : at + 2]  # tiny() turns the logger off
    assert main(["fit", *args, "--trainer.logger=CSVLogger"]) == 0  # Lightning requires save_dir
    assert list((tmp_path / "logs").glob("version_0/metrics.csv"))
    assert not (tmp_path / "lightning_logs").exists()
    # given ones and other loggers are left alone
    for given in (
        ["--trainer.logger", "CSVLogger", "--trainer.logger.save_dir", "mine"],
        ["--trainer.logger", "WandbLogger"],
        ["--trainer.logger", "false"],
    ):
        assert with_run_folder_logger(given) == given


def test_lightning_misconfiguration_is_one_line(image_folder, start, tmp_path, capsys):
    args = tiny(image_folder, tmp_path, "--model.pretrained", str(start))
    args += ["--trainer.gradient_clip_algorithm", "bogus"]  # a str to jsonargparse, refused by Lightning
    assert main(["fit", *args]) == 2
    err = [line for line in capsys.readouterr().err.strip().splitlines() if not line.startswith("INFO ")]
    assert len(err) == 1 and "invalid trainer configuration" in err[0] and "bogus" in err[0], err


# ---------------------------------------------------------------------------------------------- runs
def recipe_run(root: Path, out: Path, start: Path, *more: str) -> list[str]:
    """The fine-tune recipe as a user runs it: its own callbacks and logger, a short step budget."""
    args = ["--config", FINETUNE, "--model.pretrained", str(start), "--model.log_images_every_n_steps", "0"]
    args += ["--data.root", str(root), "--data.batch_size", "2", "--data.num_workers", "0"]
    args += ["--data.val_fraction", "0.25", "--trainer.accelerator", "cpu", "--trainer.max_steps", "6"]
    args += ["--trainer.default_root_dir", str(out), "--trainer.limit_val_batches", "1"]
    args += ["--trainer.num_sanity_val_steps", "0"]
    return [*args, *more]


def test_each_run_writes_only_inside_its_own_folder(image_folder, start, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for name in ("cats", "dogs"):
        assert main(["fit", *recipe_run(image_folder, tmp_path / "runs" / name, start)]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["images", "parent", "runs"]  # nothing in the cwd
    for name in ("cats", "dogs"):
        run = tmp_path / "runs" / name
        assert sorted(p.name for p in run.iterdir()) == ["checkpoints", "export", "logs"]
        ckpts = sorted(p.name for p in (run / "checkpoints").iterdir())
        assert "last.ckpt" in ckpts and not any(c.startswith("last-v") for c in ckpts), ckpts
        assert json.loads((run / "export" / "config.json").read_text())["name"] == name
        assert list((run / "logs").glob("version_0/metrics.csv"))


def test_short_finetune_validates_saves_best_and_warms_up_with_the_budget(image_folder, start, tmp_path):
    out = tmp_path / "run"
    cli = make_cli(["fit", *recipe_run(image_folder, out, start)])
    trainer = cli.trainer
    assert trainer.global_step == 6
    assert trainer.val_check_interval == 1  # the recipe's 500 is longer than the run: a tenth of it
    assert "val/psnr" in trainer.callback_metrics  # validation ran
    best = [cb for cb in trainer.checkpoint_callbacks if cb.monitor == "val/psnr"]
    assert best and Path(best[0].best_model_path).is_file() and best[0].best_model_path.startswith(str(out))
    assert cli.model.warmup() == 0  # 4 % of 6 steps (the recipe's 200 steps would never end)
    bars = [cb for cb in trainer.callbacks if isinstance(cb, StepProgressBar)]
    assert bars and bars[0].train_progress_bar.total == 6  # steps over the run, not the epoch's batches
    csv = (out / "logs" / "version_0" / "metrics.csv").read_text()
    assert "val/psnr" in csv.splitlines()[0]


def test_warmup_ratio_scales_with_the_run():
    from uae.training import Stage1DecoderModule

    module = Stage1DecoderModule(model_name="uae_test", warmup_ratio=0.04)
    module.total_steps = lambda: 5000  # type: ignore[method-assign]
    assert module.warmup() == 200
    module.total_steps = lambda: 150  # type: ignore[method-assign]
    assert module.warmup() == 6
    module.warmup_steps = 50  # explicit steps win
    assert module.warmup() == 50
