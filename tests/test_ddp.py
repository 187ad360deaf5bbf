"""Multi-process runs on CPU (gloo): 2-process DDP through the real ``uae fit`` command, and ``uae encode``
launched by ``torchrun`` with 2 processes against a 1-process run.

These are the slowest tests of the suite (fresh Python processes importing torch and Lightning, ~20-40 s
on 2 cores). The training test runs the GAN stage, the one with manual optimisation and two optimizers,
so the single-backward design is checked under DDP. Set ``UAE_SKIP_DDP_TEST=1`` to skip them.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import uae
from uae.training.export import load_lightning_checkpoint

RECIPES = Path(__file__).resolve().parents[1] / "recipes"


@pytest.mark.skipif(os.environ.get("UAE_SKIP_DDP_TEST") == "1", reason="UAE_SKIP_DDP_TEST=1")
def test_ddp_two_processes_cpu_gloo_stage3(image_folder, tmp_path):
    torch.manual_seed(0)
    start = tmp_path / "start"
    uae.create_model("uae_test").save_pretrained(start)
    out = tmp_path / "run"
    cmd = [
        sys.executable,
        "-m",
        "uae.cli",
        "fit",
        "--config",
        str(RECIPES / "finetune_folder.yaml"),
        "--model.class_path",
        "uae.training.Stage3GANModule",
        "--model.pretrained",
        str(start),
        "--model.teacher_weights",
        "null",
        "--model.disc_weights",
        "null",
        "--model.disc_start",
        "1",
        "--model.diff_aug",
        "translation",
        "--model.lpips_weight",
        "0",
        "--model.export_dir",
        str(out / "export"),
        "--model.log_images_every_n_steps",
        "0",
        "--data.root",
        str(image_folder),
        "--data.batch_size",
        "2",
        "--data.num_workers",
        "0",
        "--data.pin_memory",
        "false",
        "--data.val_fraction",
        "0.25",
        "--trainer.accelerator",
        "cpu",
        "--trainer.strategy",
        "ddp",
        "--trainer.devices",
        "2",
        "--trainer.num_nodes",
        "1",
        "--trainer.precision",
        "32",
        "--trainer.max_steps",
        "3",
        "--trainer.val_check_interval",
        "3",
        "--trainer.limit_val_batches",
        "1",
        "--trainer.default_root_dir",
        str(out),
        "--trainer.enable_progress_bar",
        "false",
    ]
    log = _run(cmd, tmp_path)
    assert "GLOBAL_RANK: 1" in log and "MEMBER: 2/2" in log, log[-2000:]
    # The logger and the recipe's checkpoint callbacks write inside the run's own folder (default_root_dir).
    assert list((out / "logs").glob("version_0/metrics.csv"))
    ckpt = load_lightning_checkpoint(out / "checkpoints" / "last.ckpt")
    assert ckpt["global_step"] == 3
    assert ckpt["uae_stage"] == 3
    (loader_state,) = ckpt["loops"]["fit_loop"]["state_dict"]["combined_loader"]
    assert loader_state["num_replicas"] == 2  # the resumable sampler shards over the two ranks
    exported = uae.UAE.from_pretrained(out / "export")
    original = uae.UAE.from_pretrained(start)
    changed = [k for k, v in exported.state_dict().items() if not torch.equal(v, original.state_dict()[k])]
    assert any(k.startswith("encoder.") for k in changed) and any(k.startswith("decoder.") for k in changed)


def _run(cmd: list[str], cwd: Path, timeout: int = 180) -> str:
    """Run a command in its own process group (killed whole on a hang); its output."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "UAE_DEBUG": "1"}
    proc = subprocess.Popen(
        cmd,
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        log, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        log, _ = proc.communicate()
        pytest.fail(f"{cmd[:6]} did not finish in {timeout} s:\n" + log[-3000:])
    assert proc.returncode == 0, log[-4000:]
    return log


def _files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


@pytest.mark.skipif(os.environ.get("UAE_SKIP_DDP_TEST") == "1", reason="UAE_SKIP_DDP_TEST=1")
def test_encode_with_two_processes_writes_the_same_export_as_one(image_folder, tmp_path):
    """``torchrun --nproc-per-node 2 -m uae.cli encode``: each rank writes its own shards (a journal of its
    commits, merged by rank 0); the folder (index and tensors) is byte-identical to a 1-process export,
    also after a resume with another assignment of the missing shards to the ranks."""
    torch.manual_seed(0)
    uae.create_model("uae_test").save_pretrained(tmp_path / "model")
    shutil.copy(image_folder / "a" / sorted(os.listdir(image_folder / "a"))[0], image_folder / "b" / "x.png")
    (image_folder / "b" / "broken.png").write_bytes(b"not an image")  # 10 files, one unreadable
    args = ["-m", "uae.cli", "encode", "--model", str(tmp_path / "model"), "--data", str(image_folder)]
    args += [
        "--shard-size",
        "3",
        "--batch-size",
        "2",
        "--num-workers",
        "0",
        "--no-progress",
        "--device",
        "cpu",
    ]
    args += ["--what", "bands", "latent"]
    one, two = tmp_path / "one", tmp_path / "two"
    _run([sys.executable, *args, "--out", str(one)], tmp_path)
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]
    log = _run([*torchrun, *args, "--out", str(two)], tmp_path)
    assert "(2 process(es))" in log and log.count("uae encode: 4/4 shards, 9 images (1 skipped of 10)") == 1
    reference = _files(one)
    assert sorted(reference) == [
        "files.txt",
        "index.json",
        "latent_stats.safetensors",
        *(f"shard-0000{s}.safetensors" for s in range(4)),
    ]
    assert _files(two) == reference
    index = json.loads(reference["index.json"])
    assert index["complete"] and index["num_used"] == 9 and index["skipped_files"] == ["b/broken.png"]
    # Resume: shards 1 and 3 lost (never recorded), shard 0 damaged; 2 ranks redo them.
    partial = json.loads((two / "index.json").read_text())
    partial["shards"] = [e for e in partial["shards"] if e["shard"] in (0, 2)]
    partial["complete"] = False
    del partial["stats"]
    (two / "index.json").write_text(json.dumps(partial))
    (two / "shard-00001.safetensors").unlink()
    (two / "shard-00003.safetensors").unlink()
    data = bytearray((two / "shard-00000.safetensors").read_bytes())
    data[-8:] = bytes(b ^ 0xFF for b in data[-8:])
    (two / "shard-00000.safetensors").write_bytes(bytes(data))
    log = _run([*torchrun, *args, "--out", str(two)], tmp_path)
    assert "SHA-256" in log and "Exporting 3 of 4 shards" in log
    assert _files(two) == reference
