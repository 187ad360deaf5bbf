"""uae as an installed package: the wheel and sdist carry the demo checkpoint, the recipes and the photos; the
package finds them wherever it is installed; recipes by name (``uae fit --config finetune_folder``) and
``uae recipes``; the Space's files (``requirements.txt``, README front matter) agree with ``pyproject.toml``.

Building is checked here (seconds, no install); ``.ci/run`` installs the wheel into a fresh virtual
environment and runs ``.ci/smoke.py`` from outside the checkout, and serves the Space from its own files.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    tomllib = pytest.importorskip("tomli")

import uae
from uae.cli import main as cli_main
from uae.commands.fit import resolve_recipes
from uae.models import bundled
from uae.models.bundled import PHOTOS, bundled_dir, find_recipe, list_recipes

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
DEMO_FILES = ("README.md", "bands.png", "config.json", "metrics.json", "model.safetensors")
RECIPES = sorted(p.name for p in (ROOT / "recipes").glob("*.yaml"))
#: What the sdist is built from (the rest of the repository is not needed to build it).
SOURCES = ("pyproject.toml", "README.md", "CHANGELOG.md", "MANIFEST.in", "app.py", "requirements.txt")
DATA_DIRS = ("uae", "checkpoints", "recipes")


def _copy_sources(dest: Path) -> Path:
    for name in SOURCES:
        shutil.copy2(ROOT / name, dest / name)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "_bundled")
    for name in DATA_DIRS:
        shutil.copytree(ROOT / name, dest / name, ignore=ignore)
    (dest / "tests").mkdir()
    shutil.copytree(ROOT / "tests" / "assets", dest / "tests" / "assets")
    return dest


def _build(backend_call: str, src: Path, out: Path) -> Path:
    """Run one PEP 517 hook of setuptools in ``src`` (a subprocess: the build changes directories)."""
    setup = f"from setuptools import build_meta as b; print(b.{backend_call}({str(out)!r}))"
    res = subprocess.run([sys.executable, "-c", setup], cwd=src, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    return out / res.stdout.strip().splitlines()[-1]


def test_sdist_and_wheel_carry_the_checkpoint_recipes_and_photos(tmp_path: Path) -> None:
    """As ``python -m build`` does: the sdist from the sources, the wheel from the unpacked sdist."""
    pytest.importorskip("setuptools", minversion="77")
    (tmp_path / "src").mkdir()
    src = _copy_sources(tmp_path / "src")
    dist = tmp_path / "dist"
    sdist = _build("build_sdist", src, dist)
    with tarfile.open(sdist) as tar:
        names = {n.split("/", 1)[1] for n in tar.getnames() if "/" in n}
        tar.extractall(tmp_path / "unpacked", filter="data")
    for f in DEMO_FILES:
        assert f"checkpoints/uae_demo/{f}" in names, f
    assert {f"recipes/{r}" for r in RECIPES} <= names
    assert {f"tests/assets/{p}" for p in PHOTOS} <= names and {"app.py", "requirements.txt"} <= names

    (unpacked,) = (tmp_path / "unpacked").iterdir()
    wheel = _build("build_wheel", unpacked, tmp_path / "wheel")
    with zipfile.ZipFile(wheel) as z:
        files = set(z.namelist())
    data = "uae/_bundled"
    for f in DEMO_FILES:
        assert f"{data}/checkpoints/uae_demo/{f}" in files, f
    assert {f"{data}/recipes/{r}" for r in RECIPES} <= files
    assert {f"{data}/photos/{p}" for p in (*PHOTOS, "ATTRIBUTION.md")} <= files
    modules = {
        p.relative_to(ROOT).as_posix() for p in (ROOT / "uae").rglob("*.py") if "__pycache__" not in p.parts
    }
    assert modules - files == set(), "modules missing from the wheel: list their packages in pyproject.toml"
    assert not any(
        n.startswith(("checkpoints/", "recipes/", "tests/")) for n in files
    )  # no top-level folders


def test_pyproject_lists_every_package() -> None:
    """The packages are listed (three data folders are mapped into uae/_bundled): a new sub-package must be too."""
    listed = set(PYPROJECT["tool"]["setuptools"]["packages"])
    found = {
        ".".join(p.parent.relative_to(ROOT).parts)
        for p in (ROOT / "uae").rglob("__init__.py")
        if "__pycache__" not in p.parts
    }
    assert found - listed == set(), "add these to [tool.setuptools] packages in pyproject.toml"
    mapped = PYPROJECT["tool"]["setuptools"]["package-dir"]
    assert mapped == {f"uae._bundled.{k}": v for k, v in bundled.SOURCE_DIRS.items()}
    assert PYPROJECT["tool"]["setuptools"]["package-data"]["uae._bundled.photos"] == [
        "ATTRIBUTION.md",
        *PHOTOS,
    ]


def test_installed_copy_is_found_first(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An installed package finds its data in uae/_bundled; a source checkout in the repository's folders."""
    monkeypatch.delenv("UAE_CHECKPOINT_DIR", raising=False)
    monkeypatch.delenv("UAE_PHOTO_DIR", raising=False)
    assert (
        bundled_dir("checkpoints") == ROOT / "checkpoints"
        and bundled_dir("photos") == ROOT / "tests" / "assets"
    )
    pkg = tmp_path / "site-packages" / "uae"
    for kind, src in bundled.SOURCE_DIRS.items():
        shutil.copytree(ROOT / src, pkg / "_bundled" / kind)
    monkeypatch.setattr(bundled, "_PACKAGE", pkg)
    from uae.explorer import bundled_photos
    from uae.models.pretrained import checkpoint_root

    assert checkpoint_root() == pkg / "_bundled" / "checkpoints"
    assert bundled_photos() == [pkg / "_bundled" / "photos" / p for p in PHOTOS]
    assert find_recipe("finetune_folder") == pkg / "_bundled" / "recipes" / "finetune_folder.yaml"
    model = uae.create_model("uae_demo", pretrained=True)
    assert model.config.name == "uae_demo"


@pytest.mark.parametrize(
    "name",
    [
        "finetune_folder",
        "finetune_folder.yaml",
        "recipes/finetune_folder.yaml",
        "./recipes/finetune_folder.yaml",
    ],
)
def test_recipes_by_name_from_any_folder(name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # no recipes/ here
    path = ROOT / "recipes" / "finetune_folder.yaml"
    assert find_recipe(name) == path
    assert resolve_recipes(["--config", name, "--data.root", "x"]) == [
        "--config",
        str(path),
        "--data.root",
        "x",
    ]
    assert resolve_recipes([f"--config={name}"]) == [f"--config={path}"]


def test_recipe_files_and_inline_yaml_are_kept(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "recipes").mkdir()
    mine = tmp_path / "recipes" / "finetune_folder.yaml"
    mine.write_text("seed_everything: 1\n")
    inline = '{"trainer": {"max_steps": 1}}'
    argv = ["--config", "recipes/finetune_folder.yaml", "--config", inline, "--config", str(mine)]
    assert resolve_recipes(argv) == argv  # a file that exists wins over the bundled recipe


def test_unknown_recipe_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)
    assert cli_main(["fit", "--config", "finetune_folders", "--data.root", "."]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no recipe file or bundled recipe named 'finetune_folders'" in err
    assert "finetune_folder," in err  # the bundled ones are listed


def test_uae_recipes_lists_and_copies(tmp_path: Path, capsys) -> None:
    assert cli_main(["recipes"]) == 0
    out = capsys.readouterr().out
    assert set(list_recipes()) == {r.removesuffix(".yaml") for r in RECIPES}
    for name in list_recipes():
        assert f"\n{name} " in "\n" + out
    assert "Fine-tune a pretrained UAE on your own image folder" in out
    dest = tmp_path / "mine"
    assert cli_main(["recipes", "finetune_folder", "demo", "--copy", str(dest)]) == 0
    assert sorted(p.name for p in dest.iterdir()) == ["demo.yaml", "finetune_folder.yaml"]
    assert (dest / "demo.yaml").read_text() == (ROOT / "recipes" / "demo.yaml").read_text()
    capsys.readouterr()
    assert cli_main(["recipes", "demo", "--copy", str(dest)]) == 2
    assert "demo.yaml already in" in capsys.readouterr().err
    (dest / "demo.yaml").write_text("changed")
    assert cli_main(["recipes", "demo", "--copy", str(dest), "--force"]) == 0
    assert (dest / "demo.yaml").read_text() != "changed"


# ---------------------------------------------------------------------------------------------- the Space
def test_space_requirements_are_the_package_dependencies() -> None:
    lines = [ln.strip() for ln in (ROOT / "requirements.txt").read_text().splitlines()]
    reqs = [ln for ln in lines if ln and not ln.startswith("#")]
    deps = PYPROJECT["project"]["dependencies"] + PYPROJECT["project"]["optional-dependencies"]["app"]
    assert reqs == deps


def test_minimum_versions_tested_in_ci_are_the_declared_lower_bounds() -> None:
    """.ci/run installs .ci/minimum-versions.txt and runs the suite: it must pin exactly the declared bounds."""
    pins = {}
    for ln in (ROOT / ".ci" / "minimum-versions.txt").read_text().splitlines():
        if ln.strip() and not ln.startswith("#"):
            name, version = ln.strip().split("==")
            pins[name] = version
    dev = [d for d in PYPROJECT["project"]["optional-dependencies"]["dev"] if d.split(">=")[0] in pins]
    bounds = {}
    for dep in PYPROJECT["project"]["dependencies"] + dev:
        name, lower = dep.split(">=")  # every dependency has one lower bound and nothing else
        bounds[name] = lower
    assert bounds == pins
    assert len(dev) == 4  # pytest, pytest-randomly, scikit-image, scikit-learn


def test_space_front_matter() -> None:
    from huggingface_hub import SpaceCard
    from packaging.requirements import Requirement

    data = SpaceCard((ROOT / "README.md").read_text()).data
    assert data.sdk == "gradio" and data.app_file == "app.py" and (ROOT / data.app_file).is_file()
    assert data.license == PYPROJECT["project"]["license"].lower()
    assert len(data.short_description) <= 60
    gradio = next(
        Requirement(r) for r in PYPROJECT["project"]["optional-dependencies"]["app"] if r.startswith("gradio")
    )
    assert gradio.specifier.contains(str(data.sdk_version))
