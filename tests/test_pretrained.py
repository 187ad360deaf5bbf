"""Pretrained weights: the arch.tag table, offline Hub-cache loading, converted cache, fast offline errors,
``uae publish``, and the dtype checks on loaded weights."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import HUB_COMMIT as COMMIT
from conftest import put_in_hub_cache
from safetensors.torch import load_file, save_file

import uae
from uae import UAELoadError, online
from uae.cli import main as cli_main
from uae.convert.release import get_converter, register_release_source, unregister_release_source
from uae.files import MANIFEST_NAME, verify_manifest
from uae.models.hub import PROVENANCE_NAME
from uae.models.pretrained import (
    PretrainedCfg,
    PretrainedFile,
    get_pretrained_cfg,
    register_pretrained,
    unregister_pretrained,
)


@pytest.fixture
def tiny_saved(tmp_path: Path) -> tuple[uae.UAE, Path]:
    torch.manual_seed(5)
    model = uae.create_model("uae_test").eval()
    with torch.no_grad():
        model.modulator.conv_out.weight.normal_(std=0.01)
    model.save_pretrained(tmp_path / "native")
    return model, tmp_path / "native"


@pytest.fixture
def stub_release(tmp_path: Path, hf_home: Path, tiny_saved):
    """A release format ``stub_fmt`` (weights file + config file in two repos) with a call-counting converter."""
    model, native = tiny_saved
    calls: list[dict] = []

    def load_release(files, *, name=None, **options):
        calls.append({"files": dict(files), "name": name, **options})
        cfg = json.loads(Path(files["config"]).read_text())
        assert cfg["format"] == "stub"
        m = uae.UAE(uae.get_config("uae_test").replace(name=name or "uae_test"))
        m.load_state_dict(load_file(str(files["checkpoint"])))
        return m.eval()

    conf = tmp_path / "stub_config.json"
    conf.write_text(json.dumps({"format": "stub"}))
    put_in_hub_cache(hf_home, "authors/release", {"ckpt/weights.safetensors": native / "model.safetensors"})
    put_in_hub_cache(hf_home, "other/configs", {"stub/config.json": conf}, commit="f" * 40)
    register_release_source(
        "stub_fmt", load_release, {"checkpoint": True, "config": True}, check="stub check"
    )
    cfg = register_pretrained(
        PretrainedCfg(
            architecture="uae_test",
            tag="stub_release",
            source="stub_fmt",
            hf_hub_id="authors/release",
            files={
                "checkpoint": PretrainedFile("ckpt/weights.safetensors"),
                "config": PretrainedFile("stub/config.json", repo="other/configs"),
            },
            license="apache-2.0",
            license_note="stub licence note",
            paper_metrics={"imagenet1k_val.psnr": 12.5},
            metrics_source="the stub authors' README",
        )
    )
    yield cfg, calls, model
    unregister_pretrained(cfg.name)
    unregister_release_source("stub_fmt")


def _same_weights(a: uae.UAE, b: uae.UAE) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


# ---------------------------------------------------------------------------------------------- table
def test_table_lists_the_releases_and_defaults() -> None:
    names = uae.list_models(pretrained=True)
    for n in (
        "uae_base_p14_dinov2.authors_v2",
        "uae_base_p14_dinov2.authors_v1",
        "uae_large_p14_clip.authors_v2",
        "uae_base_p16_siglip2.authors_v2",
        "rae_base_p14_dinov2_vitxl.rae",
        "rae_base_p14_dinov2_vitl.rae",
        "rae_base_p14_dinov2_vitb.rae",
        "uae_demo.embedded",
    ):
        assert n in names, n
    assert all(n.split(".")[0] in uae.list_models() for n in names)
    assert uae.list_models("rae_*", pretrained=True)[0].startswith("rae_")
    assert get_pretrained_cfg("uae_base_p14_dinov2").tag == "authors_v2"  # the default tag
    v2 = get_pretrained_cfg("uae_base_p14_dinov2.authors_v2")
    assert (
        v2.hf_hub_id == "weepiess2383/UAE"
        and v2.files["checkpoint"].filename == "checkpoints/DINOv2-B/ep-last.pt"
    )
    assert v2.license == "apache-2.0" and v2.paper_metrics["imagenet1k_val.psnr"] == 32.17
    rae = get_pretrained_cfg("rae_base_p14_dinov2_vitxl")
    assert rae.files["encoder"].repo == "facebook/dinov2-with-registers-base"
    assert not get_pretrained_cfg("rae_base_p14_dinov2_vitb").files["decoder"].verified
    assert "UNCONFIRMED" in get_pretrained_cfg("uae_base_p14_dinov2.authors_v1").notes
    with pytest.raises(ValueError, match="unknown pretrained tag 'nope'.*authors_v2"):
        uae.create_model("uae_base_p14_dinov2.nope", pretrained=True)
    # The old RAE name still resolves.
    assert uae.get_config("uae_rae_base_p14_dinov2").name == "rae_base_p14_dinov2_vitxl"


def test_models_cli_lists_weights(capsys) -> None:
    assert cli_main(["models", "--pretrained", "uae_base*"]) == 0
    out = capsys.readouterr().out
    assert "uae_base_p14_dinov2.authors_v2" in out and "weepiess2383/UAE" in out and "apache-2.0" in out
    assert cli_main(["models"]) == 0
    out = capsys.readouterr().out
    assert "weights: authors_v2, authors_v1" in out and "recipe only" in out


# ---------------------------------------------------------------------------------------------- loading
def test_native_weights_from_the_hub_cache(hf_home: Path, tiny_saved) -> None:
    model, native = tiny_saved
    put_in_hub_cache(
        hf_home, "uae-zoo/uae_test", {f: native / f for f in ("config.json", "model.safetensors")}
    )
    cfg = register_pretrained(
        PretrainedCfg(architecture="uae_test", tag="hub_native", source="uae", hf_hub_id="uae-zoo/uae_test")
    )
    try:
        loaded = uae.create_model("uae_test.hub_native", pretrained=True)
        assert _same_weights(model, loaded) and not loaded.training
        assert uae.create_model("uae_test.hub_native", pretrained=True, noise_std=0.3).config.noise_std == 0.3
    finally:
        unregister_pretrained(cfg.name)


def test_release_is_converted_once_then_loaded_from_the_cache(stub_release, tmp_path: Path) -> None:
    cfg, calls, model = stub_release
    first = uae.create_model("uae_test.stub_release", pretrained=True)
    assert len(calls) == 1 and calls[0]["name"] == "uae_test"
    assert f"snapshots/{COMMIT}/ckpt/weights.safetensors" in Path(calls[0]["files"]["checkpoint"]).as_posix()
    assert _same_weights(model, first)
    cached = list((tmp_path / "uae_cache").glob(f"models--authors--release/{COMMIT}/uae_test.stub_release-*"))
    assert len(cached) == 1
    assert sorted(p.name for p in cached[0].iterdir()) == [
        "README.md",
        "config.json",
        "model.safetensors",
        MANIFEST_NAME,
        PROVENANCE_NAME,
    ]
    prov = json.loads((cached[0] / PROVENANCE_NAME).read_text())
    assert prov["resolved_files"]["config"] == {
        "repo": "other/configs",
        "revision": None,
        "commit": "f" * 40,
        "filename": "stub/config.json",
    }
    second = uae.create_model("uae_test.stub_release", pretrained=True)
    assert len(calls) == 1  # the converter is not called again: a plain safetensors load
    assert _same_weights(first, second)
    # A new converter version is a new cache entry (converted again).
    loader = get_converter("stub_fmt").load_release
    register_release_source("stub_fmt", loader, {"checkpoint": True, "config": True}, version="2")
    uae.create_model("uae_test.stub_release", pretrained=True)
    assert len(calls) == 2
    assert len(list(cached[0].parent.glob("uae_test.stub_release-*"))) == 2


def _entry(tmp_path: Path) -> Path:
    (entry,) = (tmp_path / "uae_cache").glob(f"models--authors--release/{COMMIT}/uae_test.stub_release-*")
    return entry


def _flip_bytes(path: Path) -> None:
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    data[middle : middle + 64] = bytes(b ^ 0x5A for b in data[middle : middle + 64])  # same size
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("damage", ["flipped bytes", "truncated", "config.json deleted", "manifest deleted"])
def test_damaged_cache_entry_is_converted_again_with_one_warning(
    stub_release, tmp_path: Path, caplog: pytest.LogCaptureFixture, damage: str
) -> None:
    cfg, calls, model = stub_release
    uae.create_model("uae_test.stub_release", pretrained=True)
    entry = _entry(tmp_path)
    weights = entry / "model.safetensors"
    if damage == "flipped bytes":
        _flip_bytes(weights)
    elif damage == "truncated":
        weights.write_bytes(weights.read_bytes()[:-1000])
    elif damage == "config.json deleted":
        (entry / "config.json").unlink()
    else:
        (entry / MANIFEST_NAME).unlink()  # an entry written before checksums, or half-deleted
    caplog.clear()
    with caplog.at_level("WARNING", logger="uae"):
        again = uae.create_model("uae_test.stub_release", pretrained=True)
    assert len(calls) == 2  # converted again, from the release files
    assert _same_weights(model, again)
    warnings = [r for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1 and "converting it again" in warnings[0].getMessage()
    assert _entry(tmp_path) == entry and not verify_manifest(entry, required=("config.json",))
    third = uae.create_model("uae_test.stub_release", pretrained=True)
    assert len(calls) == 2 and _same_weights(model, third)  # the rebuilt entry is used as it is


def test_temp_folder_of_a_killed_conversion_is_removed(stub_release, tmp_path: Path) -> None:
    cfg, calls, _ = stub_release
    uae.create_model("uae_test.stub_release", pretrained=True)
    entry = _entry(tmp_path)
    killed = (  # what a conversion killed while writing leaves: the real temp folder, its process gone
        "import os, sys; from pathlib import Path; from uae.files import temp_dir_for; "
        "cm = temp_dir_for(Path(sys.argv[1])); tmp = cm.__enter__(); (tmp / 'model.safetensors').write_bytes(b'x' * 4096); "
        "print(tmp); os._exit(9)"
    )
    env = {**os.environ, "PYTHONPATH": str(Path(uae.__file__).parents[1])}
    out = subprocess.run([sys.executable, "-c", killed, str(entry)], capture_output=True, text=True, env=env)
    left = Path(out.stdout.strip())
    assert out.returncode == 9 and left.is_dir() and left.parent == entry.parent
    from uae.files import temp_dir_for

    with temp_dir_for(entry) as live:  # a conversion of this process, still running: kept
        uae.create_model("uae_test.stub_release", pretrained=True)
        assert not left.exists() and live.is_dir()
    assert len(calls) == 1


def test_verified_entries_are_not_hashed_again(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A file whose size and mtime are the recorded ones (recorded well after it was written) is trusted
    without reading it; a changed mtime costs one hash, after which the record is refreshed."""
    import uae.files as files

    folder = tmp_path / "entry"
    folder.mkdir()
    (folder / "a.bin").write_bytes(b"a" * 1000)
    old = 1_600_000_000
    os.utime(folder / "a.bin", (old, old))
    files.write_manifest(folder)
    hashed: list[Path] = []
    real = files.file_sha256
    monkeypatch.setattr(files, "file_sha256", lambda p, *a: hashed.append(Path(p)) or real(p, *a))
    assert files.verify_manifest(folder, required=("a.bin",)) == [] and hashed == []
    os.utime(folder / "a.bin", (old + 5, old + 5))  # touched, content unchanged
    assert files.verify_manifest(folder) == [] and len(hashed) == 1
    assert files.verify_manifest(folder) == [] and len(hashed) == 1  # the record was refreshed
    (folder / "a.bin").write_bytes(b"b" * 1000)
    os.utime(folder / "a.bin", (old + 9, old + 9))
    assert files.verify_manifest(folder) == ["a.bin does not have the SHA-256 it was written with (damaged)"]
    (folder / "a.bin").write_bytes(b"b")  # a racy write (within the timestamp granularity) is hashed too
    assert "a.bin has 1 bytes, 1000 were written (truncated?)" in files.verify_manifest(folder)


def test_release_file_missing_offline_names_repo_and_file(stub_release, hf_home: Path) -> None:
    shutil.rmtree(hf_home / "hub" / "models--other--configs")
    with pytest.raises(
        FileNotFoundError, match=r"stub/config.json of Hub repo 'other/configs'.*not in the local Hub"
    ):
        uae.create_model("uae_test.stub_release", pretrained=True)


def test_untrained_architecture_names_its_recipe() -> None:
    with pytest.raises(FileNotFoundError, match="recipes/stage3_gan_dinov2_b.yaml"):
        uae.create_model("uae_small_p14_dinov2", pretrained=True)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_unreachable_endpoint_fails_fast_without_hf_hub_offline(tmp_path: Path) -> None:
    """No HF_HUB_OFFLINE, endpoint on a closed local port: one clear error within about a second (the first
    call includes imports: 0.3-0.6 s with current huggingface_hub, 1.2 s with 0.30), not after retries."""
    code = """
import time, uae
for what in ("create_model", "from_pretrained"):
    cls = uae.UAE if what == "from_pretrained" else None  # (lazy package import of torch/timm, not timed)
    t = time.time()
    try:
        if what == "create_model":
            uae.create_model("uae_base_p14_dinov2", pretrained=True)
        else:
            cls.from_pretrained("uae-zoo/not-cached")
    except FileNotFoundError as e:
        print(what, round(time.time() - t, 3), str(e).replace(chr(10), " "))
"""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("HF_HUB_OFFLINE", "HF_HUB_CACHE", "UAE_HUB_PROBE_TIMEOUT")
    }
    env.update(HF_HOME=str(tmp_path / "hf"), HF_ENDPOINT=f"http://127.0.0.1:{_free_port()}")
    res = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    lines = res.stdout.strip().splitlines()
    assert len(lines) == 2, res.stdout + res.stderr
    for line in lines:
        assert float(line.split()[1]) < 2.0, line
        assert "unreachable" in line and "not in the local Hub cache" in line, line
    assert "checkpoints/DINOv2-B/ep-last.pt of Hub repo 'weepiess2383/UAE'" in lines[0]
    assert "config.json of Hub repo 'uae-zoo/not-cached'" in lines[1]


def test_reachability_probe_is_cached(monkeypatch: pytest.MonkeyPatch) -> None:
    endpoint = f"http://127.0.0.1:{_free_port()}"
    monkeypatch.setattr(online, "_PROBES", {})
    assert online.reachable(endpoint) is False
    with socket.socket() as server:  # now something listens there, but the answer is cached per process
        server.bind(("127.0.0.1", int(endpoint.rsplit(":", 1)[1])))
        server.listen()
        assert online.reachable(endpoint) is False
        monkeypatch.setattr(online, "_PROBES", {})
        assert online.reachable(endpoint) is True


# ---------------------------------------------------------------------------------------------- publish
class FakeApi:
    calls: list = []

    def __init__(self, *a, **k) -> None:
        pass

    def create_repo(self, repo_id, private=False, exist_ok=False):
        FakeApi.calls.append(("create_repo", repo_id, private, exist_ok))

    def upload_folder(self, repo_id, folder_path, commit_message=""):
        FakeApi.calls.append(("upload_folder", repo_id, sorted(os.listdir(folder_path))))
        return "https://huggingface.co/fake/commit"


def test_publish_dry_run_writes_folder_and_card(stub_release, tmp_path: Path, monkeypatch, capsys) -> None:
    cfg, calls, model = stub_release

    class NoPush:
        def __init__(self, *a, **k):
            raise AssertionError("--dry-run must not create an HfApi")

    monkeypatch.setattr("uae.convert.publish.HfApi", NoPush)
    out = tmp_path / "pub"
    rc = cli_main(
        ["publish", "uae_test.stub_release", "--repo-id", "me/uae-stub", "--dry-run", "--out", str(out)]
    )
    assert rc == 0, capsys.readouterr().err
    assert {"README.md", "config.json", "model.safetensors"} <= {p.name for p in out.iterdir()}
    assert _same_weights(model, uae.UAE.from_pretrained(out))
    card = (out / "README.md").read_text()
    for needle in (
        "license: apache-2.0",
        "library_name: uae",
        "- uae",
        "not weights trained by uae",
        "authors/release",
        "other/configs",
        COMMIT,
        "stub licence note",
        "stub check",
        "max |diff| = 0 (tolerance 0)",
        "the authors' numbers, not measured by uae",
        "| imagenet1k_val | psnr | 12.5 |",
        "the stub authors' README",
        'uae.UAE.from_pretrained("me/uae-stub")',
    ):
        assert needle in card, needle


def test_publish_card_metadata_of_a_converted_release(stub_release, tmp_path: Path, monkeypatch) -> None:
    from uae.models.card import check_card

    monkeypatch.setattr("uae.convert.publish.HfApi", FakeApi)
    out = tmp_path / "pub"
    assert (
        cli_main(
            ["publish", "uae_test.stub_release", "--repo-id", "me/uae-stub", "--dry-run", "--out", str(out)]
        )
        == 0
    )
    text = (out / "README.md").read_text()
    data = check_card(text).data
    assert data.base_model == "authors/release"  # the release it was converted from
    assert {"converted", "stub-fmt", "dinov2"} <= set(data.tags)  # a release's encoder is pretrained
    assert data.pipeline_tag == "image-feature-extraction" and data.library_name == "uae"
    (result,) = data.eval_results
    assert (result.dataset_type, result.metric_type, result.metric_value) == (
        "ILSVRC/imagenet-1k",
        "psnr",
        12.5,
    )
    assert "not measured by uae" in result.source_name and result.source_url  # labelled as the authors'
    assert str(tmp_path) not in text


def test_publish_demo_card_is_uaes_own_with_measured_metrics(tmp_path: Path, monkeypatch, capsys) -> None:
    """uae_demo was trained and measured by uae (checkpoints/uae_demo/metrics.json): its published card says so."""
    from uae.models.card import check_card

    monkeypatch.delenv("UAE_CHECKPOINT_DIR", raising=False)
    out = tmp_path / "pub"
    assert (
        cli_main(["publish", "uae_demo.embedded", "--repo-id", "me/uae-demo", "--dry-run", "--out", str(out)])
        == 0
    )
    text = (out / "README.md").read_text()
    assert "not weights trained by uae" not in text and "No reconstruction metrics" not in text
    assert "weights trained by uae" in text and "recipes/demo.yaml" in text and "chelsea" in text
    assert 'uae.UAE.from_pretrained("me/uae-demo")' in text and "max |diff| = 0" in text
    data = check_card(text).data
    assert "dinov2" not in data.tags and data.base_model is None  # random-init encoder, trained from scratch
    measured = json.loads((out / "metrics.json").read_text())["heldout"]["uae"]
    by_type = {r.metric_type: r for r in data.eval_results}
    assert by_type["psnr"].metric_value == pytest.approx(measured["psnr"], abs=1e-3)
    assert by_type["ssim"].metric_value == pytest.approx(measured["ssim"], abs=1e-3)
    assert all(r.source_name is None for r in data.eval_results)  # uae's own measurement
    assert (out / "bands.png").is_file()  # the picture the card shows


@pytest.mark.parametrize("repo_id", ["org/name\n", "org/na me", "org/x..y", "org/name.git", "name", "a/b/c"])
def test_publish_refuses_repo_ids_the_hub_refuses(repo_id: str, tmp_path: Path, capsys) -> None:
    out = tmp_path / "pub"
    args = ["publish", "uae_demo.embedded", "--repo-id", repo_id, "--dry-run", "--out", str(out)]
    assert cli_main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("uae publish: error: --repo-id") and err.count("\n") == 1, err
    assert not out.exists()
    default = Path("publish") / repo_id.replace("/", "--")
    assert not default.exists()


def test_publish_pushes_with_hfapi(stub_release, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr("uae.convert.publish.HfApi", FakeApi)
    FakeApi.calls = []
    cfg, calls, model = stub_release
    ckpt = tmp_path / "local.safetensors"
    save_file(model.state_dict(), str(ckpt))
    conf = tmp_path / "c.json"
    conf.write_text(json.dumps({"format": "stub"}))
    out = tmp_path / "pub"
    args = ["publish", str(ckpt), "--from", "stub_fmt", "--file", f"config={conf}", "--repo-id", "me/x"]
    assert cli_main([*args, "--out", str(out), "--private", "--like", cfg.name]) == 0
    assert FakeApi.calls[0] == ("create_repo", "me/x", True, True)
    assert FakeApi.calls[1][:2] == ("upload_folder", "me/x")
    assert {"README.md", "config.json", "model.safetensors"} <= set(FakeApi.calls[1][2])
    assert "| imagenet1k_val | psnr | 12.5 |" in (out / "README.md").read_text()


def test_publish_errors_are_one_line(tmp_path: Path, capsys) -> None:
    assert (
        cli_main(["publish", "uae_test", "--repo-id", "me/x", "--dry-run", "--out", str(tmp_path / "o")]) == 2
    )
    assert "no pretrained weights named 'uae_test'" in capsys.readouterr().err
    assert cli_main(["publish", "x.pt", "--from", "nope", "--repo-id", "me/x", "--dry-run"]) == 2
    assert "unknown release format 'nope'" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------- dtypes
@pytest.mark.parametrize("dtype", [torch.int32, torch.bool])
def test_non_float_weights_are_refused(tmp_path: Path, dtype: torch.dtype) -> None:
    model = uae.create_model("uae_test")
    d = tmp_path / "m"
    model.save_pretrained(d)
    w = load_file(str(d / "model.safetensors"))
    w["decoder.pred.weight"] = w["decoder.pred.weight"].to(dtype)
    save_file(w, str(d / "model.safetensors"))
    with pytest.raises(UAELoadError, match=rf"decoder.pred.weight \({str(dtype)[6:]}\)"):
        uae.UAE.from_pretrained(d)

    from uae.convert.common import build_checked

    state = {k: v.clone() for k, v in model.state_dict().items()}
    state["encoder.vit.patch_embed.proj.weight"] = state["encoder.vit.patch_embed.proj.weight"].to(dtype)
    with pytest.raises(ValueError, match="encoder.vit.patch_embed.proj.weight"):
        build_checked(model.config, state, "test checkpoint")

    enc = {k[len("encoder.vit.") :]: v for k, v in model.state_dict().items() if k.startswith("encoder.vit.")}
    enc["blocks.0.attn.qkv.weight"] = enc["blocks.0.attn.qkv.weight"].to(dtype)
    with pytest.raises(ValueError, match=r"floating point.*blocks.0.attn.qkv.weight"):
        model.encoder.load_dinov2_state_dict(enc)


# ---------------------------------------------------------------------------------------------- export safety
def test_export_refuses_a_pickle_payload(tmp_path: Path, capsys) -> None:
    marker = tmp_path / "PWNED"

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    evil = tmp_path / "evil.ckpt"
    torch.save({"uae_config": {}, "state_dict": {}, "callbacks": Payload()}, evil)
    assert cli_main(["export", str(evil), str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "refused to load" in err and "system" in err, err
    assert not marker.exists() and not (tmp_path / "out").exists()

    text = tmp_path / "notes.ckpt"
    text.write_text("not a checkpoint\n")
    assert cli_main(["export", str(text), str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "is not a PyTorch/Lightning checkpoint" in err, err


def test_no_weights_only_false_in_the_package() -> None:
    root = Path(__file__).resolve().parents[1]
    offenders = [
        str(p.relative_to(root))
        for d in ("uae", "tests", "scripts")
        for p in (root / d).rglob("*.py")
        if "weights_only=False" in p.read_text() and p.name != "test_pretrained.py"
    ]
    assert offenders == []


def test_export_of_a_real_uae_fit_checkpoint(image_folder: Path, tmp_path: Path) -> None:
    """A checkpoint written by a tiny ``uae fit`` passes the weights_only loader and exports its EMA weights."""
    from test_recipes import RECIPES, tiny_overrides

    from uae.commands.lightning_cli import fit_main
    from uae.training import Stage1DecoderModule

    torch.manual_seed(0)
    out = tmp_path / "run"
    ckpt_cb = {
        "class_path": "lightning.pytorch.callbacks.ModelCheckpoint",
        "init_args": {"dirpath": str(tmp_path / "ckpt"), "save_last": True},
    }
    args = [
        "--config",
        str(RECIPES / "finetune_folder.yaml"),
        *tiny_overrides(image_folder, out, Stage1DecoderModule),
    ]
    args += ["--trainer.callbacks", json.dumps([ckpt_cb]), "--trainer.enable_checkpointing", "true"]
    args += ["--trainer.max_steps", "1", "--trainer.limit_val_batches", "0"]
    assert fit_main(args) == 0
    last = tmp_path / "ckpt" / "last.ckpt"
    assert cli_main(["export", str(last), str(tmp_path / "exported")]) == 0
    assert _same_weights(
        uae.UAE.from_pretrained(tmp_path / "exported"), uae.UAE.from_pretrained(out / "export")
    )
