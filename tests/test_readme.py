"""Every README code block runs (or, when marked as needing network/weights, at least compiles),
and the README's two set-up commands are exactly what CI runs."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
BLOCK = re.compile(r"(<!-- readme-test: (?P<mark>[^>]*?) -->\n)?```(?P<lang>\w*)\n(?P<body>.*?)```", re.S)


def _blocks(lang: str) -> list[tuple[str, str]]:
    return [(m["mark"] or "", m["body"]) for m in BLOCK.finditer(README) if m["lang"] == lang]


PYTHON_BLOCKS = _blocks("python")


@pytest.mark.parametrize("index", range(len(PYTHON_BLOCKS)))
def test_python_block(index: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    mark, body = PYTHON_BLOCKS[index]
    code = compile(body, f"README.md[python block {index}]", "exec")
    if mark.startswith("skip"):
        assert "(" in mark, "a skipped README block must say why"
        return
    for name in ("tests", "checkpoints", "recipes"):  # blocks refer to repo files; outputs go to tmp
        (tmp_path / name).symlink_to(ROOT / name)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MPLBACKEND", "Agg")
    exec(code, {"__name__": "__readme__"})


def test_setup_commands_match_ci() -> None:
    ci = (ROOT / ".ci" / "run").read_text()
    bash = [b for _, b in _blocks("bash")]
    install = "pip install -e '.[dev]'"
    test_cmd = "python -m pytest -q"
    assert install in ci and test_cmd in ci
    setup = [b for b in bash if install in b]
    assert len(setup) >= 2, "README must show the two set-up commands"
    assert any(b.strip().endswith(test_cmd) for b in setup)


def test_cli_commands_in_readme_are_known() -> None:
    from uae.cli import COMMANDS

    for _, body in _blocks("bash"):
        for line in body.replace("\\\n", " ").splitlines():
            for part in line.split("&&"):
                words = shlex.split(part.strip(), comments=True)
                if words and words[0] == "uae":
                    assert words[1] in COMMANDS or words[1].startswith("-"), part


def _uae_commands(body: str) -> list[list[str]]:
    cmds = []
    for line in body.replace("\\\n", " ").splitlines():
        for part in line.split("&&"):
            words = shlex.split(part.strip(), comments=True)
            if words and words[0] == "uae":
                cmds.append(words[1:])
    return cmds


RUN_COMMANDS = [c for mark, body in _blocks("bash") if mark.startswith("run") for c in _uae_commands(body)]
MAIN_JOB = [c for _, body in _blocks("bash") if "pip install" in body for c in _uae_commands(body)]


@pytest.mark.parametrize("argv", RUN_COMMANDS + MAIN_JOB, ids=lambda a: " ".join(a[:2]))
def test_bash_uae_commands_run(argv: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from uae.cli import main

    for name in ("tests", "checkpoints", "recipes"):
        (tmp_path / name).symlink_to(ROOT / name)
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 0
    outs = [argv[i + 1] for i, a in enumerate(argv) if a == "--out"]
    for out in outs:
        assert (tmp_path / out).exists()


def test_main_job_and_runnable_blocks_found() -> None:
    assert MAIN_JOB and MAIN_JOB[0][0] == "reconstruct"
    assert len(RUN_COMMANDS) >= 3
