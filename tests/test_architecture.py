"""The package's layering, checked from the source: imports only point down, no cycles, no argparse below
``uae/commands``, no module over ~500 lines without a reason in its docstring.

The picture (also in ``docs/design.md``)::

    cli ─► commands ─► app ─► training, evaluation, generation, inference, explorer, bench
                                   ─► factory (weights that need converters)
                                   ─► convert, data, visualize ─► models ─► layers ─► errors, files, hardware, utils

Every ``import`` counts, at module level or inside a function: a lazy import still ties two files together.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[1] / "uae"

#: Module (or package) prefix -> level. A module may import from its own level or below, never above.
#: The longest matching prefix wins.
LEVELS: dict[str, int] = {
    "uae._version": 0,
    "uae.errors": 0,
    "uae.files": 0,
    "uae.hardware": 0,
    "uae.utils": 0,
    "uae.online": 0,
    "uae.paths": 0,
    "uae.layers": 1,
    "uae.models": 2,
    "uae.convert": 3,
    "uae.data": 3,
    "uae.visualize": 3,
    "uae.networks": 3,
    "uae.factory": 4,
    "uae.training": 5,
    "uae.evaluation": 5,
    "uae.generation": 5,
    "uae.inference": 5,
    "uae.explorer": 5,
    "uae.bench": 5,
    "uae.integrations": 5,
    "uae.app": 6,
    "uae.commands": 7,
    "uae.cli": 8,
    "uae": 9,  # the package root: lazy re-exports of the public names, imported by nothing inside uae
}

#: Only the command layer may build parsers.
PARSER_MODULES = ("argparse", "jsonargparse", "lightning.pytorch.cli", "lightning.pytorch.cli.LightningCLI")
COMMAND_LAYER = ("uae.commands", "uae.cli")
MAX_LINES = 500
LONG_FILE_REASON = "longer than 500 lines because"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PKG.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _sources() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(PKG.rglob("*.py"))}


def _resolve(current: str, is_pkg: bool, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    base = current.split(".") if is_pkg else current.split(".")[:-1]
    if node.level > 1:
        base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _imports(mod: str, path: Path) -> list[str]:
    """Every dotted name ``mod`` imports (``from a.b import c`` gives ``a.b.c``), lazy imports included."""
    out: list[str] = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            out += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = _resolve(mod, path.name == "__init__.py", node)
            out += [f"{base}.{a.name}" for a in node.names]
    return out


def _graph(with_init: bool = True) -> dict[str, set[str]]:
    files = _sources()
    mods = set(files)

    def target(name: str) -> str | None:
        while name:
            if name in mods:
                return name
            name = name.rpartition(".")[0]
        return None

    edges: dict[str, set[str]] = defaultdict(set)
    for mod, path in files.items():
        if not with_init and path.name == "__init__.py":
            continue
        for name in _imports(mod, path):
            t = target(name)
            if t and t != mod:
                edges[mod].add(t)
    return edges


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected groups of more than one module (iterative Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    nodes = sorted(set(edges) | {t for ts in edges.values() for t in ts})
    for root in nodes:
        if root in index:
            continue
        work = [(root, iter(sorted(edges.get(root, ()))))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            v, it = work[-1]
            for w in it:
                if w not in index:
                    index[w] = low[w] = len(index)
                    stack.append(w)
                    on_stack.add(w)
                    work.append((w, iter(sorted(edges.get(w, ())))))
                    break
                if w in on_stack:
                    low[v] = min(low[v], index[w])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[v])
                if low[v] == index[v]:
                    group = []
                    while True:
                        w = stack.pop()
                        on_stack.discard(w)
                        group.append(w)
                        if w == v:
                            break
                    if len(group) > 1:
                        found.append(sorted(group))
    return found


def level(mod: str) -> int | None:
    """The layer of a module: the level of its longest prefix in :data:`LEVELS`."""
    if mod == "uae":
        return LEVELS["uae"]
    name = mod
    while name and name != "uae":
        if name in LEVELS:
            return LEVELS[name]
        name = name.rpartition(".")[0]
    return None


def test_cycle_finder_finds_a_cycle() -> None:
    """The checker itself: a three-module ring is one group, a chain is none."""
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": {"c"}}) == []


@pytest.mark.parametrize("with_init", [True, False], ids=["all-imports", "ignore-init"])
def test_no_import_cycles(with_init: bool) -> None:
    found = _cycles(_graph(with_init))
    assert not found, "import cycles:\n" + "\n".join(" <-> ".join(g) for g in found)


def test_every_module_has_a_layer() -> None:
    missing = [m for m in _sources() if level(m) is None]
    assert not missing, f"modules without a layer in tests/test_architecture.py LEVELS: {missing}"


def test_imports_only_point_down() -> None:
    up = []
    for mod, targets in _graph().items():
        here = level(mod)
        for t in sorted(targets):
            there = level(t)
            if here is not None and there is not None and there > here:
                up.append(f"{mod} (level {here}) imports {t} (level {there})")
    assert not up, "imports that point up a layer:\n" + "\n".join(up)


def test_no_parsers_below_the_command_layer() -> None:
    bad = []
    for mod, path in _sources().items():
        if mod.startswith(COMMAND_LAYER):
            continue
        for name in _imports(mod, path):
            if name.startswith(PARSER_MODULES):
                bad.append(f"{mod} imports {name}")
        if "Namespace" in path.read_text(encoding="utf-8"):
            bad.append(f"{mod} mentions an argparse Namespace")
    assert not bad, "argument parsing below uae/commands:\n" + "\n".join(bad)


def test_long_modules_say_why() -> None:
    long = []
    for mod, path in _sources().items():
        text = path.read_text(encoding="utf-8")
        n = text.count("\n")
        doc = ast.get_docstring(ast.parse(text)) or ""
        if n > MAX_LINES and LONG_FILE_REASON not in doc.lower():
            long.append(f"{mod}: {n} lines")
    assert not long, (
        f"modules over {MAX_LINES} lines whose docstring does not say '{LONG_FILE_REASON} ...':\n"
        + "\n".join(long)
    )


def test_layer_checks_see_a_violation() -> None:
    """The level rule is not vacuous: a models module importing training is reported as pointing up."""
    assert level("uae.models.uae") < level("uae.training.module")
    assert level("uae.commands.eval") > level("uae.evaluation.reconstruction")
    assert level("uae") > level("uae.cli")
    assert level("uae.some_new_module") is None  # a new top-level module must be given a layer
    assert _cycles({"uae.models.uae": {"uae.training.module"}}) == []  # pointing up is not a cycle ...
    here, there = level("uae.models.uae"), level("uae.training.module")
    assert there > here  # ... but test_imports_only_point_down reports it
