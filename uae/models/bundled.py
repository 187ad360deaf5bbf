"""Files that ship with the package: the embedded checkpoints, the training recipes, the sample photographs.

In the source tree they live at the repository root (``checkpoints/``, ``recipes/``, ``tests/assets/``);
an installed wheel or sdist carries the same files as package data under ``uae/_bundled/`` (mapped by
``[tool.setuptools.package-dir]`` in ``pyproject.toml``, so the repository holds one copy of each).
:func:`bundled_dir` answers with whichever exists: the installed copy first, else the source tree.

Recipes are found by name (``finetune_folder``, ``finetune_folder.yaml`` or ``recipes/finetune_folder.yaml``)
with :func:`find_recipe`, so ``uae fit --config finetune_folder`` works from any folder after
``pip install``; ``uae recipes --copy DIR`` copies them out to edit.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from uae.errors import InputError, MissingFileError

#: Kind of bundled data -> its folder in the source tree (relative to the repository root).
SOURCE_DIRS: dict[str, str] = {
    "checkpoints": "checkpoints",
    "recipes": "recipes",
    "photos": "tests/assets",
}
#: The sample photographs offered by ``uae app`` (in ``tests/assets/``; attributions in its ATTRIBUTION.md).
PHOTOS: tuple[str, ...] = ("astronaut.png", "chelsea.png", "coffee.png", "rocket.png")
#: Where the installed copies live, inside the package.
INSTALLED_DIR = "_bundled"
RECIPE_SUFFIX = ".yaml"

_PACKAGE = Path(__file__).resolve().parents[1]


def bundled_dir(kind: str) -> Path:
    """The folder of one kind of bundled data: the installed copy (``uae/_bundled/<kind>``), else the source tree's.

    Args:
        kind: ``"checkpoints"``, ``"recipes"`` or ``"photos"``.

    Returns:
        The folder (it may not exist: a source tree without it, a partial install).

    Raises:
        KeyError: Unknown ``kind``.
    """
    source = _PACKAGE.parent / SOURCE_DIRS[kind]
    installed = _PACKAGE / INSTALLED_DIR / kind
    return installed if installed.is_dir() else source


def bundled_photos() -> list[Path]:
    """The sample photographs (:data:`PHOTOS`) that exist, in that order."""
    root = bundled_dir("photos")
    return [root / name for name in PHOTOS if (root / name).is_file()]


def list_recipes() -> dict[str, Path]:
    """Every bundled recipe: name (file name without ``.yaml``) -> path, sorted by name."""
    root = bundled_dir("recipes")
    files = sorted(root.glob(f"*{RECIPE_SUFFIX}")) if root.is_dir() else []
    return {p.stem: p for p in files if p.is_file()}


def recipe_summary(path: str | os.PathLike) -> str:
    """The first sentence of a recipe's header comment (what it trains), without its asides in brackets."""
    words: list[str] = []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        text = line.strip()
        if not text.startswith("#"):
            break
        text = text.lstrip("#").strip()
        if not text:
            if words:
                break
            continue
        words.append(text)
        if text.endswith((".", ":")) or len(words) == 3:
            break
    summary = " ".join(words)
    while (shorter := re.sub(r"\s*\([^()]*\)", "", summary)) != summary:
        summary = shorter
    return summary[:-1] + "." if summary.endswith(":") else summary


def find_recipe(name: str | os.PathLike) -> Path:
    """A bundled recipe by name: ``finetune_folder``, ``finetune_folder.yaml`` or ``recipes/finetune_folder.yaml``.

    Args:
        name: The recipe's name, with or without ``.yaml``, optionally under ``recipes/`` (as the
            README's commands write it, so they work from any folder).

    Returns:
        The recipe file.

    Raises:
        MissingFileError: No bundled recipe of that name (the message lists them).
    """
    text = str(name).replace("\\", "/")
    parts = [p for p in text.split("/") if p not in ("", ".")]
    stem = parts[-1] if parts else ""
    if stem.endswith(RECIPE_SUFFIX):
        stem = stem[: -len(RECIPE_SUFFIX)]
    recipes = list_recipes()
    plain = len(parts) == 1 or (len(parts) == 2 and parts[0] == "recipes")
    if plain and stem in recipes:
        return recipes[stem]
    known = ", ".join(recipes) or f"none found in {bundled_dir('recipes')}"
    raise MissingFileError(f"no recipe file or bundled recipe named {str(name)!r}; bundled recipes: {known}")


def copy_recipes(
    dest: str | os.PathLike, names: list[str] | None = None, *, overwrite: bool = False
) -> list[Path]:
    """Copy bundled recipes into a folder, to edit them (``uae recipes --copy DIR``).

    Args:
        dest: Folder (created).
        names: Recipes to copy (as :func:`find_recipe` takes them); ``None``: all.
        overwrite: Replace files that exist (else nothing is copied when one does).

    Returns:
        The files written, in order.

    Raises:
        MissingFileError: A name is no bundled recipe.
        InputError: ``dest`` is a file, or (without ``overwrite``) would overwrite a file.
    """
    from uae.files import write_text
    from uae.paths import output_dir

    folder = output_dir(dest, param="dest")
    sources = [find_recipe(n) for n in names] if names else list(list_recipes().values())
    targets = [folder / p.name for p in sources]
    clash = [t.name for t in targets if t.exists()]
    if clash and not overwrite:
        raise InputError(
            f"{', '.join(clash)} already in {str(folder)!r}; nothing copied (set overwrite to replace them)",
            param="overwrite",
        )
    folder.mkdir(parents=True, exist_ok=True)
    for src, target in zip(sources, targets):
        write_text(target, src.read_text(encoding="utf-8"))
    return targets


__all__ = [
    "copy_recipes",
    "PHOTOS",
    "SOURCE_DIRS",
    "bundled_dir",
    "bundled_photos",
    "find_recipe",
    "list_recipes",
    "recipe_summary",
]
