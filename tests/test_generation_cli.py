"""``uae generate``: PNGs + a labelled grid, one-line errors, and sample folders that do not depend on the number
of processes (1 process vs ``torchrun`` with 2 CPU processes on gloo: identical files) and resume."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import uae
from uae.cli import main as cli_main
from uae.errors import InputError
from uae.generation.pipeline import GenerationPipeline
from uae.generation.sample_folder import MANIFEST_NAME, read_manifest, sample_name, write_sample_folder
from uae.generation.seeds import image_labels, image_seed

ROOT = Path(__file__).resolve().parents[1]
TINY = [
    "--model",
    "dit_dh_test",
    "--tokenizer",
    "uae_test",
    "--random-init",
    "--device",
    "cpu",
    "--no-progress",
]


@pytest.fixture(scope="module")
def saved(tmp_path_factory) -> tuple[Path, Path]:
    """A tiny generator and tokenizer as save_pretrained folders (what other processes can load)."""
    root = tmp_path_factory.mktemp("models")
    torch.manual_seed(3)
    uae.create_model("dit_dh_test").save_pretrained(root / "gen")
    uae.create_model("uae_test").save_pretrained(root / "tok")
    return root / "gen", root / "tok"


def _files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.glob("*.png")) if not p.name.startswith(".")}


def test_generate_writes_pngs_and_a_labelled_grid(saved, tmp_path: Path, capsys) -> None:
    gen, tok = saved
    argv = ["generate", "--model", str(gen), "--tokenizer", str(tok), "--class", "2", "7", "--num", "3"]
    argv += ["--steps", "4", "--seed", "0", "--no-progress", "--device", "cpu"]
    assert cli_main([*argv, "--out", str(tmp_path / "a")]) == 0, capsys.readouterr().err
    out = capsys.readouterr().out
    names = sorted(p.name for p in (tmp_path / "a").glob("*.png"))
    assert names == [f"{i:03d}_class{c}.png" for i, c in enumerate([2, 2, 2, 7, 7, 7])] + ["grid.png"]
    assert "class 7 ->" in out and "grid ->" in out
    assert Image.open(tmp_path / "a" / "000_class2.png").size == (32, 32)
    grid = Image.open(tmp_path / "a" / "grid.png")
    assert grid.size[0] == 3 * 128 + 2 * 4 and grid.size[1] > 2 * 128  # 2 labelled rows of 3 enlarged cells
    # the same seed gives the same files; another seed other images
    assert cli_main([*argv, "--out", str(tmp_path / "b")]) == 0
    assert _files(tmp_path / "a") == _files(tmp_path / "b")
    assert (
        cli_main(
            [*argv[:-5], "--seed", "1", "--no-progress", "--device", "cpu", "--out", str(tmp_path / "c")]
        )
        == 0
    )
    assert _files(tmp_path / "a")["000_class2.png"] != _files(tmp_path / "c")["000_class2.png"]


def test_imagenet_class_names_label_the_grid() -> None:
    from uae.generation.images import class_name

    assert class_name(207, 1000) == "207 golden retriever" and class_name(3, 10) == "class 3"


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--class", "12"], "class index 12 is out of range: this generator knows classes 0..9"),
        (["--class", "1", "--steps", "1"], "argument --steps: must be an integer >= 2"),
        (["--class", "1", "--num", "0"], "argument --num: must be a positive integer"),
        (
            ["--class", "1", "--guidance", "2", "--guidance-method", "autoguidance"],
            "--guidance-method autoguidance needs",
        ),
        (["--class", "1", "--sampler", "dopri5"], "--sampler for mode 'ode' must be one of"),
        (["--class", "x"], "argument --class: must be an integer >= 0"),
        ([], "one of the arguments --class --num-samples is required"),
    ],
)
def test_bad_input_is_one_line(extra: list[str], message: str, tmp_path: Path, capsys) -> None:
    assert cli_main(["generate", *TINY, *extra, "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err, err


def test_wrong_models_are_one_line(saved, tmp_path: Path, capsys) -> None:
    gen, tok = saved
    cases = [
        (["--model", "uae_test"], "is a tokenizer; give a generator"),
        (["--model", str(gen)], "--tokenizer needed: no tokenizer is known"),
        (
            ["--model", "dit_dh_test", "--tokenizer", "dit_dh_test", "--random-init"],
            "--tokenizer 'dit_dh_test' is a generator, not a tokenizer",
        ),
        (["--model", "nope"], "unknown model 'nope'"),
    ]
    for args, message in cases:
        assert (
            cli_main(["generate", *args, "--class", "1", "--out", str(tmp_path / "o"), "--device", "cpu"])
            == 2
        )
        err = capsys.readouterr().err.strip()
        assert message in err and "\n" not in err, err


# ---------------------------------------------------------------------------------------------- sample folders
def _folder_cmd(gen: Path, tok: Path, out: Path, num: int = 14) -> list[str]:
    return [
        "generate", "--model", str(gen), "--tokenizer", str(tok), "--num-samples", str(num), "--batch-size", "4",
        "--steps", "3", "--seed", "7", "--device", "cpu", "--no-progress", "--out", str(out),
    ]  # fmt: skip


@pytest.mark.skipif(os.environ.get("UAE_SKIP_DDP_TEST") == "1", reason="UAE_SKIP_DDP_TEST=1")
def test_sample_folder_does_not_depend_on_the_number_of_processes(saved, tmp_path: Path, capsys) -> None:
    """torchrun with 2 CPU processes (gloo) writes exactly the files of a 1-process run (two fresh Python
    processes: ~10 s on 2 cores)."""
    gen, tok = saved
    one, two = tmp_path / "one", tmp_path / "two"
    assert cli_main(_folder_cmd(gen, tok, one)) == 0, capsys.readouterr().err
    assert "complete" in capsys.readouterr().out
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        "2",
        "-m",
        "uae.cli",
    ]
    run = subprocess.run(
        [*cmd, *_folder_cmd(gen, tok, two)], env=env, capture_output=True, text=True, timeout=300
    )
    assert run.returncode == 0, run.stderr[-3000:]
    assert "rank 0/2 wrote 8" in run.stdout  # batches 0, 2 of 0..3 (14 images in batches of 4)
    a, b = _files(one), _files(two)
    assert len(a) == 14 and a == b
    m1, m2 = read_manifest(one), read_manifest(two)
    assert m1 == m2 and m1["num_samples"] == 14 and m1["label_sampling"] == "equal"


def test_sample_folder_resumes_and_refuses_other_runs(saved, tmp_path: Path, capsys) -> None:
    gen, tok = saved
    out = tmp_path / "s"
    pipe = GenerationPipeline.from_pretrained(str(gen), tokenizer=str(tok))
    kw = {"num_samples": 10, "seed": 7, "batch_size": 4, "steps": 3, "progress": False}
    res = write_sample_folder(pipe, out, **kw)
    assert (res.written, res.skipped, res.complete) == (10, 0, True)
    first = _files(out)
    assert sorted(first) == [sample_name(i, 10) for i in range(10)]
    manifest = json.loads((out / MANIFEST_NAME).read_text())
    assert manifest["batch_size"] == 4 and manifest["sampler"]["num_steps"] == 3 and manifest["seed"] == 7
    # an interrupted run: two images lost, a half-written temp file left behind (atomic writes never leave
    # a partial image under its final name)
    (out / sample_name(1, 10)).unlink()
    (out / sample_name(9, 10)).unlink()
    (out / f".tmp-x-{sample_name(9, 10)}").write_bytes(b"\x89PNG half")
    res = write_sample_folder(pipe, out, **kw)
    assert (res.written, res.skipped, res.complete) == (2, 4, True)  # batches 0 and 2 recomputed, 1 skipped
    assert _files(out) == first
    # ranks split the batches: rank 1 of 2 owns batch 1 (images 4..7) only
    (out / sample_name(5, 10)).unlink()
    (out / sample_name(1, 10)).unlink()
    r1 = write_sample_folder(pipe, out, **kw, rank=1, world_size=2)
    assert (r1.written, r1.skipped, r1.complete) == (1, 0, False)
    r0 = write_sample_folder(pipe, out, **kw, rank=0, world_size=2)
    assert (r0.written, r0.skipped, r0.complete) == (1, 2, True) and _files(out) == first  # batches 0, 2
    # growing the run keeps what exists (the labels and seeds of an index never change)
    res = write_sample_folder(pipe, out, **{**kw, "num_samples": 12})
    assert res.written == 2 and {k: v for k, v in _files(out).items() if k in first} == first
    for change, what in (({"seed": 8}, "seed"), ({"batch_size": 5}, "batch_size"), ({"steps": 4}, "sampler")):
        with pytest.raises(InputError, match=f"holds samples of another run \\({what}:") as e:
            write_sample_folder(pipe, out, **{**kw, **change})
        assert e.value.param == "out_dir"
    # the command says the same, naming --out
    args = _folder_cmd(gen, tok, out, num=10)
    args[args.index("--seed") + 1] = "9"
    assert cli_main(args) == 2
    assert "--out" in capsys.readouterr().err


def test_sample_folder_labels_are_class_balanced(saved, tmp_path: Path) -> None:
    gen, tok = saved
    pipe = GenerationPipeline.from_pretrained(str(gen), tokenizer=str(tok))
    write_sample_folder(pipe, tmp_path, num_samples=20, batch_size=8, steps=2, progress=False)
    labels = image_labels(range(20), num_classes=10)
    assert torch.bincount(labels).tolist() == [2] * 10
    # image 3 is class 3 from noise image_seed(0, 3): the pipeline call with that label and seed, in a batch
    # of the same size and position, gives the same file
    batch = list(range(8))
    direct = pipe(image_labels(batch, num_classes=10), seeds=[image_seed(0, i) for i in batch], steps=2)
    saved_png = Image.open(tmp_path / sample_name(3, 20))
    assert torch.equal(
        torch.from_numpy(np.array(saved_png)).permute(2, 0, 1),
        (direct.images[3] * 255).round().to(torch.uint8),
    )
