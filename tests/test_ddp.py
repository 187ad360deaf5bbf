"""Multi-process training: 2-process DDP on CPU (gloo) through the real ``uae fit`` command.

This is the slowest test of the training suite (two fresh Python processes importing torch and
Lightning, ~20-40 s on 2 cores). It runs the GAN stage, the one with manual optimisation and two
optimizers, so the single-backward design is checked under DDP. Set ``UAE_SKIP_DDP_TEST=1`` to skip it.
"""

from __future__ import annotations

import os
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
    env = {**os.environ, "OMP_NUM_THREADS": "1", "UAE_DEBUG": "1"}
    # Own process group: on a hang, kill rank 0 *and* the rank-1 process it launched.
    proc = subprocess.Popen(
        cmd,
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        log, _ = proc.communicate(timeout=180)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        log, _ = proc.communicate()
        pytest.fail("2-process DDP run did not finish in 180 s:\n" + log[-3000:])
    assert proc.returncode == 0, log[-4000:]
    assert "GLOBAL_RANK: 1" in log and "MEMBER: 2/2" in log, log[-2000:]
    # The recipe's logger and checkpoint callback write under outputs/runs/finetune (relative to the cwd).
    assert list((tmp_path / "outputs" / "runs" / "finetune" / "logs").glob("version_0/metrics.csv"))
    ckpt = load_lightning_checkpoint(tmp_path / "outputs" / "runs" / "finetune" / "checkpoints" / "last.ckpt")
    assert ckpt["global_step"] == 3
    assert ckpt["uae_stage"] == 3
    (loader_state,) = ckpt["loops"]["fit_loop"]["state_dict"]["combined_loader"]
    assert loader_state["num_replicas"] == 2  # the resumable sampler shards over the two ranks
    exported = uae.UAE.from_pretrained(out / "export")
    original = uae.UAE.from_pretrained(start)
    changed = [k for k, v in exported.state_dict().items() if not torch.equal(v, original.state_dict()[k])]
    assert any(k.startswith("encoder.") for k in changed) and any(k.startswith("decoder.") for k in changed)
