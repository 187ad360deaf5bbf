"""Reading images: 16/32-bit and float files scaled (not clipped), the pixel budget, file permissions."""

from __future__ import annotations

import logging
import os
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import uae
from uae.data import ImageFolderDataset, image_transform
from uae.data.image_io import ImageTooLargeError, read_image


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return (
        struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    )


def write_png16_rgb(path: Path, rgb16: np.ndarray) -> None:
    """A 16-bit-per-channel RGB PNG (colour type 2, bit depth 16), written with zlib + struct."""
    h, w, _ = rgb16.shape
    raw = b"".join(b"\x00" + rgb16[y].astype(">u2").tobytes() for y in range(h))
    ihdr = struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", ihdr)
        + _png_chunk(b"IDAT", zlib.compress(raw))
        + _png_chunk(b"IEND", b"")
    )


def write_png_header_only(path: Path, w: int, h: int) -> None:
    """A PNG whose header claims ``w x h`` pixels, with no pixel data (a decode would fail)."""
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IEND", b""))


@pytest.fixture
def photo8(photo_paths) -> np.ndarray:
    """An 8-bit RGB photo ``(128, 128, 3)``."""
    return np.asarray(Image.open(photo_paths[0]).convert("RGB"))


def test_16bit_grey_png_matches_its_8bit_original(photo8, tmp_path):
    grey8 = np.asarray(Image.fromarray(photo8).convert("L"))
    Image.fromarray(grey8).save(tmp_path / "g8.png")
    Image.fromarray(grey8.astype(np.uint16) * 257).save(tmp_path / "g16.png")
    # a 16-bit PNG opens as I;16 from Pillow 10.3 on, as 32-bit I before: the reader scales both
    assert Image.open(tmp_path / "g16.png").mode in ("I;16", "I")
    a = uae.load_image(tmp_path / "g8.png", size=32)
    b = uae.load_image(tmp_path / "g16.png", size=32)
    assert b.mean() < 0.9  # was all white (1.0) before: Pillow clips I;16 -> RGB
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    # The datasets read through the same function.
    ds = ImageFolderDataset([tmp_path / "g8.png", tmp_path / "g16.png"], transform=image_transform(32))
    torch.testing.assert_close(ds[0]["image"], ds[1]["image"], rtol=0, atol=0)


def test_a_16_bit_png_opened_as_mode_i_is_described_as_16_bit(tmp_path):
    """Pillow < 10.3 opens a 16-bit grey PNG as mode I: the note must not call it a 32-bit image."""
    from uae.data.image_io import conversion_notes

    im = Image.new("I", (4, 4), 40000)
    im.format = "PNG"  # as Image.open sets it
    assert conversion_notes(im) == ["16-bit image: scaled to 8 bits (not clipped)"]
    im.format = "TIFF"  # a TIFF can hold 32-bit integers
    assert conversion_notes(im) == ["32-bit integer image: values scaled to 8 bits"]


def test_16bit_rgb_png_matches_its_8bit_original(photo8, tmp_path):
    Image.fromarray(photo8).save(tmp_path / "rgb8.png")
    write_png16_rgb(tmp_path / "rgb16.png", photo8.astype(np.uint16) * 257)
    a = uae.load_image(tmp_path / "rgb8.png", size=32)
    b = uae.load_image(tmp_path / "rgb16.png", size=32)
    torch.testing.assert_close(a, b, rtol=0, atol=0)


@pytest.mark.parametrize(
    ("array", "expected"),
    [
        (np.full((4, 4), 257 * 100, np.int32), 100),  # mode I holding 16-bit data
        (np.full((4, 4), 2**31 - 1, np.int32), 255),  # mode I, full 32-bit range
        (np.full((4, 4), 0.5, np.float32), 128),  # mode F in [0, 1]
        (np.full((4, 4), 200.0, np.float32), 200),  # mode F in [0, 255]
        (np.full((4, 4), 257.0 * 30, np.float32), 30),  # mode F in [0, 65535]
    ],
)
def test_32bit_int_and_float_images_are_scaled(array, expected, tmp_path):
    im = Image.fromarray(array)
    assert im.mode in ("I", "F")
    im.save(tmp_path / "x.tif")
    rgb = np.asarray(read_image(tmp_path / "x.tif"))
    assert rgb.shape == (4, 4, 3) and (rgb == expected).all(), rgb[0, 0]


def test_pixel_budget_checked_from_the_header(tmp_path, photo_paths, caplog, monkeypatch):
    huge = tmp_path / "huge.png"
    write_png_header_only(huge, 13000, 13000)  # 169 Mpx, no pixel data: decoding would fail differently
    with pytest.raises(ImageTooLargeError, match=r"13000x13000 .* over the budget"):
        read_image(huge)
    with pytest.raises(ValueError, match="over the budget of 1,000"):
        read_image(photo_paths[0], max_pixels=1000)
    monkeypatch.setenv("UAE_MAX_IMAGE_PIXELS", "1000")
    with pytest.raises(ImageTooLargeError):
        uae.load_image(photo_paths[0], size=32)
    monkeypatch.delenv("UAE_MAX_IMAGE_PIXELS")
    # A dataset skips it with a warning (training: the next image; evaluation: a marker).
    Image.open(photo_paths[0]).save(tmp_path / "ok.png")
    ds = ImageFolderDataset(tmp_path, transform=image_transform(16))
    with caplog.at_level(logging.WARNING, logger="uae.data.datasets"):
        samples = [ds[i] for i in range(len(ds))]
    assert [Path(s["path"]).name for s in samples] == ["ok.png", "ok.png"]
    assert ds.num_skipped == 1 and any("too large" in r.getMessage() for r in caplog.records)
    skip = ImageFolderDataset(tmp_path, transform=image_transform(16), on_error="skip")
    assert skip[0].path.endswith("huge.png") and "budget" in skip[0].reason
    assert ImageFolderDataset(tmp_path, transform=image_transform(16), on_error="skip", max_pixels=None)[
        0
    ].reason.startswith("cannot read image")  # no budget: the decode itself fails


@pytest.fixture
def umask022():
    old = os.umask(0o022)
    yield
    os.umask(old)


def _mode(p: Path) -> int:
    return p.stat().st_mode & 0o777


def test_saved_files_get_the_usual_permissions(tiny_model, tmp_path, umask022):
    tiny_model.save_pretrained(tmp_path / "m")
    for name in ("model.safetensors", "config.json", "README.md"):
        assert _mode(tmp_path / "m" / name) == 0o644, name
    os.umask(0o077)  # the umask is respected, as open() does
    tiny_model.save_pretrained(tmp_path / "m2")
    assert _mode(tmp_path / "m2" / "model.safetensors") == 0o600
    assert not list((tmp_path / "m").glob(".tmp*"))


def test_atomic_write_leaves_no_temp_file_on_error(tmp_path):
    from uae.files import atomic_write, remove_temp_files

    (tmp_path / "a.json").write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_write(tmp_path / "a.json") as tmp:
            tmp.write_text("half")
            raise RuntimeError("killed")
    assert (tmp_path / "a.json").read_text() == "old" and sorted(os.listdir(tmp_path)) == ["a.json"]
    (tmp_path / ".tmpXyZ123").write_bytes(b"left by a kill")
    assert [p.name for p in remove_temp_files(tmp_path)] == [".tmpXyZ123"]


# ------------------------------------------------------------------------------------ EXIF orientation
#: How a camera stores an upright picture under each EXIF orientation (the viewer undoes it), written
#: from the EXIF specification with numpy, independently of Pillow's own table.
STORED = {
    1: lambda u: u,
    2: lambda u: u[:, ::-1],  # mirrored left-right
    3: lambda u: u[::-1, ::-1],  # rotated 180
    4: lambda u: u[::-1],  # mirrored top-bottom
    5: lambda u: u.transpose(1, 0, 2),  # mirrored along the main diagonal
    6: lambda u: np.rot90(u, 1),  # stored turned 90 counter-clockwise: shown turned 90 clockwise
    7: lambda u: u[::-1, ::-1].transpose(1, 0, 2),  # mirrored along the anti-diagonal
    8: lambda u: np.rot90(u, -1),  # stored turned 90 clockwise
}


def _with_orientation(path: Path, stored: np.ndarray, orientation: int, **save: object) -> Path:
    exif = Image.Exif()
    exif[0x0112] = orientation
    Image.fromarray(np.ascontiguousarray(stored)).save(path, exif=exif, **save)
    return path


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_gives_the_upright_picture(photo8, tmp_path, orientation):
    upright = photo8[16:112, :96]  # 96 rows x 96 cols would be symmetric in shape: use 96 x 80
    upright = np.ascontiguousarray(upright[:, :80])
    stored = STORED[orientation](upright)
    # Lossless (PNG with an eXIf chunk): exactly the upright original.
    png = _with_orientation(tmp_path / f"o{orientation}.png", stored, orientation)
    np.testing.assert_array_equal(np.asarray(read_image(png)), upright)
    # JPEG (what cameras write): the decoded stored pixels, oriented; and close to the original.
    jpg = _with_orientation(tmp_path / f"o{orientation}.jpg", stored, orientation, quality=95, subsampling=0)
    with Image.open(jpg) as im:
        raw = np.asarray(im.convert("RGB"))  # the pixels as stored, orientation ignored
    got = np.asarray(read_image(jpg))
    assert got.shape == upright.shape
    undo = {6: lambda a: np.rot90(a, -1), 8: lambda a: np.rot90(a, 1)}.get(orientation, STORED[orientation])
    np.testing.assert_array_equal(got, undo(raw))
    assert np.abs(got.astype(int) - upright).mean() < 3
    # Every reader of the package goes through it: the datasets and the app's notes.
    sample = ImageFolderDataset([png], transform=image_transform(32))[0]["image"]
    reference = image_transform(32)(Image.fromarray(upright))
    torch.testing.assert_close(sample, reference, rtol=0, atol=0)
    if orientation != 1:
        from uae.data.image_io import read_image_with_notes

        assert f"EXIF orientation {orientation}: turned upright" in read_image_with_notes(png)[1]


# ------------------------------------------------------------------------------------ draft JPEG decoding
def _big_jpeg(photo8: np.ndarray, path: Path, size: tuple[int, int] = (1024, 768)) -> Path:
    Image.fromarray(photo8).resize(size, Image.BICUBIC).save(path, quality=90)
    return path


def test_draft_decoding_of_large_jpegs(photo8, tmp_path):
    from uae.data.image_io import DRAFT_GAP, draft_request

    big = _big_jpeg(photo8, tmp_path / "big.jpg")  # 1024 x 768
    assert read_image(big).size == (1024, 768)
    # Target 64: the largest DCT reduction keeping >= 2 x 64 = 128 px on both sides is 1/4 (256 x 192).
    assert DRAFT_GAP == 2 and draft_request((1024, 768), 64) == (128, 128)
    assert read_image(big, draft_size=64).size == (256, 192)
    assert read_image(big, draft_size=200).size == (1024, 768)  # 768 < 2 x 400: no reduction
    assert read_image(big, draft_size=150).size == (512, 384)
    Image.open(big).save(tmp_path / "big.png")
    assert read_image(tmp_path / "big.png", draft_size=64).size == (1024, 768)  # JPEG only
    # The transform's output is that of a full decode within the crop's own rounding (see image_io).
    t = image_transform(64)
    full, draft = t(read_image(big)), t(read_image(big, draft_size=64))
    assert (full - draft).abs().max() < 0.06 and (full - draft).abs().mean() < 0.004
    # The datasets ask the transform for its size (and can be told not to).
    ds = ImageFolderDataset([big], transform=t)
    fast = ImageFolderDataset([big], transform=t, draft=True)
    slow = ImageFolderDataset([big], transform=t, draft=False)
    torch.testing.assert_close(ds[0]["image"], draft, rtol=0, atol=0)
    torch.testing.assert_close(fast[0]["image"], draft, rtol=0, atol=0)
    torch.testing.assert_close(slow[0]["image"], full, rtol=0, atol=0)


def test_transform_draft_size():
    from uae.data.datasets import transform_draft_size

    assert transform_draft_size(image_transform(224)) == 224
    assert transform_draft_size(image_transform(224, out_size=256)) == 256
    assert transform_draft_size(image_transform(224, train=True)) == 224  # crops the whole shorter side
    # A random-resized crop may keep 8 % of the area: it needs 1 / sqrt(0.75 * 0.08) = 4.1x the side.
    assert transform_draft_size(image_transform(224, train=True, scale=(0.08, 1.0))) == 915
    assert transform_draft_size(lambda im: im) is None  # unknown transform: full decode

    class Declared:
        draft_size = 96

    assert transform_draft_size(Declared()) == 96
