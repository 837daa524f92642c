"""The layout shows the architecture, and stays that way: no import cycle between modules, each
package imports only the layers below it, and no module grows past the size a reader takes in."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("archiver", "workers")
MAX_LINES = 400
#: Modules still to be split (issue 21), at most as long as they are now: the test fails if one
#: grows, and when one is split, so that it is taken off this list.
STILL_TO_SPLIT = {}

#: What each part may import (besides itself and third-party code). ``archiver.cli`` is the top:
#: it may import anything.
ALLOWED = {
    "archiver.core": set(),
    "archiver.db": {"archiver.core"},
    "archiver.accounts": {"archiver.core"},
    "archiver.providers": {"archiver.core"},
    "archiver.storage": {"archiver.core"},
    "archiver.simulator": {"archiver.core"},  # the provider peer knows nothing of the pipeline
    "archiver.pipeline": {
        "archiver.core", "archiver.db", "archiver.accounts", "archiver.providers", "archiver.storage",
    },
    "archiver.backfill": {
        "archiver.core", "archiver.db", "archiver.accounts", "archiver.providers", "archiver.storage",
        "archiver.pipeline",
    },
    "archiver.ops": {
        "archiver.core", "archiver.db", "archiver.accounts", "archiver.providers", "archiver.storage",
        "archiver.pipeline",
    },
    "archiver.intake": {"archiver.core", "archiver.db", "archiver.accounts", "archiver.pipeline", "archiver.ops"},
    "archiver.local": {"archiver.core", "archiver.db", "archiver.accounts", "archiver.storage", "archiver.ops"},
    "workers": {
        "archiver.core", "archiver.db", "archiver.accounts", "archiver.providers", "archiver.storage",
        "archiver.pipeline", "archiver.backfill",
    },
}  # fmt: skip


def modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


def imported(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    """The project's modules ``name`` imports, anywhere in it (a function's import counts: it runs
    too), except under ``if TYPE_CHECKING:``."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()

    def walk(node: ast.AST) -> Iterator[ast.AST]:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                continue
            yield child
            yield from walk(child)

    for node in walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([node.module] if node.module else [])])
            for alias in node.names:
                found.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base)
    return {m for m in found if m in known and m != name}


def graph() -> dict[str, set[str]]:
    known = modules()
    return {name: imported(name, path, known) for name, path in known.items()}


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(edges[node]):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return found


def part_of(module: str) -> str | None:
    return next(
        (p for p in sorted(ALLOWED, key=len, reverse=True) if module == p or module.startswith(p + ".")), None
    )


def test_no_import_cycle():
    assert cycles(graph()) == []


def test_the_cycle_finder_finds_one():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_each_part_imports_only_the_layers_below_it():
    wrong = []
    for module, targets in graph().items():
        part = part_of(module)
        if part is None:
            continue  # archiver.cli and the package roots
        for target in targets:
            other = part_of(target)
            if other is not None and other != part and other not in ALLOWED[part]:
                wrong.append(f"{module} -> {target}")
            if target.startswith(("archiver.cli", "workers")) and not module.startswith("workers"):
                wrong.append(f"{module} -> {target}")
    assert wrong == []


@pytest.mark.parametrize("package", PACKAGES)
def test_no_module_is_too_long_to_take_in(package):
    lengths = {
        str(p.relative_to(ROOT)): len(p.read_text().splitlines()) for p in (ROOT / package).rglob("*.py")
    }
    long = {name: n for name, n in lengths.items() if n > STILL_TO_SPLIT.get(name, MAX_LINES)}
    assert long == {}
    split = {name for name in STILL_TO_SPLIT if name in lengths and lengths[name] <= MAX_LINES}
    assert split == set(), "split: take them off STILL_TO_SPLIT"
