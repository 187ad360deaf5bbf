"""Data: image discovery, transforms, the folder dataset (labels, corrupt files) and the DataModule."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from uae.data import IMAGE_EXTENSIONS, ImageFolderDataset, find_images, image_transform


def _save(path: Path, src: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.open(src).convert("RGB").save(path)
    return path


def test_find_images_sorted_case_insensitive_recursive(tmp_path, photo_paths):
    _save(tmp_path / "b" / "x.JPG", photo_paths[0])
    _save(tmp_path / "a" / "deep" / "y.png", photo_paths[1])
    _save(tmp_path / "z.webp", photo_paths[2])
    (tmp_path / "notes.txt").write_text("not an image")
    _save(tmp_path / ".hidden" / "h.png", photo_paths[0])
    found = find_images(tmp_path)
    assert [p.relative_to(tmp_path).as_posix() for p in found] == ["a/deep/y.png", "b/x.JPG", "z.webp"]
    assert [p.name for p in find_images(tmp_path, recursive=False)] == ["z.webp"]
    assert {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"} == set(IMAGE_EXTENSIONS)


def test_find_images_missing_and_empty(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        find_images(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "readme.txt").write_text("x")
    with pytest.raises(ValueError, match="empty"):
        find_images(tmp_path / "empty")


def test_val_transform_deterministic_center_crop(photo_paths):
    im = Image.open(photo_paths[0]).convert("RGB").crop((0, 0, 128, 96))  # landscape 128x96
    t = image_transform(32)
    a, b = t(im), t(im)
    assert a.shape == (3, 32, 32) and a.dtype == torch.float32
    assert torch.equal(a, b)
    assert 0.0 <= float(a.min()) and float(a.max()) <= 1.0
    # Center crop: the 96x96 middle of the image, resized.
    ref = image_transform(32)(im.crop((16, 0, 112, 96)))
    assert torch.allclose(a, ref, atol=1e-6)


def test_train_transform_random_and_paired_target(photo_paths):
    im = Image.open(photo_paths[1]).convert("RGB").crop((0, 0, 128, 80))
    torch.manual_seed(0)
    import random

    random.seed(0)
    t = image_transform(32, train=True, out_size=64)
    outs = [t(im) for _ in range(8)]
    assert all(set(o) == {"image", "target"} for o in outs)
    assert outs[0]["image"].shape == (3, 32, 32) and outs[0]["target"].shape == (3, 64, 64)
    # Random crops/flips differ between calls...
    assert any(not torch.equal(outs[0]["image"], o["image"]) for o in outs[1:])
    # ...but image and target always come from the same crop and flip.
    for o in outs:
        down = F.interpolate(
            o["target"][None], size=32, mode="bilinear", antialias=True, align_corners=False
        )[0]
        assert (down - o["image"]).abs().mean() < 0.03
    assert not isinstance(image_transform(32, out_size=32)(im), dict)


def test_dataset_labels_from_class_folders(image_folder):
    ds = ImageFolderDataset(image_folder, transform=image_transform(32))
    assert ds.classes == ["a", "b"] and len(ds) == 8
    s = ds[5]
    assert set(s) >= {"image", "label", "index", "path"}
    assert s["image"].shape == (3, 32, 32) and s["index"] == 5
    assert s["label"] == ds.classes.index(Path(s["path"]).parent.name)
    assert ImageFolderDataset(image_folder, labels=False)[0]["label"] == -1


def test_dataset_flat_folder_unlabelled(tmp_path, photo_paths):
    for p in photo_paths[:3]:
        shutil.copy(p, tmp_path / p.name)
    ds = ImageFolderDataset(tmp_path, transform=image_transform(16))
    assert ds.classes == [] and {ds[i]["label"] for i in range(3)} == {-1}
    with pytest.raises(ValueError, match="class sub-folders"):
        ImageFolderDataset(tmp_path, labels=True)


def test_corrupt_files_skipped_warned_once_and_counted(tmp_path, photo_paths, caplog):
    _save(tmp_path / "a.png", photo_paths[0])
    (tmp_path / "b.jpg").write_bytes(b"this is not a jpeg")
    data = (photo_paths[1]).read_bytes()
    (tmp_path / "c.png").write_bytes(data[: len(data) // 3])  # truncated PNG
    _save(tmp_path / "d.png", photo_paths[2])
    ds = ImageFolderDataset(tmp_path, transform=image_transform(16))
    with caplog.at_level(logging.WARNING, logger="uae.data.datasets"):
        for _ in range(2):  # two epochs
            samples = [ds[i] for i in range(len(ds))]
    assert ds.num_skipped == 2
    warnings = [r for r in caplog.records if "unreadable" in r.getMessage()]
    assert len(warnings) == 2  # one per bad file, not per access
    assert {Path(s["path"]).name for s in samples} == {"a.png", "d.png"}
    assert samples[1]["skipped"] == 2 and samples[1]["path"].endswith("d.png")
    assert all(s["image"].shape == (3, 16, 16) for s in samples)


def test_datamodule_folder_split_sizes_and_batches(image_folder):
    from uae.data import UAEDataModule

    dm = UAEDataModule(
        str(image_folder),
        image_size=32,
        out_size=64,
        batch_size=2,
        num_workers=0,
        pin_memory=False,
        val_fraction=0.25,
    )
    dm.setup("fit")
    train = {str(p) for p in dm.train_set.files}
    val = {str(p) for p in dm.val_set.files}
    assert len(val) == 2 and len(train) == 6 and not train & val
    dm2 = UAEDataModule(str(image_folder), image_size=32, batch_size=2, num_workers=0, val_fraction=0.25)
    dm2.setup("fit")
    assert {str(p) for p in dm2.val_set.files} == val  # deterministic split
    batch = next(iter(dm.train_dataloader()))
    assert batch["image"].shape == (2, 3, 32, 32) and batch["target"].shape == (2, 3, 64, 64)
    vb = next(iter(dm.val_dataloader()))
    vb2 = next(iter(dm.val_dataloader()))
    assert torch.equal(vb["image"], vb2["image"])  # deterministic val


def test_datamodule_missing_and_empty_root(tmp_path):
    from uae.data import UAEDataModule

    with pytest.raises(FileNotFoundError, match="does not exist"):
        UAEDataModule(str(tmp_path / "missing"), image_size=32)
    (tmp_path / "empty").mkdir()
    dm = UAEDataModule(str(tmp_path / "empty"), image_size=32, num_workers=0)
    with pytest.raises(ValueError, match="no images found"):
        dm.setup("fit")


def test_datamodule_imagenet_and_coco_layouts(tmp_path, photo_paths):
    from uae.data import UAEDataModule

    inet = tmp_path / "imagenet"
    for split in ("train", "val"):
        for wnid, p in zip(("n01", "n02"), photo_paths[:2]):
            _save(inet / split / wnid / f"{split}_{wnid}.JPEG", p)
    dm = UAEDataModule(str(inet), dataset="imagenet", image_size=32, batch_size=2, num_workers=0)
    dm.setup("fit")
    assert dm.train_set.classes == ["n01", "n02"] and len(dm.val_set) == 2
    assert [dm.val_set[i]["label"] for i in range(2)] == [0, 1]

    coco = tmp_path / "coco"
    _save(coco / "train2017" / "000001.jpg", photo_paths[0])
    _save(coco / "val2017" / "000002.jpg", photo_paths[1])
    (coco / "annotations").mkdir()
    (coco / "annotations" / "instances_val2017.json").write_text("{}")
    dm = UAEDataModule(str(coco), dataset="coco", image_size=32, batch_size=1, num_workers=0)
    dm.setup("fit")
    assert len(dm.train_set) == 1 and len(dm.val_set) == 1 and dm.val_set[0]["label"] == -1
    with pytest.raises(FileNotFoundError, match="train2017"):
        UAEDataModule(str(inet), dataset="coco", image_size=32, num_workers=0).setup("fit")


def test_find_images_symlink_loop_visits_each_folder_once(image_folder):
    """A directory link to an ancestor used to be followed until the OS refused (ELOOP): 8 images were
    listed 328 times (41 levels deep)."""
    (image_folder / "a" / "up").symlink_to("..", target_is_directory=True)
    (image_folder / "b" / "self").symlink_to(".", target_is_directory=True)
    found = find_images(image_folder)
    assert len(found) == 8 and len({p.resolve() for p in found}) == 8
    assert all("up" not in p.parts and "self" not in p.parts for p in found)
    ds = ImageFolderDataset(image_folder)
    assert len(ds) == 8 and ds.classes == ["a", "b"]


def test_find_images_counts_each_real_file_once_and_keeps_the_real_path(tmp_path, photo_paths):
    root = tmp_path / "data"
    for i in range(3):
        _save(root / "cats" / f"c{i}.png", photo_paths[i])
    _save(tmp_path / "elsewhere" / "dog.png", photo_paths[3])
    (root / "again").symlink_to(root / "cats", target_is_directory=True)  # a second way to the same folder
    (root / "alias.png").symlink_to(root / "cats" / "c0.png")  # a file link to a listed file
    (root / "dogs").symlink_to(tmp_path / "elsewhere", target_is_directory=True)  # a folder outside: kept
    (root / "aa_first").mkdir()
    (root / "aa_first" / "c1.png").symlink_to(root / "cats" / "c1.png")  # sorts before the real file
    found = [p.relative_to(root).as_posix() for p in find_images(root)]
    # Rule: one path per resolved real file; a path without links wins over one through a link.
    assert found == ["cats/c0.png", "cats/c1.png", "cats/c2.png", "dogs/dog.png"]
    assert [p.name for p in find_images(root, recursive=False)] == ["alias.png"]  # its target is not listed
