"""No import circles inside ``engine/`` or the Blender extension: a static scan of every
module-level import (function-level imports are deferred on purpose and not counted)."""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
ROOTS = {"engine": REPO / "engine", "click_gaussian_blender": REPO / "click_gaussian_blender"}


def _module_name(package: str, root: Path, path: Path) -> str:
    parts = [package, *path.relative_to(root).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    found = {}
    for package, root in ROOTS.items():
        for p in root.rglob("*.py"):
            rel = p.relative_to(root).parts
            if "__pycache__" in rel or rel[0] == "engine":  # the extension's link to the engine
                continue
            found[_module_name(package, root, p)] = p
    return found


def _resolve(current: str, is_package: bool, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    base = current.split(".") if is_package else current.split(".")[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _canonical(name: str) -> str:
    # the extension reaches the engine through its ``engine`` link: the same modules
    prefix = "click_gaussian_blender.engine"
    return "engine" + name[len(prefix):] if name == prefix or name.startswith(prefix + ".") else name


def import_graph() -> dict[str, set[str]]:
    modules = _modules()
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for name, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in tree.body:  # module level only
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = _canonical(_resolve(name, path.name == "__init__.py", node))
                targets = [f"{base}.{a.name}" for a in node.names] + [base]
            for t in targets:
                t = _canonical(t)
                while t and t not in modules:  # a name inside a module -> that module
                    t = t.rpartition(".")[0]
                if t and t != name and not name.startswith(t + "."):  # not its own package
                    graph[name].add(t)
                    # importing a submodule runs its packages' __init__ too
                    parent = t.rpartition(".")[0]
                    while parent:
                        if parent in modules and parent != name and not name.startswith(parent + "."):
                            graph[name].add(parent)
                        parent = parent.rpartition(".")[0]
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def test_no_import_circle_in_engine_or_extension() -> None:
    graph = import_graph()
    assert len([m for m in graph if m.startswith("engine.")]) > 40  # the scan sees the engine
    assert any(m.startswith("click_gaussian_blender.") for m in graph)
    cycle = find_cycle(graph)
    assert cycle is None, "import circle: " + " -> ".join(cycle)


def test_the_scan_finds_a_circle() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None
