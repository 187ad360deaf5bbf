"""Finding the images of a folder: extensions, hidden files, links followed without visiting anything twice."""

from __future__ import annotations

import logging
import os
import pathlib

from uae.errors import InputError, MissingFileError

logger = logging.getLogger(__name__)

PathLike = str | os.PathLike

#: File extensions treated as images (compared case-insensitively).
IMAGE_EXTENSIONS: tuple[str, ...] = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")


def is_image_file(path: PathLike) -> bool:
    """True when ``path`` has one of :data:`IMAGE_EXTENSIONS` (case-insensitive)."""
    return pathlib.Path(path).suffix.lower() in IMAGE_EXTENSIONS


def find_images(root: PathLike, recursive: bool = True) -> list[pathlib.Path]:
    """All image files under ``root``, sorted, each file and each folder once.

    Hidden files and folders (names starting with ``.``) are ignored. Links are followed, but nothing
    is visited twice:

    * every folder is entered once, identified by its resolved real path, so a symlink loop
      (``root/a/up -> root``) or two links to the same folder are walked once; the folders under
      ``root`` that are not links are walked first, then the folder links in sorted order;
    * every image is listed once, identified by its resolved real path: of several paths that reach
      the same file (a file link, a folder reached through a link) the first one met in that order is
      kept (the real path over a link to it), and labels come from the kept path.

    Args:
        root: A folder.
        recursive: Descend into sub-folders.

    Returns:
        Sorted list of paths.

    Raises:
        MissingFileError: ``root`` does not exist or is not a folder.
        InputError: No image file found (the message names ``root`` and the extensions).
    """
    root = pathlib.Path(root).expanduser()
    if not root.exists():
        raise MissingFileError(f"image folder {str(root)!r} does not exist")
    if not root.is_dir():
        raise MissingFileError(f"{str(root)!r} is not a folder")
    files = _walk_images(root, recursive)
    if not files:
        raise InputError(
            f"no images found in {str(root)!r} ({'recursively, ' if recursive else ''}"
            f"extensions {', '.join(IMAGE_EXTENSIONS)})"
        )
    return sorted(files)


def _walk_images(root: pathlib.Path, recursive: bool) -> list[pathlib.Path]:
    """The image files of :func:`find_images` (unsorted): folders entered once, files listed once."""
    entered: set[str] = set()  # real paths of the folders walked
    found: dict[str, tuple[bool, pathlib.Path]] = {}  # file's real path -> (reached through a link, path)
    links: list[str] = []  # folder links met, walked after the real tree

    def walk(top: str, through_link: bool) -> None:
        stack = [top]
        while stack:
            folder = stack.pop()
            real = os.path.realpath(folder)
            if real in entered:
                continue
            entered.add(real)
            try:
                entries = sorted(os.scandir(folder), key=lambda e: e.name)
            except OSError as e:  # an unreadable folder is skipped, as os.walk does
                logger.warning("Cannot list %s (%s); skipping it", folder, e)
                continue
            subfolders = []
            for entry in entries:
                if entry.name.startswith("."):
                    continue
                try:
                    is_dir = entry.is_dir()  # follows links
                except OSError:
                    is_dir = False
                if is_dir:
                    if recursive:
                        (links if entry.is_symlink() else subfolders).append(entry.path)
                    continue
                if not is_image_file(entry.name):
                    continue
                link = entry.is_symlink()
                # A plain file's real path is its folder's real path + its name (no extra system call).
                key = os.path.realpath(entry.path) if link else os.path.join(real, entry.name)
                via_link = through_link or link
                if key not in found or (found[key][0] and not via_link):
                    found[key] = (via_link, pathlib.Path(entry.path))
            stack.extend(reversed(subfolders))  # depth first, in sorted order

    walk(str(root), through_link=False)
    while links:
        links.sort(reverse=True)
        walk(links.pop(), through_link=True)
    return [path for _, path in found.values()]


__all__ = ["IMAGE_EXTENSIONS", "find_images", "is_image_file"]
