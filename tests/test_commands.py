"""The ``uae`` sub-commands (uae.commands): one module each, fast ``--help`` without torch."""

from __future__ import annotations

import argparse
import importlib
import subprocess
import sys
from pathlib import Path

import pytest

from uae.cli import COMMANDS, main

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "lightning", "timm", "PIL", "numpy", "gradio")

_PROBE = """
import sys
from uae.cli import main
try:
    rc = main([{name!r}, "--help"])
except SystemExit as e:
    rc = e.code
assert rc in (0, None), rc
heavy = [m for m in {heavy!r} if m in sys.modules]
assert not heavy, heavy
print("ok")
"""


@pytest.mark.parametrize("name", list(COMMANDS))
def test_help_imports_no_heavy_library(name):
    """``uae <command> --help`` prints help and never imports torch / Lightning / timm / PIL / numpy / gradio."""
    proc = subprocess.run(
        [sys.executable, "-c", _PROBE.format(name=name, heavy=HEAVY)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert f"uae {name}" in proc.stdout  # the command's own help, not the top-level usage
    assert proc.stdout.rstrip().endswith("ok")


@pytest.mark.parametrize("name", list(COMMANDS))
def test_every_command_has_a_light_module(name):
    module, func, _ = COMMANDS[name]
    assert module.startswith("uae.commands.")
    mod = importlib.import_module(module)
    assert callable(getattr(mod, func))
    parser = mod.build_parser(name) if name in ("fit", "validate") else mod.build_parser()
    assert isinstance(parser, argparse.ArgumentParser)
    assert parser.prog == f"uae {name}"


def test_evaluation_cli_module_is_gone():
    with pytest.raises(ModuleNotFoundError):
        importlib.import_module("uae.evaluation.cli")


@pytest.mark.parametrize("name", ["fit", "validate"])
def test_fit_fast_help_explains_usage(name, capsys):
    assert main([name, "--help"]) == 0
    out = capsys.readouterr().out
    for word in (
        "--config <recipe name or file.yaml>",
        "--data.root",
        "--model.",
        "--trainer.",
        "--ckpt_path",
        "--print_config",
    ):
        assert word in out, word
    assert f"uae {name} --help-all" in out


def test_fit_help_all_reaches_lightningcli(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["fit", "--help-all"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    # LightningCLI's generated options, which the fast help does not list
    assert "--trainer.max_epochs" in out
    assert "--help-all" not in out


# ---------------------------------------------------------------------------------- quiet, honest output
LABELLED = ROOT / "tests" / "assets_labelled"
NOISE = ("💡 Tip", "GPU available", "TPU available", "LeafSpec", "`Trainer.fit` stopped")


def test_probe_reports_chance_and_no_trivial_top_k(tmp_path, capfd):
    out = tmp_path / "probe.json"
    argv = ["probe", "--model", "uae_test", "--random-init", "--data", str(LABELLED), "--val-fraction", "0.5"]
    argv += ["--epochs", "2", "--no-progress", "--output", str(out), "--cache-dir", str(tmp_path / "f")]
    assert main(argv) == 0
    printed = capfd.readouterr()
    text = printed.out + printed.err
    assert "chance level: 50.0 % (1/2)" in text
    assert "most frequent training class" in text and "% of val" in text
    header = next(line for line in printed.out.splitlines() if line.startswith("band"))
    assert "top1 %" in header and "top2" not in header and "top5" not in header
    for noise in NOISE:
        assert noise not in text, noise
    import json

    res = json.loads(out.read_text())["bands"]["0"]
    assert res["chance"] == 0.5 and res["top5"] is None and 0 <= res["majority_rate"] <= 1


def test_lars_note_explains_an_underfit_head():
    from uae.commands.probe import lars_note

    small = {
        "optimizer": "lars",
        "epochs": 90,
        "num_train": 36,
        "batch_size": 36,
        "lr": 0.1,
        "train_top1": 0.55,
    }
    assert "may underfit" in lars_note(small, None) and "90 steps" in lars_note(small, None)
    mae = {**small, "num_train": 1_281_167, "batch_size": 16384, "lr": 6.4}  # MAE's ImageNet protocol
    assert lars_note(mae, None) is None
    assert lars_note({**small, "optimizer": "sgd"}, None) is None


def test_quiet_trainer_drops_advice_but_not_warnings(caplog):
    import logging
    import warnings

    from uae.evaluation.probe import quiet_trainer

    log = logging.getLogger("lightning.pytorch.utilities.rank_zero")
    with caplog.at_level(logging.INFO), warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        with quiet_trainer():
            log.info("GPU available: False, used: False")
            log.warning("a real Lightning warning")
            warnings.warn(
                "`isinstance(treespec, LeafSpec)` is deprecated, use ...", FutureWarning, stacklevel=1
            )
            warnings.warn("a real user warning", UserWarning, stacklevel=1)
        log.info("after the block: info shows again")
    messages = [r.getMessage() for r in caplog.records]
    assert "GPU available: False, used: False" not in messages
    assert "a real Lightning warning" in messages and "after the block: info shows again" in messages
    assert [str(w.message) for w in seen] == ["a real user warning"]


def test_fit_filters_the_leafspec_warning_only():
    import warnings

    from uae.training.quiet import quiet_lightning

    with warnings.catch_warnings(record=True) as seen:
        warnings.resetwarnings()  # without pytest's own filters (its config ignores the same message)
        warnings.simplefilter("always")
        quiet_lightning()
        warnings.warn("`isinstance(treespec, LeafSpec)` is deprecated, use ...", FutureWarning, stacklevel=1)
        warnings.warn("another FutureWarning", FutureWarning, stacklevel=1)
    assert [str(w.message) for w in seen] == ["another FutureWarning"]


def test_eval_prints_each_unavailable_metric_once(tmp_path, capfd, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))  # no LPIPS / Inception weights here
    out = tmp_path / "eval.json"
    argv = ["eval", "--model", "uae_test", "--random-init", "--data", str(ROOT / "tests" / "assets")]
    assert main([*argv, "--no-progress", "--output", str(out)]) == 0
    printed = capfd.readouterr()
    text = printed.out + printed.err
    assert text.count("LPIPS needs the torchvision vgg backbone weights") == 1, text
    assert text.count("Inception weights for rFID not found") == 1, text
    assert "--inception-weights PATH" in printed.out  # the note names the flag


def test_other_metric_warnings_still_show(caplog):
    import logging

    from uae.commands._report import notes_instead_of_warnings

    log = logging.getLogger("uae.evaluation.metrics")
    with caplog.at_level(logging.WARNING), notes_instead_of_warnings():
        log.warning("LPIPS unavailable: %s", "no weights")
        log.warning("images of different sizes: resized")
    assert [r.getMessage() for r in caplog.records] == ["images of different sizes: resized"]


def test_spectrum_leaves_out_an_encoder_without_weights(tmp_path, capsys):
    import json

    from uae.errors import MissingFileError
    from uae.evaluation.spectrum import latent_spectra
    from uae.factory import create_model

    out = tmp_path / "spec"
    argv = ["spectrum", "--model", "uae_demo", "--data", str(ROOT / "tests" / "assets"), "--no-progress"]
    assert main([*argv, "--encoders", "uae", "teacher", "--out-dir", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "teacher: skipped - the teacher needs a DINOv2 checkpoint: pass --teacher-weights PATH" in printed
    summary = json.loads((out / "spectrum.json").read_text())
    assert [r["encoder"] for r in summary["encoders"]] == ["uae"] and set(summary["skipped"]) == {"teacher"}
    model = create_model("uae_demo", pretrained=True)
    with pytest.raises(MissingFileError, match="teacher_weights"):  # the library raises unless asked to skip
        latent_spectra(model, str(ROOT / "tests" / "assets"), encoders=("uae", "teacher"))
