"""Every README code block runs (or, when marked as needing network/weights, at least compiles),
and the README's two set-up commands are exactly what CI runs.

Bash blocks with ``uae`` commands carry a marker saying how they are checked:

* ``<!-- readme-test: run -->``: each command runs here as written (offline, seconds);
* ``<!-- readme-test: plan (why) -->``: ``uae bench`` commands that take minutes; the test runs them with
  ``--plan`` (the processes, estimated time and memory they print before running), and
  ``tests/test_benchmarks.py`` runs the same code on a tiny model;
* ``<!-- readme-test: needs (what) -->``: commands that need data, weights, hardware or a server, which
  the marker names (and the README's text says before the block);
* no marker: the set-up blocks (``pip install``), whose ``uae`` command runs as the main job.
"""

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
OUTPUT_FLAGS = ("--out", "--output", "--out-dir")


def _made_before(argv: list[str]) -> list[list[str]]:
    """The commands of ``argv``'s block before it whose outputs ``argv`` reads (``uae pack`` then ``uae eval``
    of the pack): each test runs them first, in its own folder, so the tests stay independent."""
    for mark, body in _blocks("bash"):
        cmds = _uae_commands(body) if mark.startswith("run") else []
        if argv in cmds:
            earlier = cmds[: cmds.index(argv)]
            return [
                c for c in earlier if any(c[i + 1] in argv for i, a in enumerate(c[:-1]) if a in OUTPUT_FLAGS)
            ]
    return []


PLAN_COMMANDS = [c for mark, body in _blocks("bash") if mark.startswith("plan") for c in _uae_commands(body)]
MAIN_JOB = [c for _, body in _blocks("bash") if "pip install" in body for c in _uae_commands(body)]


@pytest.mark.parametrize("argv", RUN_COMMANDS + MAIN_JOB, ids=lambda a: " ".join(a[:2]))
def test_bash_uae_commands_run(argv: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from uae.cli import main

    for name in ("tests", "checkpoints", "recipes"):
        (tmp_path / name).symlink_to(ROOT / name)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))  # the same answer on every machine
    for before in _made_before(argv):
        assert main(before) == 0, before
    assert main(argv) == 0
    outs = [argv[i + 1] for i, a in enumerate(argv) if a in OUTPUT_FLAGS]
    for out in outs:
        assert (tmp_path / out).exists(), out


@pytest.mark.parametrize("argv", PLAN_COMMANDS, ids=lambda a: " ".join(a[:3]))
def test_bench_commands_say_how_long_and_how_much_memory(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    from uae.cli import main

    assert argv[0] == "bench", "only uae bench commands are checked by their plan"
    if "cuda" in argv:
        import torch

        if not torch.cuda.is_available():
            pytest.skip("plans a CUDA run: needs a CUDA GPU")
    assert main([*argv, "--plan"]) == 0
    out = capsys.readouterr().out
    assert re.search(
        r"processes, one after the other .* estimated about \d+ (s|min) and at most ~[\d.]+ (MiB|GiB)", out
    ), out


def test_every_uae_command_says_how_it_runs() -> None:
    """A bash block with a ``uae`` command runs here, or is a bench plan, or names what it needs."""
    for mark, body in _blocks("bash"):
        if not _uae_commands(body) or "pip install" in body:
            continue
        kind = mark.split(" ")[0]
        assert kind in ("run", "plan", "needs"), f"README bash block without a readme-test marker:\n{body}"
        if kind != "run":
            assert re.search(r"\(.+\)", mark), f"a '{kind}' marker must say what/why in brackets: {mark}"


def test_main_job_and_runnable_blocks_found() -> None:
    assert MAIN_JOB and MAIN_JOB[0][0] == "reconstruct"
    assert len(RUN_COMMANDS) >= 8
    assert {c[0] for c in RUN_COMMANDS} >= {
        "reconstruct",
        "eval",
        "probe",
        "spectrum",
        "filtered-eval",
        "encode",
    }
    assert [c[:2] for c in PLAN_COMMANDS][0] == ["bench", "--quick"]
