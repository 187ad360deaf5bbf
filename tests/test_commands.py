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
        "--config recipes/",
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
