"""joulegrid's modules import one another in one direction: no import cycle, at module level or inside a
function (issue 23). The graph is read from the source with ``ast``, nothing is imported:

- an edge is every ``import joulegrid...`` / ``from joulegrid... import`` (relative ones resolved), at module
  level AND inside functions (a lazy import of torch is fine; a lazy import that closes a cycle between
  joulegrid's own modules only hides it from the import system, not from a reader);
- ``from package import name`` is an edge to the submodule when ``name`` is one, else to the package;
- imports under ``if TYPE_CHECKING:`` are left out (annotations only: never executed);
- a submodule's implicit import of its parent package is left out (every package would be a cycle with
  the modules its ``__init__`` re-exports).

A cycle fails the test, printed as the modules and the lines that close it."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "src" / "joulegrid"


def _modules() -> dict[str, tuple[Path, bool]]:
    out = {}
    for p in sorted(PACKAGE.rglob("*.py")):
        parts = list(p.relative_to(PACKAGE.parent).with_suffix("").parts)
        is_pkg = parts[-1] == "__init__"
        out[".".join(parts[:-1] if is_pkg else parts)] = (p, is_pkg)
    return out


def _imports(mod: str, path: Path, is_pkg: bool, modules) -> list[tuple[str, int, bool]]:
    """(imported joulegrid module, line, inside a function) of one module."""
    found: list[tuple[str, int, bool]] = []

    def target(level: int, name: str | None) -> str | None:
        if not level:
            return name
        base = mod.split(".") if is_pkg else mod.split(".")[:-1]
        base = base[: len(base) - (level - 1)]
        return ".".join(base + ([name] if name else []))

    def visit(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                for sub in child.orelse:
                    visit(sub, in_function)
                continue
            func = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            if isinstance(child, ast.Import):
                found.extend((a.name, child.lineno, func) for a in child.names if a.name.startswith("joulegrid"))
            elif isinstance(child, ast.ImportFrom):
                t = target(child.level, child.module)
                if t and t.split(".")[0] == "joulegrid":
                    for a in child.names:
                        sub = f"{t}.{a.name}"
                        found.append((sub if sub in modules else t, child.lineno, func))
            visit(child, func)

    visit(ast.parse(path.read_text()), False)
    return [(t, line, f) for t, line, f in found if t in modules and t != mod]


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []

    def connect(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            connect(v)
    return out


def test_no_import_cycle_between_joulegrid_modules():
    modules = _modules()
    edges = {m: _imports(m, *modules[m], modules) for m in modules}
    graph = {m: {t for t, _, _ in es} for m, es in edges.items()}
    cycles = _cycles(graph)

    def closing(c: list[str]) -> str:
        lines = sorted({(m, line, t, f) for m in c for t, line, f in edges[m] if t in c})
        return "; ".join(f"{m}:{line} imports {t}{' (in a function)' if f else ''}" for m, line, t, f in lines)

    described = [f"{' <-> '.join(c)}: {closing(c)}" for c in cycles]
    assert not cycles, "import cycles:\n" + "\n".join(described)


def test_the_walk_finds_what_it_must():
    """The walk itself: module-level and function-level edges, relative imports and packages resolved,
    TYPE_CHECKING left out (so that the test above can fail)."""
    modules = _modules()
    edges = {m: {t for t, _, _ in _imports(m, *modules[m], modules)} for m in modules}
    assert "joulegrid.base" in edges["joulegrid.config"]  # from .base import ... (module level)
    assert "joulegrid.workloads.registry" in edges["joulegrid.config"]  # inside a function
    assert "joulegrid.meters.factory" in edges["joulegrid.meters"]  # the package's front re-exports it
    assert "joulegrid.meters.account" in edges["joulegrid.meters.meterset"]
    assert "joulegrid.meters.meterset" not in edges["joulegrid.meters.account"]  # TYPE_CHECKING only
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
