"""Hub layout: bit-exact save/load, offline Hub-cache loading, clear errors, model card, push."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

import uae
from uae import UAELoadError


def _saved(model: uae.UAE, path: Path) -> Path:
    model.save_pretrained(path)
    return path


def test_save_load_round_trip_is_bit_exact(tmp_path: Path, photos32: torch.Tensor) -> None:
    torch.manual_seed(1)
    model = uae.create_model("uae_test")
    with torch.no_grad():  # non-trivial modulator and latent statistics
        model.modulator.conv_out.weight.normal_(std=0.01)
        model.set_latent_stats(torch.randn(32), torch.rand(32) + 0.5)
    model.eval()
    d = _saved(model, tmp_path / "m")
    assert sorted(os.listdir(d)) == ["README.md", "config.json", "model.safetensors"]
    loaded = uae.UAE.from_pretrained(d)
    assert loaded.config == model.config
    sd0, sd1 = model.state_dict(), loaded.state_dict()
    assert sd0.keys() == sd1.keys()
    for k in sd0:
        assert torch.equal(sd0[k], sd1[k]), k
    assert not loaded.training
    assert torch.equal(model(photos32).sample, loaded(photos32).sample)


def test_config_json_is_flat_and_stamped(tmp_path: Path) -> None:
    d = _saved(uae.create_model("uae_test"), tmp_path / "m")
    cfg = json.loads((d / "config.json").read_text())
    assert cfg["architecture"] == "UAE"
    assert cfg["uae_version"] == uae.__version__
    assert cfg["name"] == "uae_test"
    assert all(not isinstance(v, dict) for v in cfg.values())
    weights = load_file(str(d / "model.safetensors"))
    assert {"pixel_mean", "pixel_std", "latent_mean", "latent_std"} <= set(weights)


def test_model_card(tmp_path: Path) -> None:
    card = (_saved(uae.create_model("uae_test"), tmp_path / "m") / "README.md").read_text()
    assert "arxiv.org/abs/2512.19693" in card
    assert "license: apache-2.0" in card
    assert "library_name: uae" in card
    assert "uae.UAE.from_pretrained" in card
    assert "8x8" in card or "32x8x8" in card


def test_model_card_metadata_is_full_true_and_parses(tmp_path: Path) -> None:
    """What the Hub reads: pipeline tag, no dinov2 tag on a random-init encoder, no empty init field, no local
    path; ModelCard / ModelCardData parse it back, model-index included."""
    from huggingface_hub import ModelCard

    from uae.models.card import check_card, eval_results

    d = _saved(uae.create_model("uae_test"), tmp_path / "m")
    text = (d / "README.md").read_text()
    card = ModelCard.load(d / "README.md")
    assert card.data.library_name == "uae" and card.data.license == "apache-2.0"
    assert card.data.pipeline_tag == "image-feature-extraction"
    assert "dinov2" not in card.data.tags and "uae" in card.data.tags
    assert "init ``" not in text and "initial weights: not recorded" in text and str(tmp_path) not in text
    check_card(text)

    model = uae.create_model("uae_test")
    results = eval_results({"imagenet1k_val.psnr": 30.0, "imagenet1k.linear_probe": 80.0})
    card = model.generate_model_card(
        encoder_pretrained=True,
        encoder_init="timm/vit_base_patch14_reg4_dinov2.lvd142m",
        base_model=["org/start", str(tmp_path)],  # a local path is never a base_model
        datasets=["ILSVRC/imagenet-1k"],
        results=results,
        repo_id="me/uae_test",
    )
    data = check_card(str(card)).data
    assert (
        "dinov2" in data.tags and data.base_model == "org/start" and data.datasets == ["ILSVRC/imagenet-1k"]
    )
    assert data.model_name == "uae_test" and len(data.eval_results) == 2
    psnr, probe = data.eval_results
    assert (psnr.task_type, psnr.dataset_type, psnr.dataset_split, psnr.metric_type) == (
        "image-to-image",
        "ILSVRC/imagenet-1k",
        "validation",
        "psnr",
    )
    assert probe.task_type == "image-classification" and probe.metric_value == 80.0
    assert "`timm/vit_base_patch14_reg4_dinov2.lvd142m`" in str(card)


def test_check_card_refuses_local_paths_and_bad_metadata(tmp_path: Path) -> None:
    from uae.models.card import check_card

    good = str(uae.create_model("uae_test").generate_model_card())
    check_card(good)
    with pytest.raises(ValueError, match="local path"):
        check_card(good + f"\nData: folder `{tmp_path}/photos`\n")
    with pytest.raises(ValueError, match="lacks pipeline_tag"):
        check_card(good.replace("pipeline_tag: image-feature-extraction\n", ""))
    with pytest.raises(ValueError, match="metadata does not parse"):
        check_card(good.replace("tags:", "model-index: [{name: x, results: [{task: 3}]}]\ntags:"))


def _hub_cache(hf_home: Path, repo_id: str, src: Path) -> None:
    org, name = repo_id.split("/")
    repo = hf_home / "hub" / f"models--{org}--{name}"
    commit = "0123456789abcdef0123456789abcdef01234567"
    snap = repo / "snapshots" / commit
    snap.mkdir(parents=True)
    for f in ("config.json", "model.safetensors"):
        shutil.copy(src / f, snap / f)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)


def test_from_pretrained_repo_id_offline_from_hub_cache(tmp_path: Path) -> None:
    torch.manual_seed(3)
    model = uae.create_model("uae_test")
    src = _saved(model, tmp_path / "src")
    hf_home = tmp_path / "hf_home"
    _hub_cache(hf_home, "uae-zoo/uae_test", src)
    code = """
import time, torch, uae
m = uae.UAE.from_pretrained("uae-zoo/uae_test")
print(sum(float(v.double().sum()) for v in m.state_dict().values()))
t = time.time()
try:
    uae.UAE.from_pretrained("uae-zoo/missing")
except FileNotFoundError as e:
    print("MISSING", round(time.time() - t, 3), e)
"""
    env = {**os.environ, "HF_HOME": str(hf_home), "HF_HUB_OFFLINE": "1"}
    env.pop("HF_HUB_CACHE", None)
    res = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    lines = res.stdout.strip().splitlines()
    expected = sum(float(v.double().sum()) for v in model.state_dict().values())
    assert abs(float(lines[0]) - expected) < 1e-6
    assert lines[1].startswith("MISSING")
    assert float(lines[1].split()[1]) < 1.0
    assert "uae-zoo/missing" in lines[1] and "not in the local Hub cache" in lines[1]


def test_missing_directory_and_files(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="neither an existing local model directory"):
        uae.UAE.from_pretrained(tmp_path / "does" / "not" / "exist")
    d = _saved(uae.create_model("uae_test"), tmp_path / "m")
    (d / "model.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match="model.safetensors not found"):
        uae.UAE.from_pretrained(d)
    (d / "config.json").unlink()
    with pytest.raises(FileNotFoundError, match="config.json not found"):
        uae.UAE.from_pretrained(d)


def test_wrong_architecture(tmp_path: Path) -> None:
    d = _saved(uae.create_model("uae_test"), tmp_path / "m")
    cfg = json.loads((d / "config.json").read_text())
    cfg["architecture"] = "AutoencoderKL"
    (d / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(UAELoadError, match="architecture 'AutoencoderKL'"):
        uae.UAE.from_pretrained(d)


def test_unknown_config_key(tmp_path: Path) -> None:
    d = _saved(uae.create_model("uae_test"), tmp_path / "m")
    cfg = json.loads((d / "config.json").read_text())
    cfg["mystery"] = 1
    (d / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(UAELoadError, match="mystery"):
        uae.UAE.from_pretrained(d)
    assert uae.UAE.from_pretrained(d, strict=False).config.name == "uae_test"


def test_missing_and_unexpected_keys(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    d = _saved(uae.create_model("uae_test"), tmp_path / "m")
    w = load_file(str(d / "model.safetensors"))
    w.pop("decoder.pred.bias")
    w["extra.weight"] = torch.zeros(1)
    save_file(w, str(d / "model.safetensors"))
    with pytest.raises(UAELoadError) as e:
        uae.UAE.from_pretrained(d)
    assert "decoder.pred.bias" in str(e.value) and "extra.weight" in str(e.value)
    with caplog.at_level("WARNING"):
        uae.UAE.from_pretrained(d, strict=False)
    assert "decoder.pred.bias" in caplog.text


def test_shape_mismatch(tmp_path: Path) -> None:
    d = _saved(uae.create_model("uae_test"), tmp_path / "m")
    with pytest.raises(UAELoadError, match="shapes do not match"):
        uae.UAE.from_pretrained(d, modulator_hidden_dim=8)
    # Overrides that keep shapes are fine.
    assert uae.UAE.from_pretrained(d, noise_std=0.1).config.noise_std == 0.1


def test_push_to_hub_uploads_the_hub_layout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import huggingface_hub.hub_mixin as hm

    uploaded: dict = {}

    class FakeApi:
        def __init__(self, token=None):
            pass

        def create_repo(self, repo_id, private=None, exist_ok=True):
            return type("R", (), {"repo_id": repo_id})()

        def upload_folder(self, repo_id, folder_path, **kw):
            uploaded["repo"] = repo_id
            uploaded["files"] = sorted(os.listdir(folder_path))
            return "https://huggingface.co/fake/commit"

    monkeypatch.setattr(hm, "HfApi", FakeApi)
    uae.create_model("uae_test").push_to_hub("me/uae_test")
    assert uploaded == {"repo": "me/uae_test", "files": ["README.md", "config.json", "model.safetensors"]}


def test_loading_is_fast_and_network_free(tmp_path: Path) -> None:
    d = _saved(uae.create_model("uae_test"), tmp_path / "m")
    t = time.time()
    uae.UAE.from_pretrained(str(d))
    assert time.time() - t < 5


def test_hub_options_are_one_definition_taken_from_keywords() -> None:
    from uae.models.hub import HubOptions

    kwargs = {"revision": "v1", "token": False, "noise_std": 0.1}
    hub = HubOptions.pop_from(kwargs, HubOptions(cache_dir="/c", revision="main"))
    assert hub == HubOptions(revision="v1", cache_dir="/c", token=False)
    assert kwargs == {"noise_std": 0.1}  # what stays are config overrides
    assert hub.replace(revision=None).revision is None and hub.revision == "v1"


def test_from_pretrained_takes_hub_options_and_overrides_together(tmp_path: Path) -> None:
    from uae.models.hub import HubOptions

    d = _saved(uae.create_model("uae_test"), tmp_path / "m")
    model = uae.UAE.from_pretrained(d, hub=HubOptions(local_files_only=True), revision="x", noise_std=0.2)
    assert model.config.noise_std == 0.2  # hub keywords are not config fields; a local folder ignores them
