"""The generator recipes through ``uae fit``: the tiny one trains on the demo tokenizer's latents of the bundled
photos (loss falls, sample grids, a FID with a stand-in Inception, an export that loads and samples through
``uae generate``); the ImageNet ones carry the originals' settings; latents of another tokenizer are refused."""

from __future__ import annotations

import json
from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch
import yaml
from conftest import one_line_error
from ldm_fixtures import encode, save_tokenizer
from test_eval_metrics import _random_inception_file
from test_generation_metrics import cheap_forward

from uae.cli import main
from uae.commands.lightning_cli import make_cli
from uae.evaluation import metrics as M
from uae.factory import load_model
from uae.generation.latent_space import LatentSpace
from uae.generation.pipeline import GenerationPipeline
from uae.models.dit import DiTDH
from uae.training import LatentDataModule, LatentDiffusionModule

ROOT = Path(__file__).resolve().parents[1]
RECIPES = ROOT / "recipes"
DEMO = RECIPES / "ldm_demo.yaml"
IMAGENET = {  # recipe: (generator, global batch) of the originals' training configs
    "ldm_dit_dh_xl_rae.yaml": ("dit_dh_xl", 1024),
    "ldm_dit_dh_s_rae.yaml": ("dit_dh_s", 1024),
    "ldm_dit_dh_xl_uae_64token.yaml": ("uae_64token_dit", 768),
}


pytestmark = pytest.mark.usefixtures("cli_one_thread")


@pytest.fixture(scope="module")
def demo_latents(tmp_path_factory) -> Path:
    """``uae encode --model uae_demo --data tests/assets_labelled --what fused`` (4 photos, 2 classes)."""
    out = tmp_path_factory.mktemp("ldm_demo") / "latents"
    return encode("uae_demo", ROOT / "tests" / "assets_labelled", out, what=("fused",), shard_size=None)


def test_recipes_present():
    assert {*IMAGENET, "ldm_demo.yaml"} <= {p.name for p in RECIPES.glob("ldm_*.yaml")}


def test_tiny_recipe_trains_monitors_exports_and_generates(
    demo_latents, tmp_path, empty_hub, monkeypatch, capsys
):
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

    (empty_hub / "checkpoints").mkdir(parents=True)  # a stand-in Inception (test_generation_metrics.py)
    _random_inception_file(empty_hub / "checkpoints" / M.INCEPTION_FILE, monkeypatch)
    monkeypatch.setattr(FeatureExtractorInceptionV3, "forward", cheap_forward)
    export = tmp_path / "export"
    args = ["--config", str(DEMO), "--data.root", str(demo_latents), "--data.val_root", str(demo_latents)]
    args += ["--trainer.max_steps", "60", "--trainer.val_check_interval", "30", "--trainer.logger", "false"]
    args += ["--trainer.default_root_dir", str(tmp_path), "--trainer.enable_checkpointing", "false"]
    args += [
        "--model.log_images_every_n_steps",
        "30",
        "--model.sample_steps",
        "5",
        "--model.export_dir",
        str(export),
    ]
    args += ["--model.fid_every_n_steps", "30", "--model.fid_num_samples", "4"]
    cli = make_cli(args, run=False)
    assert isinstance(cli.model, LatentDiffusionModule) and isinstance(cli.datamodule, LatentDataModule)
    losses: list[float] = []

    class Record(pl.Callback):
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            losses.append(float(outputs["loss"]))

    cli.trainer.callbacks.append(Record())
    cli.trainer.fit(cli.model, cli.datamodule)
    assert len(losses) == 60 and sum(losses[-10:]) / 10 < 0.8 * sum(losses[:10]) / 10  # the loss falls
    grids = sorted(p.name for p in (tmp_path / "images").glob("samples_step*.png"))
    assert grids == ["samples_step0000000.png", "samples_step0000030.png", "samples_step0000060.png"]
    fids = [json.loads(line) for line in (tmp_path / "fid.jsonl").read_text().splitlines()]
    assert [r["step"] for r in fids] == [30, 60] and all(
        r["fid"] >= 0 and r["num_reference"] == 4 for r in fids
    )

    # The export: a DiT-DH with its latent space, loaded without being told the tokenizer.
    assert DiTDH.from_pretrained(export).config.name == "ldm_demo"
    assert isinstance(load_model(str(export), family="generator"), DiTDH)
    space = LatentSpace.load(export)
    assert space.tokenizer == "uae_demo" and space.stats == "export" and space.latent_shape == (128, 8, 8)
    pipe = GenerationPipeline.from_pretrained(str(export))
    out = pipe([0, 1], steps=5, seed=0)
    assert out.images.shape == (2, 3, 64, 64) and float(out.images.std()) > 0.02  # decoded images, not flat
    assert torch.equal(out.images, pipe.latent_space.decode(pipe.tokenizer, out.latents).clamp(0, 1))
    samples = tmp_path / "samples"
    rc = main(
        ["generate", "--model", str(export), "--class", "0", "1", "--num", "1", "--steps", "5"]
        + ["--out", str(samples), "--device", "cpu"]
    )
    assert rc == 0 and len(list(samples.glob("*_class*.png"))) == 2 and (samples / "grid.png").is_file()


@pytest.mark.parametrize("name", sorted(IMAGENET))
def test_imagenet_recipes_carry_the_originals_settings(name, image_folder, tmp_path):
    cfg = yaml.safe_load((RECIPES / name).read_text())
    arch, global_batch = IMAGENET[name]
    t, m, d = cfg["trainer"], cfg["model"]["init_args"], cfg["data"]["init_args"]
    assert t["devices"] * t["num_nodes"] * d["batch_size"] == global_batch and t["max_epochs"] == 1400
    assert (m["model_name"], m["lr"], m["final_lr"], m["ema_decay"], m["grad_clip"]) == (
        arch,
        2e-4,
        2e-5,
        0.9995,
        1.0,
    )
    assert (m["warmup_epochs"], m["decay_end_epoch"], m["schedule"], m["time_shift_dim"]) == (
        40,
        800,
        "linear",
        196608,
    )
    assert m["time_dist"] == "logit-normal_0_1" and m["betas"] == [0.9, 0.95] and m["weight_decay"] == 0
    header = "\n".join(line for line in (RECIPES / name).read_text().splitlines() if line.startswith("#"))
    assert all(k in header for k in ("global batch", "steps", "hardware", "lr scaling", "uae encode"))
    latents = encode(save_tokenizer(tmp_path / "tok"), image_folder, tmp_path / "latents", what=("fused",))
    tiny = [
        "--model.model_name",
        "dit_dh_test",
        "--model.time_shift_dim",
        "4096",
        "--data.root",
        str(latents),
    ]
    tiny += ["--data.val_root", "null", "--trainer.accelerator", "cpu", "--trainer.devices", "1"]
    tiny += ["--trainer.strategy", "auto", "--trainer.logger", "false", "--trainer.callbacks", "[]"]
    cli = make_cli(["--config", str(RECIPES / name), *tiny], run=False)
    assert type(cli.model) is LatentDiffusionModule and cli.model.hparams.warmup_epochs == 40
    assert cli.model.ema.decay == 0.9995 and cli.datamodule.batch_size == global_batch // 8
    assert str(cli.trainer.precision) == "32-true"  # the originals train in fp32 (TF32 matmuls)


def test_fit_refuses_latents_of_another_tokenizer_in_one_line(demo_latents, tmp_path, capsys):
    other = save_tokenizer(tmp_path / "other", seed=3, name="uae_demo")
    args = ["fit", "--config", str(DEMO), "--data.root", str(demo_latents), "--data.val_root", "null"]
    args += ["--data.tokenizer", str(other)]
    args += [
        "--trainer.max_steps",
        "1",
        "--trainer.val_check_interval",
        "1",  # no "interval shortened to the budget" line before the error
        "--trainer.logger",
        "false",
        "--trainer.default_root_dir",
        str(tmp_path),
    ]
    one_line_error(capsys, main(args), "were not made by --data.tokenizer")
