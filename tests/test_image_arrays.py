"""Image arrays (``.npy`` / ADM ``.npz``): reading, damage, packing, and the commands that read them."""

from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from uae.data.array_writer import pack_images
from uae.data.arrays import ImageArray, ImageArrayDataset
from uae.data.datasets import ImageFolderDataset, collate_skipping
from uae.data.transforms import image_transform
from uae.errors import DamagedFileError, InputError, MissingFileError, UnsafeFileError
from uae.evaluation.common import build_dataset, make_loader, resolve_data
from uae.evaluation.options import RunOptions, default_num_workers
from uae.evaluation.packing import crop_transform, pack_dataset


@pytest.fixture
def images() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (6, 12, 10, 3), dtype=np.uint8)


def _files(tmp_path: Path, images: np.ndarray) -> dict[str, Path]:
    paths = {k: tmp_path / f"{k}.{'npy' if k == 'npy' else 'npz'}" for k in ("npy", "stored", "compressed")}
    np.save(paths["npy"], images)
    np.savez(paths["stored"], images, np.arange(len(images)) % 3)
    np.savez_compressed(paths["compressed"], images)
    return paths


def test_reads_npy_and_both_npz_kinds_image_by_image(tmp_path, images):
    for kind, path in _files(tmp_path, images).items():
        a = ImageArray(path)
        assert a.shape == images.shape and a.image_size == (12, 10), kind
        for i in range(len(images)):
            np.testing.assert_array_equal(a[i], images[i])
        np.testing.assert_array_equal(a[-1], images[-1])
        np.testing.assert_array_equal(a.read_run(1, 5), images[1:5])
        with pytest.raises(IndexError):
            a[len(images)]
        with pytest.raises(IndexError):
            a.read_run(3, 3)
        assert (a.labels is not None) == (kind == "stored")
    assert ImageArray(tmp_path / "stored.npz").labels.tolist() == [0, 1, 2, 0, 1, 2]
    a = ImageArray(tmp_path / "npy.npy")
    assert a._memory is None and ImageArray(tmp_path / "compressed.npz")._memory is not None


def test_a_returned_image_is_a_writable_copy(tmp_path, images):
    np.save(tmp_path / "a.npy", images)
    a = ImageArray(tmp_path / "a.npy")
    x = a[0]
    x[:] = 0
    np.testing.assert_array_equal(a[0], images[0])


@pytest.mark.parametrize("cut", [1, 100, 6 * 12 * 10 * 3 - 1])
def test_truncated_npy_is_damaged_when_opened(tmp_path, images, cut):
    p = tmp_path / "a.npy"
    np.save(p, images)
    data = p.read_bytes()
    p.write_bytes(data[:-cut])
    with pytest.raises(DamagedFileError, match="truncated"):
        ImageArray(p)


def test_appended_bytes_and_garbage_are_damaged(tmp_path, images):
    p = tmp_path / "a.npy"
    np.save(p, images)
    with p.open("ab") as f:
        f.write(b"\0" * 30)
    with pytest.raises(DamagedFileError, match="longer than its header"):
        ImageArray(p)
    p.write_bytes(b"not an array at all" * 10)
    with pytest.raises(DamagedFileError, match="not a readable NumPy array"):
        ImageArray(p)
    z = tmp_path / "a.npz"
    z.write_bytes(b"PK not a zip")
    with pytest.raises(DamagedFileError, match="npz archive"):
        ImageArray(z)


def test_truncated_npz_is_damaged(tmp_path, images):
    p = _files(tmp_path, images)["stored"]
    data = p.read_bytes()
    p.write_bytes(data[: len(data) // 2])
    with pytest.raises(DamagedFileError):
        ImageArray(p)


def test_file_cut_while_in_use_fails_the_read(tmp_path, images):
    p = tmp_path / "a.npy"
    np.save(p, images)
    a = ImageArray(p)
    os.truncate(p, p.stat().st_size - 5)
    np.testing.assert_array_equal(a[0], images[0])
    with pytest.raises(DamagedFileError, match="cut short"):
        a[len(images) - 1]
    with pytest.raises(DamagedFileError, match="cut short"):
        a.read_run(0, len(images))


def test_pickles_are_refused_without_running_them(tmp_path, images):
    p = tmp_path / "obj.npy"
    np.save(p, np.array([{"a": 1}, None], dtype=object), allow_pickle=True)
    with pytest.raises(UnsafeFileError, match="pickle"):
        ImageArray(p)
    z = tmp_path / "obj.npz"
    np.savez(z, images, np.array([1, "x", None] * 2, dtype=object))
    with pytest.raises(UnsafeFileError, match="pickle"):
        ImageArray(z)


@pytest.mark.parametrize(
    "array",
    [
        np.zeros((2, 4, 4), np.uint8),
        np.zeros((2, 4, 4, 1), np.uint8),
        np.zeros((2, 4, 4, 3), np.float32),
        np.zeros((0, 4, 4, 3), np.uint8),
    ],
)
def test_not_rgb_uint8_images_is_an_input_error(tmp_path, array):
    p = tmp_path / "a.npy"
    np.save(p, array)
    with pytest.raises(InputError, match=r"\(N, H, W, 3\) uint8|no images"):
        ImageArray(p)


def test_fortran_order_missing_file_and_bad_suffix(tmp_path, images):
    p = tmp_path / "f.npy"
    np.save(p, np.asfortranarray(images))
    with pytest.raises(InputError, match="Fortran"):
        ImageArray(p)
    with pytest.raises(MissingFileError):
        ImageArray(tmp_path / "none.npy")
    (tmp_path / "a.raw").write_bytes(b"x")
    with pytest.raises(InputError, match=".npy"):
        ImageArray(tmp_path / "a.raw")


def test_npz_members_are_checked(tmp_path, images):
    z = tmp_path / "a.npz"
    np.savez(z, images=images)
    with pytest.raises(DamagedFileError, match="no 'arr_0'"):
        ImageArray(z)
    np.savez(z, images, np.arange(3))
    with pytest.raises(DamagedFileError, match="labels"):
        ImageArray(z)
    np.savez(z, images, np.arange(6), classes=np.array(["a", "b"]))
    with pytest.raises(DamagedFileError, match="classes"):
        ImageArray(z)


def test_dataset_samples_equal_the_transform_of_png_files(tmp_path, images):
    np.save(tmp_path / "a.npy", images)
    folder = tmp_path / "png"
    folder.mkdir()
    for i, im in enumerate(images):
        Image.fromarray(im).save(folder / f"{i:02d}.png")
    for transform in (
        image_transform(8, out_size=6),
        image_transform(10, uint8=True),
        crop_transform(7, "adm"),
    ):
        arr = ImageArrayDataset(tmp_path / "a.npy", transform)
        fold = ImageFolderDataset(folder, transform=transform, labels=False)
        for i in range(len(images)):
            a, b = arr[i], fold[i]
            for k in ("image", "target"):
                assert (k in a) == (k in b)
                if k in a:
                    assert torch.equal(a[k], b[k]), (transform, i, k)
            assert a["index"] == i and a["label"] == -1 and a["path"].endswith(f"a.npy[{i}]")


@pytest.mark.parametrize("uint8", [False, True])
def test_batched_reads_equal_one_at_a_time(tmp_path, uint8):
    square = np.random.default_rng(1).integers(0, 256, (7, 9, 9, 3), dtype=np.uint8)
    np.save(tmp_path / "s.npy", square)
    ds = ImageArrayDataset(tmp_path / "s.npy", image_transform(9, uint8=uint8))
    assert ds._passes_through() is uint8
    for idx in ([0, 1, 2, 3], [4, 2, 6], [5], [5, 6]):
        got = ds.__getitems__(idx)
        want = [ds[i] for i in idx]
        assert [g["index"] for g in got] == idx
        for g, w in zip(got, want, strict=True):
            assert torch.equal(g["image"], w["image"]) and g["image"].dtype == w["image"].dtype
    assert ImageArrayDataset(tmp_path / "s.npy", image_transform(8))._passes_through() is None
    assert ImageArrayDataset(tmp_path / "s.npy", image_transform(9, train=True))._passes_through() is None
    assert ImageArrayDataset(tmp_path / "s.npy", image_transform(9, out_size=5))._passes_through() is None


def test_worker_processes_read_the_same_batches(tmp_path, images):
    np.savez(tmp_path / "a.npz", images, np.arange(6) % 2)
    ds = build_dataset(tmp_path / "a.npz", 8, labels=True)
    batches = {w: list(make_loader(ds, 4, w, device="cpu")) for w in (0, 2)}
    assert [b["index"].tolist() for b in batches[2]] == [[0, 1, 2, 3], [4, 5]]
    for a, b in zip(batches[0], batches[2], strict=True):
        assert torch.equal(a["image"], b["image"]) and torch.equal(a["label"], b["label"])
    assert batches[0][0]["label"].tolist() == [0, 1, 0, 1]


def test_labels_limit_and_classes(tmp_path, images):
    np.save(tmp_path / "a.npy", images)
    with pytest.raises(InputError, match="labels"):
        ImageArrayDataset(tmp_path / "a.npy", labels=True)
    np.savez(
        tmp_path / "b.npz", images, np.array([0, 1, 2, 2, 1, 0]), classes=np.array(["cat", "dog", "eel"])
    )
    ds = ImageArrayDataset(tmp_path / "b.npz", limit=4)
    assert len(ds) == 4 and ds.classes == ["cat", "dog", "eel"] and ds.targets == [0, 1, 2, 2]
    # another set's classes: mapped through the names, unknown names -> -1
    ds = ImageArrayDataset(tmp_path / "b.npz", classes=["dog", "cat"])
    assert ds.targets == [1, 0, -1, -1, 0, 1]
    assert ImageArrayDataset(tmp_path / "b.npz", labels=False).targets == [-1] * 6
    with pytest.raises(InputError, match="limit"):
        ImageArrayDataset(tmp_path / "b.npz", limit=0)


def test_pack_images_rewrites_the_header_for_fewer_images(tmp_path, images):
    x = torch.from_numpy(images).permute(0, 3, 1, 2)
    res = pack_images([x[:2], x[2:5]], tmp_path / "p.npy", count=1000)
    assert res["shape"] == [5, 12, 10, 3]
    np.testing.assert_array_equal(np.load(tmp_path / "p.npy"), images[:5])
    with (tmp_path / "p.npy").open("rb") as f:
        np.lib.format.read_magic(f)
        np.lib.format.read_array_header_1_0(f)
        assert f.tell() % 64 == 0
    res = pack_images(iter([x]), tmp_path / "p.npz", count=6, labels=[1, 0, 1, 0, 1, 0], classes=["u", "v"])
    with np.load(tmp_path / "p.npz") as z:
        np.testing.assert_array_equal(z["arr_0"], images)
        assert z["arr_1"].tolist() == [1, 0, 1, 0, 1, 0] and z["classes"].tolist() == ["u", "v"]
        assert all(
            i.compress_type == zipfile.ZIP_STORED for i in zipfile.ZipFile(tmp_path / "p.npz").infolist()
        )
    assert ImageArrayDataset(tmp_path / "p.npz").classes == ["u", "v"]


def test_pack_images_refuses_bad_input_and_leaves_nothing(tmp_path, images):
    x = torch.from_numpy(images).permute(0, 3, 1, 2)
    with pytest.raises(InputError, match="uint8"):
        pack_images([x.float()], tmp_path / "p.npy", count=6)
    with pytest.raises(InputError, match="one size"):
        pack_images([x, x[:, :, :5]], tmp_path / "p.npy", count=12)
    with pytest.raises(InputError, match="more than"):
        pack_images([x, x], tmp_path / "p.npy", count=8)
    with pytest.raises(InputError, match="npz"):
        pack_images([x], tmp_path / "p.npy", count=6, labels=[0] * 6)
    with pytest.raises(InputError, match="labels for"):
        pack_images([x], tmp_path / "p.npz", count=6, labels=[0] * 5)
    with pytest.raises(InputError, match="no images"):
        pack_images([], tmp_path / "p.npy", count=6)

    def failing():
        yield x[:3]
        raise RuntimeError("disk on fire")

    np.save(tmp_path / "p.npy", images[:1])  # an older file stays as it was
    with pytest.raises(RuntimeError, match="disk on fire"):
        pack_images(failing(), tmp_path / "p.npy", count=6)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p.npy"]
    assert np.load(tmp_path / "p.npy").shape == (1, 12, 10, 3)


def test_pack_dataset_of_a_class_folder(image_folder, tmp_path):
    (image_folder / "b" / "broken.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    opts = RunOptions(batch_size=3, draft=False)
    res = pack_dataset(str(image_folder), tmp_path / "p.npz", 16, options=opts)
    assert res["labels"] and res["classes"] == ["a", "b"] and res["shape"] == [8, 16, 16, 3]
    assert res["images"]["skipped"] == 1 and "broken.jpg" in next(iter(res["images"]["skipped_files"]))
    folder = ImageFolderDataset(
        image_folder, transform=crop_transform(16), labels=True, on_error="skip", draft=False
    )
    good = [s for s in (folder[i] for i in range(len(folder))) if isinstance(s, dict)]
    arr = ImageArrayDataset(tmp_path / "p.npz", image_transform(16, uint8=True))
    assert arr.classes == ["a", "b"] and arr.targets == [s["label"] for s in good]
    for i, s in enumerate(good):
        assert torch.equal(arr[i]["image"], s["image"])
    adm = pack_dataset(str(image_folder), tmp_path / "adm.npy", 16, crop="adm", options=opts)
    assert not adm["labels"] and ImageArray(tmp_path / "adm.npy").labels is None
    np.testing.assert_array_equal(
        ImageArray(tmp_path / "adm.npy")[0],
        crop_transform(16, "adm")(Image.open(good[0]["path"])).permute(1, 2, 0),
    )
    with pytest.raises(InputError, match="npz"):
        pack_dataset(str(image_folder), tmp_path / "p.npy", 16, labels=True, options=opts)
    with pytest.raises(InputError, match="crop"):
        pack_dataset(str(image_folder), tmp_path / "p.npy", 16, crop="square", options=opts)
    with pytest.raises(InputError, match=".npy or .npz"):
        pack_dataset(str(image_folder), tmp_path / "p.png", 16, options=opts)


def test_resolve_data_and_default_workers(tmp_path, images):
    np.save(tmp_path / "a.npy", images)
    assert resolve_data(str(tmp_path / "a.npy")) == tmp_path / "a.npy"
    with pytest.raises(MissingFileError, match="image array"):
        resolve_data(str(tmp_path / "b.npy"))
    assert default_num_workers("cpu", cores=8, decoded=True) == 0
    assert default_num_workers("cpu", cores=8) == 4
    assert default_num_workers("cuda", cores=8, decoded=True) >= 1


def test_eval_of_a_pack_equals_eval_of_the_folder(tiny_model, image_folder, tmp_path, empty_hub, capsys):
    """``uae pack`` at the model's size, then ``uae eval`` of the pack: the metrics of the folder decoded
    at full size, with no loader workers by default on the CPU."""
    from uae.cli import main

    size = tiny_model.config.img_size
    assert size == tiny_model.config.output_size
    model_dir = tmp_path / "m"
    tiny_model.save_pretrained(model_dir)
    pack = tmp_path / "val.npz"
    assert (
        main(
            ["pack", "--data", str(image_folder), "--output", str(pack), "--size", str(size), "--no-progress"]
        )
        == 0
    )
    assert f"8 images of {image_folder}" in capsys.readouterr().out
    results = {}
    for name, data, extra in (
        ("folder", image_folder, ["--no-draft", "--num-workers", "0"]),
        ("pack", pack, []),
    ):
        out = tmp_path / f"{name}.json"
        argv = ["eval", "--model", str(model_dir), "--data", str(data), "--output", str(out), "--no-progress"]
        assert main([*argv, "--batch-size", "3", "--no-lpips", "--no-fid", *extra]) == 0
        results[name] = json.loads(out.read_text())
    assert results["pack"]["num_images"] == results["folder"]["num_images"] == 8
    assert results["pack"]["psnr"] == results["folder"]["psnr"]
    assert results["pack"]["ssim"] == results["folder"]["ssim"]
    assert (
        main(["pack", "--data", str(image_folder), "--output", str(tmp_path / "x.png"), "--size", "8"]) == 2
    )
    err = capsys.readouterr().err
    assert "--output" in err and "\n" not in err.strip()


def test_run_options_read_a_pack_in_the_main_process_on_the_cpu(tmp_path, images):
    from uae.commands import eval as eval_cmd
    from uae.commands._options import run_options

    np.save(tmp_path / "a.npy", images)
    for data, want in ((str(tmp_path / "a.npy"), 0), (str(tmp_path), default_num_workers("cpu"))):
        args = eval_cmd.build_parser().parse_args(["--model", "m", "--data", data, "--device", "cpu"])
        assert run_options(args).num_workers == want
    args = eval_cmd.build_parser().parse_args(
        ["--model", "m", "--data", str(tmp_path / "a.npy"), "--device", "cpu", "--num-workers", "2"]
    )
    assert run_options(args).num_workers == 2


def test_datamodule_validates_on_a_pack(image_folder, tmp_path):
    from uae.data import UAEDataModule

    pack_dataset(str(image_folder), tmp_path / "val.npz", 16, options=RunOptions(draft=False))
    dm = UAEDataModule(str(image_folder), image_size=16, val_root=str(tmp_path / "val.npz"), batch_size=2)
    dm.setup("fit")
    assert isinstance(dm.val_set, ImageArrayDataset) and len(dm.val_set) == 8
    assert dm.val_set.classes == dm.train_set.classes == ["a", "b"]
    batch = next(iter(dm.val_dataloader()))
    assert batch["image"].shape == (2, 3, 16, 16) and batch["label"].tolist() == [0, 0]


def test_collate_of_array_samples_matches_folder_batches(tmp_path, images):
    np.save(tmp_path / "a.npy", images)
    ds = ImageArrayDataset(tmp_path / "a.npy", image_transform(10))
    batch = next(iter(DataLoader(ds, batch_size=4, collate_fn=collate_skipping)))
    assert batch["image"].shape == (4, 3, 10, 10) and batch["unreadable"] == []


def test_encode_and_probe_read_a_labelled_pack(tiny_model, image_folder, tmp_path, capsys):
    from uae.cli import main
    from uae.evaluation.shards import verify_export

    model_dir = tmp_path / "m"
    tiny_model.save_pretrained(model_dir)
    pack = tmp_path / "p.npz"
    size = str(tiny_model.config.img_size)
    assert (
        main(["pack", "--data", str(image_folder), "--output", str(pack), "--size", size, "--no-progress"])
        == 0
    )
    out = tmp_path / "lat"
    argv = ["encode", "--model", str(model_dir), "--data", str(pack), "--out", str(out), "--no-progress"]
    assert main([*argv, "--shard-size", "5"]) == 0
    index = verify_export(out)
    assert index["complete"] and index["num_images"] == 8 and index["classes"] == ["a", "b"]
    assert (out / "files.txt").read_text().splitlines()[:2] == ["p.npz[0]", "p.npz[1]"]
    probe_out = tmp_path / "probe.json"
    argv = [
        "probe",
        "--model",
        str(model_dir),
        "--data",
        str(pack),
        "--output",
        str(probe_out),
        "--no-progress",
    ]
    assert main(argv) == 0
    assert "(2 classes)" in capsys.readouterr().out
    assert json.loads(probe_out.read_text())["classes"] == ["a", "b"]


def test_reference_npz_images_are_read_in_place_and_checked(tmp_path, images):
    from uae.generation.metrics import read_reference_npz

    np.savez(tmp_path / "ref.npz", arr_0=images)
    ref = read_reference_npz(tmp_path / "ref.npz")
    assert isinstance(ref["arr_0"], ImageArray) and ref["arr_0"]._memory is None
    np.testing.assert_array_equal(ref["arr_0"].read_run(0, 6), images)
    data = (tmp_path / "ref.npz").read_bytes()
    (tmp_path / "cut.npz").write_bytes(data[:200])  # a download cut short
    with pytest.raises(DamagedFileError) as e:
        read_reference_npz(tmp_path / "cut.npz")
    assert e.value.param == "reference"
    np.savez(tmp_path / "obj.npz", arr_0=np.array([None, 1], dtype=object))
    with pytest.raises(UnsafeFileError, match="pickle") as e:
        read_reference_npz(tmp_path / "obj.npz")
    assert e.value.param == "reference"


def test_reads_where_the_system_has_no_positioned_reads(tmp_path, images, monkeypatch):
    """Windows has neither ``os.pread`` nor ``os.preadv``: seek + read under the array's lock."""
    import uae.data.arrays as arrays

    class NoPread:
        def __getattr__(self, name: str):
            if name in ("pread", "preadv"):
                raise AttributeError(name)
            return getattr(os, name)

    np.save(tmp_path / "a.npy", images)
    a = ImageArray(tmp_path / "a.npy")
    monkeypatch.setattr(arrays, "os", NoPread())
    np.testing.assert_array_equal(a[4], images[4])
    np.testing.assert_array_equal(a.read_run(1, 6), images[1:6])


def test_a_killed_packs_temp_file_is_removed_by_the_next_run(tmp_path, images):
    from uae.data.array_writer import remove_stale_temp_files

    stale = tmp_path / ".tmp-abc123-p.npy"
    fresh = tmp_path / ".tmp-def456-p.npy"  # a pack of the same output still running
    other = tmp_path / ".tmp-ghi789-q.npy"  # another output's
    other2 = tmp_path / ".tmp-jkl012-q-p.npy"  # the output q-p.npy's
    for f in (stale, fresh, other, other2):
        f.write_bytes(b"x" * 100)
    for f in (stale, other, other2):
        os.utime(f, (1e9, 1e9))
    pack_images([torch.from_numpy(images).permute(0, 3, 1, 2)], tmp_path / "p.npz", count=6)
    assert not stale.exists() and fresh.exists() and other.exists() and other2.exists()
    assert remove_stale_temp_files(tmp_path / "p.npz", stale_seconds=0) == [fresh]


def test_killed_pack_leaves_the_previous_file_and_a_temp_the_next_run_removes(tmp_path, images):
    import signal
    import subprocess
    import sys
    import time

    np.save(tmp_path / "p.npy", images[:1])  # the previous pack
    script = (
        "import time, torch\n"
        "from uae.data.array_writer import pack_images\n"
        "def batches():\n"
        "    yield torch.zeros(2, 3, 12, 10, dtype=torch.uint8)\n"
        "    print('written', flush=True)\n"
        "    time.sleep(60)\n"
        f"pack_images(batches(), {str(tmp_path / 'p.npy')!r}, count=6)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "written"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    temps = [p for p in tmp_path.iterdir() if p.name.startswith(".tmp-")]
    assert len(temps) == 1 and temps[0].name.endswith("-p.npy")
    np.testing.assert_array_equal(np.load(tmp_path / "p.npy"), images[:1])
    os.utime(temps[0], (time.time() - 3600,) * 2)
    pack_images([torch.from_numpy(images).permute(0, 3, 1, 2)], tmp_path / "p.npy", count=6)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p.npy"]
    np.testing.assert_array_equal(np.load(tmp_path / "p.npy"), images)


def test_a_release_pipeline_sees_an_adm_pack_as_its_folder(image_folder, tmp_path, empty_hub):
    """A model with the releases' evaluation pipeline (ADM crop at ``resize_size``) evaluated on a pack made
    with ``crop="adm"`` at that size: the folder's numbers (the ADM crop of an ADM crop is itself)."""
    import uae
    from uae.data.transforms import resolve_data_config
    from uae.evaluation.reconstruction import evaluate_dataset

    torch.manual_seed(0)
    model = uae.create_model("uae_test", preprocess="adm").eval()
    side = resolve_data_config(model)["resize_size"]
    opts = RunOptions(batch_size=3, progress=False)
    pack_dataset(str(image_folder), tmp_path / "adm.npz", side, crop="adm", options=opts)
    metrics = {"lpips": False, "fid": False}
    folder = evaluate_dataset(model, str(image_folder), metrics=metrics, options=opts)
    packed = evaluate_dataset(model, str(tmp_path / "adm.npz"), metrics=metrics, options=opts)
    assert packed["num_images"] == folder["num_images"] == 8
    assert (packed["psnr"], packed["ssim"]) == (folder["psnr"], folder["ssim"])


def test_pack_command_lists_the_images_it_left_out(image_folder, tmp_path, capsys):
    from uae.cli import main

    (image_folder / "a" / "bad.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    argv = ["pack", "--data", str(image_folder), "--output", str(tmp_path / "p.npz"), "--size", "8"]
    assert main([*argv, "--no-progress", "--num-workers", "0"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith(f"uae pack: 8 images of {image_folder}") and "2 classes" in out[0]
    assert out[1:] == [
        "  skipped 1 unreadable or too large image(s):",
        f"    cannot read image {image_folder / 'a' / 'bad.jpg'}: not an image (no format Pillow knows recognised it)",
    ]
