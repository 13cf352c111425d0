"""The layers of docs/architecture.md hold: every module is listed, imports only its own layer or
the ones above it, and no modules import each other, not even inside a function."""

from __future__ import annotations

import ast
import importlib
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "sam_widgets"
MAP = ROOT / "docs" / "architecture.md"


def layers() -> dict[str, int]:
    """Module name (relative to sam_widgets, "" for the package) -> layer number, from the map."""
    text = MAP.read_text().split("## Layers", 1)[1].split("\n## ", 1)[0]
    found: dict[str, int] = {}
    for number, body in re.findall(r"^(\d+)\. (.*?)(?=^\d+\. |\Z)", text, re.M | re.S):
        for name in re.findall(r"`([\w.]+)`", body):
            if name == "sam_widgets":
                name = ""
            found.setdefault(name, int(number))
    return found


def modules() -> dict[str, Path]:
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def imports(name: str, path: Path, known: set[str]) -> set[str]:
    """Every sam_widgets module ``name`` imports, at the top or inside a function."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".") if package else []
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            elif (node.module or "").startswith("sam_widgets"):
                target = node.module.removeprefix("sam_widgets").lstrip(".")
            else:
                continue
            # "from . import x" names modules; "from .x import y" a module (or its submodule y)
            subs = [f"{target}.{a.name}".lstrip(".") for a in node.names]
            found |= {c for c in subs + ([target] if node.module else []) if c in known}
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("sam_widgets"):
                    found.add(alias.name.removeprefix("sam_widgets").lstrip("."))
    return {m for m in found if m != name and m in known}


def layer_of(name: str, table: dict[str, int]) -> int | None:
    while True:
        if name in table:
            return table[name]
        if not name:
            return None
        name = name.rpartition(".")[0]


def test_every_module_is_on_the_map_and_imports_only_upwards():
    mods = modules()
    table = {k: v for k, v in layers().items() if k in mods}
    assert len(table) > 25, "could not read the layer list of docs/architecture.md"
    unlisted = [m for m in mods if m and layer_of(m, {k: v for k, v in table.items() if k}) is None]
    assert not unlisted, f"add these modules to the layer list of docs/architecture.md: {unlisted}"
    wrong = []
    for name, path in mods.items():
        mine = layer_of(name, table)
        for dep in imports(name, path, set(mods)):
            if layer_of(dep, table) > mine:
                wrong.append(
                    f"{name or 'sam_widgets'} (layer {mine}) imports {dep} (layer {layer_of(dep, table)})"
                )
    assert not wrong, "imports against the layers of docs/architecture.md:\n" + "\n".join(wrong)


def test_no_import_cycle_not_even_a_deferred_one():
    mods = modules()
    graph = {name: imports(name, path, set(mods)) for name, path in mods.items()}
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for dep in sorted(graph[node]):
            if state.get(dep) == 1:
                cycle = path[path.index(dep) :] + [dep]
                pytest.fail("import cycle: " + " -> ".join(m or "sam_widgets" for m in cycle))
            if dep not in state:
                visit(dep, path + [dep])
        state[node] = 2

    for name in graph:
        if name not in state:
            visit(name, [name])


@pytest.mark.parametrize("name", [m for m in modules() if not m.endswith("__main__")])
def test_each_module_imports(name):
    importlib.import_module(f"sam_widgets.{name}".rstrip("."))
