"""Loading a model and ``uae reconstruct`` import nothing they do not need (issue 18: start-up), and the
torch-only replacements of what they used to import compute the same numbers."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
#: Slow to import (seconds together) and not needed to load a model or reconstruct an image.
NOT_NEEDED = ("timm", "torchvision", "torch._dynamo", "matplotlib", "torchmetrics", "lightning", "scipy")

_SCRIPT = """
import sys
{body}
loaded = [m for m in {watched!r} if m in sys.modules]
print("LOADED", loaded)
"""


def _loaded_after(body: str, tmp_path: Path) -> list[str]:
    proc = subprocess.run(
        [sys.executable, "-c", _SCRIPT.format(body=body, watched=NOT_NEEDED)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin", "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"},
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    line = [x for x in proc.stdout.splitlines() if x.startswith("LOADED")][-1]
    return eval(line[len("LOADED ") :])  # a list literal printed above


def test_create_model_imports_no_heavy_library(tmp_path: Path) -> None:
    body = "import uae\nm = uae.create_model('uae_demo', pretrained=True)\nimport torch\nm(torch.rand(1, 3, 64, 64))"
    assert _loaded_after(body, tmp_path) == []


def test_reconstruct_imports_no_heavy_library(tmp_path: Path) -> None:
    photo = ROOT / "tests" / "assets" / "chelsea.png"
    body = (
        "from uae.cli import main\n"
        f"assert main(['reconstruct', {str(photo)!r}, '--out', 'rec']) == 0\n"
        "import os\nassert os.path.isfile('rec/bands.png')"
    )
    assert _loaded_after(body, tmp_path) == []


def test_psnr_equals_torchmetrics() -> None:
    from torchmetrics.functional.image import peak_signal_noise_ratio

    from uae.inference import MAX_PSNR, psnr

    torch.manual_seed(0)
    a = torch.rand(5, 3, 16, 16)
    b = (a + 0.05 * torch.randn_like(a)).clamp(0, 1)
    ref = peak_signal_noise_ratio(a, b, data_range=1.0, reduction="none", dim=(1, 2, 3))
    torch.testing.assert_close(psnr(a, b), ref, atol=1e-4, rtol=0)
    assert psnr(a, a).tolist() == [MAX_PSNR] * 5


@pytest.mark.parametrize("interpolation", ["bicubic", "bilinear", "lanczos"])
def test_image_transform_equals_torchvision(interpolation: str) -> None:
    """The PIL-only resize and tensor conversion give torchvision's exact bytes."""
    import torchvision.transforms.functional as TF

    from uae.data import image_transform

    rng = np.random.default_rng(0)
    im = Image.fromarray(rng.integers(0, 256, (50, 70, 3), dtype=np.uint8))
    out = image_transform(24, out_size=32, interpolation=interpolation)(im)
    crop = im.crop((10, 0, 60, 50))
    mode = getattr(TF.InterpolationMode, interpolation.upper())
    for key, side in (("image", 24), ("target", 32)):
        ref = (
            TF.pil_to_tensor(TF.resize(crop, [side, side], interpolation=mode, antialias=True)).float() / 255
        )
        assert torch.equal(out[key], ref), key


def test_band_strip_draws_every_row_and_checks_shapes() -> None:
    from uae.errors import InputError
    from uae.visualize import band_strip

    torch.manual_seed(0)
    inputs, decodes = torch.rand(2, 3, 16, 16), torch.rand(2, 3, 3, 16, 16)
    energy = torch.tensor([[0.5, 0.3, 0.2], [0.7, 0.2, 0.1]])
    im = band_strip(inputs, decodes, energy, titles=["a.png", "b.png"], cell=40)
    assert im.mode == "RGB" and im.width == 6 + 5 * 46
    arr = np.asarray(im)
    assert arr.shape[0] > 2 * 40 and arr.std() > 10
    # the second row's last decode is pasted (enlarged, sharp) where the layout puts it
    y0 = 18 + (16 + 40 + 6) + 16
    cell = arr[y0 : y0 + 40, 6 + 3 * 46 : 6 + 3 * 46 + 40]
    ref = (decodes[1, 2].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    assert np.array_equal(cell[0, 0], ref[0, 0]) and np.array_equal(cell[-1, -1], ref[-1, -1])
    with pytest.raises(InputError, match="inconsistent"):
        band_strip(inputs, decodes, energy[:1])
    with pytest.raises(InputError, match="titles"):
        band_strip(inputs, decodes, energy, titles=["a"])
