"""The `uae` command line: help, reconstruct, bands, and one-line errors (no traceback)."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import one_line_error
from PIL import Image

from uae.cli import main


@pytest.fixture
def model_dir(tiny_model, tmp_path):
    path = tmp_path / "tiny"
    tiny_model.save_pretrained(path)
    return str(path)


def test_help_lists_commands(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for cmd in ("reconstruct", "bands", "convert", "models"):
        assert cmd in out


def test_reconstruct_writes_images_and_band_picture(model_dir, photo_paths, tmp_path, capsys):
    out = tmp_path / "rec"
    assert main(["reconstruct", *map(str, photo_paths[:2]), "--model", model_dir, "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    for p in photo_paths[:2]:
        im = Image.open(out / f"{p.stem}.png")
        assert im.size == (32, 32) and im.mode == "RGB"
    bands = np.asarray(Image.open(out / "bands.png"))
    assert bands.shape[0] > 100 and bands.std() > 10
    assert "PSNR" in printed and "bands.png" in printed


def test_bands_writes_one_picture(model_dir, photo_paths, tmp_path, capsys):
    dest = tmp_path / "pics" / "b.png"
    assert main(["bands", *map(str, photo_paths[:3]), "--model", model_dir, "--out", str(dest)]) == 0
    assert np.asarray(Image.open(dest)).std() > 10
    lines = [ln for ln in capsys.readouterr().out.splitlines() if "band energy" in ln]
    assert len(lines) == 3


def test_missing_image_is_one_line(model_dir, tmp_path, capsys):
    rc = main(["reconstruct", str(tmp_path / "nope.png"), "--model", model_dir, "--out", str(tmp_path)])
    one_line_error(capsys, rc, "nope.png", "not found")


def test_unreadable_image_is_one_line(model_dir, tmp_path, capsys):
    bad = tmp_path / "bad.png"
    bad.write_text("not an image")
    rc = main(["bands", str(bad), "--model", model_dir, "--out", str(tmp_path / "b.png")])
    one_line_error(capsys, rc, "bad.png", "cannot read image")


def test_unknown_and_untrained_models_are_one_line(photo_paths, tmp_path, capsys):
    img = str(photo_paths[0])
    rc = main(["reconstruct", img, "--model", "not_a_model", "--out", str(tmp_path)])
    one_line_error(capsys, rc, "unknown model", "not_a_model")
    rc = main(["reconstruct", img, "--model", "uae_large_p14_dinov2", "--out", str(tmp_path)])
    one_line_error(capsys, rc, "no pretrained weights", "uae_large_p14_dinov2")
    rc = main(["bands", img, "--model", "someorg/not-cached", "--out", str(tmp_path / "b.png")])
    one_line_error(capsys, rc, "someorg/not-cached")


def test_any_other_exception_is_a_bug_with_its_traceback(photo_paths, monkeypatch, capsys):
    import uae.inference

    def broken(*args, **kwargs):
        raise KeyError("weights")  # a bug in uae, not a user error: it used to print as one line

    monkeypatch.setattr(uae.inference, "reconstruct_files", broken)
    assert main(["reconstruct", str(photo_paths[0])]) == 1
    err = capsys.readouterr().err
    assert "Traceback" in err and "KeyError: 'weights'" in err
    assert (
        err.strip().splitlines()[-1].startswith("uae reconstruct: internal error (KeyError): this is a bug")
    )


def test_uae_errors_are_one_line_naming_the_flag(photo_paths, monkeypatch, capsys):
    import uae.inference
    from uae.cli import CLIError
    from uae.errors import InputError, UAEError

    assert issubclass(CLIError, UAEError)

    def refuse(*args, **kwargs):
        raise InputError("max_band_rows must be >= 1, got 0 (max_band_rows)", param="max_band_rows")

    monkeypatch.setattr(uae.inference, "reconstruct_files", refuse)
    rc = main(["reconstruct", str(photo_paths[0])])
    assert one_line_error(capsys, rc) == (
        "uae reconstruct: error: --max-band-rows must be >= 1, got 0 (max_band_rows)"
    )
