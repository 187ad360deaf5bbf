"""The latent-diffusion stage under 2-process DDP on CPU (gloo), through the real ``uae fit`` command: the data
sharded over the ranks, the monitoring on rank 0 only, the export written once. Slow (fresh processes); set
``UAE_SKIP_DDP_TEST=1`` to skip, as for test_ddp.py."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest
from ldm_fixtures import encode
from test_ddp import _run

from uae.generation.latent_space import LatentSpace
from uae.models.dit import DiTDH
from uae.training.export import load_lightning_checkpoint

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.skipif(os.environ.get("UAE_SKIP_DDP_TEST") == "1", reason="UAE_SKIP_DDP_TEST=1")
def test_ldm_ddp_two_processes_cpu_gloo(tmp_path):
    latents = encode("uae_demo", ROOT / "tests" / "assets_labelled", tmp_path / "latents", what=("fused",))
    ckpt = {
        "class_path": "lightning.pytorch.callbacks.ModelCheckpoint",
        "init_args": {"dirpath": str(tmp_path / "ckpt"), "save_last": True, "every_n_train_steps": 1},
    }
    cmd = [sys.executable, "-m", "uae.cli", "fit", "--config", str(ROOT / "recipes" / "ldm_demo.yaml")]
    cmd += ["--data.root", str(latents), "--data.val_root", "null", "--data.batch_size", "2"]
    cmd += ["--trainer.strategy", "ddp", "--trainer.devices", "2", "--trainer.max_steps", "3"]
    cmd += ["--trainer.default_root_dir", str(tmp_path / "run"), "--trainer.logger", "false"]
    cmd += ["--trainer.callbacks", json.dumps([ckpt])]
    cmd += ["--model.log_images_every_n_steps", "2", "--model.sample_steps", "3"]
    cmd += ["--model.export_dir", str(tmp_path / "export")]
    log = _run(cmd, tmp_path)
    assert "GLOBAL_RANK: 1" in log and "MEMBER: 2/2" in log, log[-2000:]
    state = load_lightning_checkpoint(tmp_path / "ckpt" / "last.ckpt")
    assert state["global_step"] == 3 and state["uae_stage"] == "ldm"
    (loader,) = state["loops"]["fit_loop"]["state_dict"]["combined_loader"]
    assert loader["num_replicas"] == 2  # 4 latents, 2 per rank: one batch of 2 per epoch on each
    grids = sorted(p.name for p in (tmp_path / "run" / "images").glob("*.png"))
    assert grids == ["samples_step0000000.png", "samples_step0000002.png", "samples_step0000003.png"]
    assert DiTDH.from_pretrained(tmp_path / "export").config.name == "ldm_demo"
    assert LatentSpace.load(tmp_path / "export").tokenizer == "uae_demo"
