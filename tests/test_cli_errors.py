"""Wrong results that used to be silent (unreadable images, bad shards) and one-line CLI errors."""

from __future__ import annotations

import json
import os
import shutil
import struct
import zlib
from pathlib import Path

import pytest
import torch
from conftest import one_line_error
from PIL import Image
from safetensors.torch import load_file

from uae.cli import main
from uae.evaluation.shards import read_index, verify_export

COMMON = ["--num-workers", "0", "--no-progress", "--batch-size", "2", "--no-lpips", "--no-fid"]


@pytest.fixture
def model_dir(tiny_model, tmp_path) -> Path:
    path = tmp_path / "tiny_uae"
    tiny_model.save_pretrained(path)
    return path


@pytest.fixture
def mixed_folder(tmp_path, photo_paths) -> Path:
    """2 readable photos and 2 unreadable files (sorted: a.png ok, b.png bad, c.png ok, d.jpg truncated)."""
    root = tmp_path / "mixed"
    root.mkdir()
    shutil.copy(photo_paths[0], root / "a.png")
    (root / "b.png").write_text("not an image")
    shutil.copy(photo_paths[1], root / "c.png")
    Image.open(photo_paths[2]).convert("RGB").save(root / "d.jpg")
    data = (root / "d.jpg").read_bytes()
    (root / "d.jpg").write_bytes(data[: len(data) // 4])
    return root


# ------------------------------------------------------------------------------------ skipped images
def test_eval_skips_unreadable_images_and_counts_them_once(model_dir, mixed_folder, tmp_path, capsys):
    out = tmp_path / "e.json"
    argv = ["eval", "--model", str(model_dir), "--data", str(mixed_folder), "--output", str(out), *COMMON]
    argv[argv.index("--num-workers") + 1] = "2"  # two loader workers: each file still counted once
    assert main(argv) == 0
    res = json.loads(out.read_text())
    assert res["num_images"] == 2 and res["num_skipped"] == 2
    assert res["images"]["used"] == 2 and sorted(Path(p).name for p in res["images"]["skipped_files"]) == [
        "b.png",
        "d.jpg",
    ]
    assert "2 images, 2 skipped" in capsys.readouterr().out
    # The PSNR is that of the two readable images only (no duplicate weighting).
    clean = tmp_path / "clean"
    clean.mkdir()
    for name in ("a.png", "c.png"):
        shutil.copy(mixed_folder / name, clean / name)
    out2 = tmp_path / "e2.json"
    assert (
        main(["eval", "--model", str(model_dir), "--data", str(clean), "--output", str(out2), *COMMON]) == 0
    )
    ref = json.loads(out2.read_text())
    assert ref["num_skipped"] == 0 and res["psnr"] == pytest.approx(ref["psnr"], rel=1e-6)
    assert (out.stat().st_mode & 0o777) == 0o666 & ~_umask()


def _umask() -> int:
    m = os.umask(0o022)
    os.umask(m)
    return m


def test_encode_skips_unreadable_images_and_resumes(model_dir, mixed_folder, tmp_path, capsys):
    out = tmp_path / "lat"
    argv = ["encode", "--model", str(model_dir), "--data", str(mixed_folder), "--out", str(out)]
    argv += ["--shard-size", "2", "--num-workers", "0", "--no-progress", "--batch-size", "2"]
    assert main(argv) == 0, capsys.readouterr().err
    index = verify_export(out)
    assert index["complete"] and index["num_used"] == 2 and index["num_skipped"] == 2
    assert sorted(index["skipped_files"]) == ["b.png", "d.jpg"]
    assert [e["skipped"] for e in index["shards"]] == [[1], [3]]
    assert "2 images (2 skipped of 4)" in capsys.readouterr().out
    shard0 = out / "shard-00000.safetensors"
    assert (shard0.stat().st_mode & 0o777) == 0o666 & ~_umask()  # safetensors alone writes 0600
    # Re-running is a no-op (it used to crash on every re-run).
    mtime = shard0.stat().st_mtime_ns
    assert main(argv) == 0
    assert shard0.stat().st_mtime_ns == mtime and read_index(out)["num_skipped"] == 2


def test_encode_recomputes_a_truncated_finished_shard_and_removes_temp_files(
    model_dir, image_folder, tmp_path, capsys
):
    out = tmp_path / "lat"
    argv = ["encode", "--model", str(model_dir), "--data", str(image_folder), "--out", str(out)]
    argv += ["--shard-size", "3", "--num-workers", "0", "--no-progress", "--batch-size", "3"]
    assert main(argv) == 0
    shard1 = out / "shard-00001.safetensors"
    ref = {k: v.clone() for k, v in load_file(str(shard1)).items()}  # not backed by the file
    data = shard1.read_bytes()
    shard1.write_bytes(data[: len(data) // 2])  # e.g. an interrupted copy of the export folder
    (out / ".tmpAbC123").write_bytes(b"partial safetensors temp file")
    assert main(argv) == 0, capsys.readouterr().err
    again = load_file(str(shard1))
    assert again.keys() == ref.keys() and all(torch.equal(again[k], ref[k]) for k in ref)
    assert not list(out.glob(".tmp*"))
    index = verify_export(out)
    assert index["complete"] and index["num_used"] == 8


def test_probe_and_spectrum_results_state_used_and_skipped(model_dir, image_folder, tmp_path, capsys):
    (image_folder / "a" / "broken.png").write_text("nope")
    out = tmp_path / "p.json"
    common = ["--num-workers", "0", "--no-progress", "--batch-size", "4"]
    argv = ["probe", "--model", str(model_dir), "--data", str(image_folder), "--output", str(out)]
    assert main([*argv, "--epochs", "1", *common]) == 0, capsys.readouterr().err
    res = json.loads(out.read_text())
    tr, va = res["images"]["train"], res["images"]["val"]
    assert tr["used"] + va["used"] == 8 and tr["skipped"] + va["skipped"] == 1
    spec = tmp_path / "spec"
    argv = ["spectrum", "--model", str(model_dir), "--data", str(image_folder), "--out-dir", str(spec)]
    assert main([*argv, *common]) == 0
    images = json.loads((spec / "spectrum.json").read_text())["images"]
    assert images["used"] == 8 and images["skipped"] == 1


# ------------------------------------------------------------------------------------ one-line errors
def test_output_path_errors_are_one_line(model_dir, image_folder, photo_paths, tmp_path, capsys):
    a_file = tmp_path / "file.txt"
    a_file.write_text("x")
    img = str(photo_paths[0])
    rc = main(["reconstruct", img, "--model", str(model_dir), "--out", str(a_file)])
    one_line_error(capsys, rc, "--out", "existing file")
    data = ["--model", str(model_dir), "--data", str(image_folder)]
    rc = main(["encode", *data, "--out", str(a_file)])
    one_line_error(capsys, rc, "--out", "existing file")
    rc = main(["eval", *data, "--output", str(tmp_path)])
    one_line_error(capsys, rc, "--output", "existing folder")
    rc = main(["spectrum", *data, "--out-dir", str(a_file / "sub")])
    one_line_error(capsys, rc, "--out-dir", "existing file")
    rc = main(["convert", "--from", "rae", img, "--out", str(a_file)])
    one_line_error(capsys, rc, "--out", "existing file")
    assert a_file.read_text() == "x"


def test_bands_never_overwrites_an_input(model_dir, photo_paths, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    shutil.copy(photo_paths[0], tmp_path / "bands.png")
    before = (tmp_path / "bands.png").read_bytes()
    rc = main(["bands", "bands.png", "--model", str(model_dir)])  # default --out is bands.png
    one_line_error(capsys, rc, "input")
    assert (tmp_path / "bands.png").read_bytes() == before
    # reconstruct into the inputs' own folder: new names, the inputs stay as they were
    shutil.copy(photo_paths[1], tmp_path / "x.png")
    assert main(["reconstruct", "bands.png", "x.png", "--model", str(model_dir), "--out", "."]) == 0
    assert (tmp_path / "bands.png").read_bytes() == before
    assert {"bands_2.png", "x_2.png", "bands_3.png"} <= set(os.listdir(tmp_path))


def test_cuda_device_without_gpu_is_one_line(model_dir, image_folder, photo_paths, monkeypatch, capsys):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    rc = main(["reconstruct", str(photo_paths[0]), "--model", str(model_dir), "--device", "cuda"])
    one_line_error(capsys, rc, "--device cuda", "CUDA is not available")
    rc = main(["eval", "--model", str(model_dir), "--data", str(image_folder), "--device", "cuda"])
    one_line_error(capsys, rc, "CUDA is not available")
    rc = main(["eval", "--model", str(model_dir), "--data", str(image_folder), "--device", "gpu0"])
    one_line_error(capsys, rc, "not a torch device")


def test_truncated_weights_name_the_file(model_dir, photo_paths, capsys):
    weights = model_dir / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-100])
    rc = main(["reconstruct", str(photo_paths[0]), "--model", str(model_dir)])
    one_line_error(capsys, rc, str(weights), "truncated")


@pytest.mark.parametrize(
    ("key", "value", "needle"),
    [
        ("img_size", "224", "img_size must be an int"),
        ("num_bands", 3.0, "num_bands must be an int"),
        ("encoder_dim", -128, "encoder_dim must be >= 1"),
        ("patch_size", 0, "patch_size must be >= 1"),
        ("latent_norm", "no", "latent_norm must be a bool"),
    ],
)
def test_bad_config_values_are_one_line_naming_the_field(model_dir, photo_paths, capsys, key, value, needle):
    cfg = json.loads((model_dir / "config.json").read_text())
    cfg[key] = value
    (model_dir / "config.json").write_text(json.dumps(cfg))
    rc = main(["bands", str(photo_paths[0]), "--model", str(model_dir), "--out", str(model_dir / "b.png")])
    one_line_error(capsys, rc, needle)


@pytest.mark.parametrize(
    ("cmd", "flag", "value"),
    [
        ("eval", "--batch-size", "0"),
        ("encode", "--limit", "0"),
        ("spectrum", "--num-workers", "-1"),
        ("probe", "--val-fraction", "1.5"),
        ("filtered-eval", "--radius", "nan"),
        ("reconstruct", "--batch-size", "0"),
    ],
)
def test_bad_numbers_are_one_line(cmd, flag, value, model_dir, image_folder, photo_paths, capsys):
    if cmd == "reconstruct":
        argv = [cmd, str(photo_paths[0]), "--model", str(model_dir), flag, value]
    else:
        argv = [cmd, "--model", str(model_dir), "--data", str(image_folder), flag, value]
        argv += ["--out", "x"] if cmd == "encode" else []
    rc = main(argv)
    one_line_error(capsys, rc, flag, value)


def test_image_over_the_pixel_budget_on_the_cli_is_one_line(model_dir, tmp_path, capsys):
    huge = tmp_path / "huge.png"  # a PNG header claiming 13000x13000 pixels, no pixel data
    ihdr = struct.pack(">IIBBBBB", 13000, 13000, 8, 2, 0, 0, 0)
    crc = struct.pack(">I", zlib.crc32(b"IHDR" + ihdr) & 0xFFFFFFFF)
    iend = struct.pack(">I", 0) + b"IEND" + struct.pack(">I", zlib.crc32(b"IEND") & 0xFFFFFFFF)
    huge.write_bytes(b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + b"IHDR" + ihdr + crc + iend)
    rc = main(["reconstruct", str(huge), "--model", str(model_dir), "--out", str(tmp_path / "o")])
    one_line_error(capsys, rc, "huge.png", "13000x13000", "budget")


def test_unknown_option_is_one_line(capsys):
    one_line_error(capsys, main(["models", "--nope"]), "unrecognized arguments: --nope")


def test_export_with_a_shard_of_only_unreadable_images(tiny_model, mixed_folder, tmp_path):
    from uae.evaluation.common import build_dataset
    from uae.evaluation.latents import export_latents
    from uae.evaluation.shards import load_shard

    ds = build_dataset(mixed_folder, 32)  # a ok, b bad, c ok, d bad
    index = export_latents(tiny_model, ds, tmp_path / "x", what=("latent",), shard_size=1, progress=False)
    assert [e["file"] is None for e in index["shards"]] == [False, True, False, True]
    assert index["complete"] and index["stats"]["latent"]["count"] == 2 * 8 * 8
    assert load_shard(tmp_path / "x", 1) == {} and load_shard(tmp_path / "x", 2)["index"].tolist() == [2]
    assert verify_export(tmp_path / "x")["num_skipped"] == 2
