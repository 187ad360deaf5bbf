"""``uae recipes [NAME ...] [--copy DIR] [--force]``: list the bundled training recipes, or copy them out.

Recipes ship with the package (:mod:`uae.models.bundled`), so ``uae fit --config finetune_folder`` works
from any folder; copy one out to change more than the command line does.
"""

from __future__ import annotations

from collections.abc import Sequence

from uae.commands._options import ArgumentParser

#: Parameter of :func:`uae.models.bundled.copy_recipes` -> the option that sets it.
FLAGS = {"dest": "--copy", "overwrite": "--force", "names": "NAME"}


def build_parser() -> ArgumentParser:
    """Options of ``uae recipes``."""
    parser = ArgumentParser(
        prog="uae recipes",
        description="List the training recipes that ship with uae (use one by name: uae fit --config NAME), "
        "or copy them into a folder to edit.",
    )
    parser.add_argument("names", nargs="*", metavar="NAME", help="recipes to list or copy (default: all)")
    parser.add_argument("--copy", metavar="DIR", default=None, help="copy the recipes into DIR (created)")
    parser.add_argument("--force", action="store_true", help="with --copy: replace files that exist")
    return parser


def main(argv: Sequence[str]) -> int:
    """Parse, then print one line per recipe (name, what it trains, file), or copy them and print the files."""
    args = build_parser().parse_args(list(argv))
    from uae.models.bundled import copy_recipes, find_recipe, list_recipes, recipe_summary

    if args.copy is not None:
        for path in copy_recipes(args.copy, args.names or None, overwrite=args.force):
            print(f"wrote {path}")
        return 0
    recipes = {p.stem: p for p in map(find_recipe, args.names)} if args.names else list_recipes()
    if not recipes:
        print("no bundled recipes found")
        return 1
    width = max(len(n) for n in recipes)
    for name, path in recipes.items():
        print(f"{name:{width}s}  {recipe_summary(path)}")
    print(f"\nfolder: {next(iter(recipes.values())).parent}")
    print("use one by name: uae fit --config NAME ...; edit a copy: uae recipes NAME --copy DIR")
    return 0
