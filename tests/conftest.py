"""Shared fixtures: tiny models, real bundled photographs, an offline Hub cache."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

# Never touch the network from tests: Hub cache misses fail in milliseconds.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

ASSETS = Path(__file__).parent / "assets"
PHOTOS = sorted(ASSETS.glob("*.png"))

# Tiny models: one intra-op thread is faster than two (thread overhead dominates) and predictable.
torch.set_num_threads(1)


@pytest.fixture
def photo_paths() -> list[Path]:
    """The bundled 128x128 photographs (see tests/assets/ATTRIBUTION.md)."""
    assert len(PHOTOS) >= 3
    return list(PHOTOS)


def load_photo(path: Path, size: int) -> torch.Tensor:
    """A bundled photo as a ``(3, size, size)`` float tensor in [0, 1]."""
    im = Image.open(path).convert("RGB").resize((size, size), Image.BICUBIC)
    return torch.from_numpy(np.asarray(im).copy()).permute(2, 0, 1).float() / 255.0


@pytest.fixture
def photos32() -> torch.Tensor:
    """``(N, 3, 32, 32)`` batch of the bundled photos."""
    return torch.stack([load_photo(p, 32) for p in PHOTOS])


@pytest.fixture
def tiny_model():
    """The registered ``uae_test`` model, seeded, in eval mode."""
    import uae

    torch.manual_seed(0)
    return uae.create_model("uae_test").eval()


def write_photo_folder(root: Path, flip_suffix: str = ".jpg") -> Path:
    """Real photos in two class subfolders (``a/``, ``b/``) of ``root``, 4 files each: two photos as PNG and
    a left-right flipped copy of each (a second distinct image) saved with ``flip_suffix``."""
    for cls, names in {"a": PHOTOS[:2], "b": PHOTOS[2:4]}.items():
        (root / cls).mkdir(parents=True)
        for i, p in enumerate(names):
            shutil.copy(p, root / cls / f"{p.stem}.png")
            Image.open(p).transpose(Image.FLIP_LEFT_RIGHT).save(root / cls / f"{p.stem}_flip{i}{flip_suffix}")
    return root


@pytest.fixture
def image_folder(tmp_path: Path) -> Path:
    """A temp folder of real photos in two class subfolders (``a/``, ``b/``), 4 files each."""
    return write_photo_folder(tmp_path / "images")


@pytest.fixture
def empty_hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty torch hub cache (``torch.hub.get_dir()``) and offline mode: no metric weights anywhere."""
    hub = tmp_path / "hub"
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(hub))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return hub


HUB_COMMIT = "0123456789abcdef0123456789abcdef01234567"


def put_in_hub_cache(hf_home: Path, repo_id: str, files: dict[str, Path], commit: str = HUB_COMMIT) -> None:
    """Lay out ``files`` (repo path -> local file) as a Hub cache snapshot of ``repo_id`` at ``main``."""
    import shutil

    repo = hf_home / "hub" / f"models--{repo_id.replace('/', '--')}"
    for name, src in files.items():
        dst = repo / "snapshots" / commit / name
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(src, dst)
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    (repo / "refs" / "main").write_text(commit)


@pytest.fixture
def hf_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty offline Hub cache in ``tmp_path`` and a temp converted cache (``$UAE_CACHE``)."""
    from huggingface_hub import constants

    home = tmp_path / "hf_home"
    (home / "hub").mkdir(parents=True)
    monkeypatch.setenv("HF_HOME", str(home))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("UAE_CACHE", str(tmp_path / "uae_cache"))
    monkeypatch.setattr(constants, "HF_HOME", str(home))
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(home / "hub"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    return home


def put_release_in_hub_cache(
    hf_home: Path, name: str, sources: dict[str, Path], commit: str = HUB_COMMIT
) -> None:
    """Copy ``sources`` (file role -> fixture file) to the Hub cache at the repo/paths the weights-table
    entry ``name`` names (every role of the entry, no more)."""
    from uae.models.pretrained import get_pretrained_cfg

    cfg = get_pretrained_cfg(name)
    assert set(sources) == set(cfg.files), (sorted(sources), sorted(cfg.files))
    by_repo: dict[str, dict[str, Path]] = {}
    for role, f in cfg.files.items():
        by_repo.setdefault(f.repo or cfg.hf_hub_id, {})[f.filename] = sources[role]
    for repo_id, files in by_repo.items():
        put_in_hub_cache(hf_home, repo_id, files, commit)


def one_line_error(capsys: pytest.CaptureFixture, rc: int, *needles: str) -> str:
    """Assert that a command failed with exit code 2 and one line on stderr holding every needle."""
    err = capsys.readouterr().err.strip()
    assert rc == 2, err
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    for n in needles:
        assert n in err, err
    return err


@pytest.fixture
def cli_one_thread(monkeypatch: pytest.MonkeyPatch):
    """One torch thread (tiny models train several times faster so, above all on a busy CPU) and a bare
    ``sys.argv`` (LightningCLI reads ``args=``, not pytest's command line). Modules use it with
    ``pytestmark = pytest.mark.usefixtures("cli_one_thread")``."""
    monkeypatch.setattr("sys.argv", ["uae"])
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def start(tmp_path: Path) -> Path:
    """A seeded ``uae_test`` model saved with ``save_pretrained``: what ``--model.pretrained`` starts from."""
    import uae

    torch.manual_seed(0)
    path = tmp_path / "parent"
    uae.create_model("uae_test").save_pretrained(path)
    return path


def cpu_trainer(out: Path, max_steps: int, callbacks=(), **kw):
    """The tests' quiet Trainer: one CPU device in fp32, no logger, progress bar, summary or validation.

    Args:
        out: ``default_root_dir``.
        max_steps: Steps to train.
        callbacks: The run's callbacks.
        **kw: Other ``Trainer`` options (``enable_checkpointing=False``, ...), overriding the ones above.
    """
    import lightning.pytorch as pl

    options = {
        "max_steps": max_steps,
        "accelerator": "cpu",
        "devices": 1,
        "precision": "32-true",
        "logger": False,
        "enable_progress_bar": False,
        "enable_model_summary": False,
        "limit_val_batches": 0,
        "num_sanity_val_steps": 0,
        "default_root_dir": str(out),
        "callbacks": list(callbacks),
    }
    return pl.Trainer(**{**options, **kw})
