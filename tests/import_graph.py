"""A static import graph of a package, read from its source files with :mod:`ast`.

Every ``import`` and ``from ... import`` of the package's own modules is an edge, at module
level or inside a function (a function-local import still runs before the function can
work, so it closes a circle as surely as a module-level one). Imports under
``if TYPE_CHECKING:`` never run and are left out. A name a package re-exports lazily
(``__getattr__, __dir__ = lazy_exports(__name__, {module: (name, ...)})``) counts as an import of the
module that defines it, since that is the module the import runs.

Used by ``tests/test_imports.py`` on ``genaug`` and on small synthetic packages.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Import:
    """One import statement's target inside the package: who imports what, where, how."""

    source: str  # the importing module
    target: str  # the imported module of the package
    line: int
    local: bool  # inside a function or method


@dataclass(frozen=True)
class ImportStatement:
    """Any import statement (of the package or not): the top-level module name it loads."""

    source: str
    module: str  # full dotted name imported, e.g. "torch.nn" or "genaug.data.base"
    line: int
    local: bool


def module_files(src: Path, package: str) -> dict[str, Path]:
    """``{"pkg.sub.mod": path}`` for every ``.py`` file of ``src/package`` (``__init__`` names its package)."""
    modules: dict[str, Path] = {}
    for path in sorted((src / package).rglob("*.py")):
        parts = list(path.relative_to(src).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        modules[".".join(parts)] = path
    return modules


def _is_type_checking(node: ast.If) -> bool:
    return "TYPE_CHECKING" in ast.unparse(node.test)


def _walk(tree: ast.Module):
    """``(node, local)`` for every import statement of ``tree``, skipping ``if TYPE_CHECKING:`` blocks."""
    found: list[tuple[ast.Import | ast.ImportFrom, bool]] = []

    class Visitor(ast.NodeVisitor):
        depth = 0

        def visit_Import(self, node: ast.Import) -> None:
            found.append((node, self.depth > 0))

        visit_ImportFrom = visit_Import  # type: ignore[assignment]

        def visit_If(self, node: ast.If) -> None:
            if _is_type_checking(node):
                for child in node.orelse:
                    self.visit(child)
            else:
                self.generic_visit(node)

        def visit_FunctionDef(self, node) -> None:
            self.depth += 1
            self.generic_visit(node)
            self.depth -= 1

        visit_AsyncFunctionDef = visit_Lambda = visit_FunctionDef

    Visitor().visit(tree)
    return found


def _absolute(node: ast.ImportFrom, module: str, is_package: bool) -> str:
    if not node.level:
        return node.module or ""
    package = module if is_package else module.rpartition(".")[0]
    parts = package.split(".")
    parts = parts[: len(parts) - node.level + 1]
    return ".".join(parts + ([node.module] if node.module else []))


def lazy_table(tree: ast.Module) -> dict[str, str]:
    """``{name: module}`` of the ``{module: (name, ...)}`` table a module passes to
    ``lazy_exports`` (empty when it has none)."""
    assigned: dict[str, ast.expr] = {}
    table: dict[str, str] = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            assigned[node.targets[0].id] = node.value
        for call in ast.walk(node):
            if isinstance(call, ast.Call) and getattr(call.func, "id", None) == "lazy_exports" and len(call.args) == 2:
                arg = call.args[1]
                if isinstance(arg, ast.Name):
                    arg = assigned.get(arg.id, arg)
                if isinstance(arg, ast.Dict):
                    for key, value in zip(arg.keys, arg.values):
                        if isinstance(key, ast.Constant) and isinstance(value, (ast.Tuple, ast.List)):
                            for name in value.elts:
                                if isinstance(name, ast.Constant):
                                    table[name.value] = key.value
    return table


def statements(src: Path, package: str) -> list[ImportStatement]:
    """Every import statement of the package's modules, with the full name it imports."""
    found: list[ImportStatement] = []
    for name, path in module_files(src, package).items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node, local in _walk(tree):
            if isinstance(node, ast.Import):
                found.extend(ImportStatement(name, alias.name, node.lineno, local) for alias in node.names)
            else:
                base = _absolute(node, name, path.name == "__init__.py")
                found.append(ImportStatement(name, base, node.lineno, local))
    return found


def edges(src: Path, package: str) -> list[Import]:
    """Every import of one of the package's modules by another (or the same) one."""
    modules = module_files(src, package)
    trees = {name: ast.parse(path.read_text(encoding="utf-8"), filename=str(path)) for name, path in modules.items()}
    lazy = {name: lazy_table(tree) for name, tree in trees.items()}
    found: list[Import] = []

    def add(source: str, target: str, node: ast.stmt, local: bool) -> None:
        edge = Import(source, target, node.lineno, local)
        if target in modules and target != source and edge not in found:
            found.append(edge)

    for name, tree in trees.items():
        is_package = modules[name].name == "__init__.py"
        for node, local in _walk(tree):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    add(name, alias.name, node, local)
                continue
            base = _absolute(node, name, is_package)
            if not base.startswith(package):
                continue
            for alias in node.names:
                if f"{base}.{alias.name}" in modules:  # from pkg import submodule
                    add(name, f"{base}.{alias.name}", node, local)
                elif alias.name in lazy.get(base, {}):  # a lazy re-export runs its defining module
                    add(name, lazy[base][alias.name], node, local)
                else:
                    add(name, base, node, local)
    return found


def graph_of(found: list[Import]) -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for edge in found:
        graph.setdefault(edge.source, set()).add(edge.target)
        graph.setdefault(edge.target, set())
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One circle through each strongly connected component of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []
    counter = 0

    def connect(start: str) -> None:
        nonlocal counter
        # iterative Tarjan: (node, iterator over its successors)
        work = [(start, iter(sorted(graph.get(start, ()))))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, successors = work[-1]
            advanced = False
            for nxt in successors:
                if nxt not in index:
                    index[nxt] = low[nxt] = counter
                    counter += 1
                    stack.append(nxt)
                    on_stack.add(nxt)
                    work.append((nxt, iter(sorted(graph.get(nxt, ())))))
                    advanced = True
                    break
                if nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
            if advanced:
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    components.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            connect(node)
    return [_circle_in(graph, set(component)) for component in sorted(components)]


def components(graph: dict[str, set[str]]) -> list[list[str]]:
    """The modules of each circle-holding strongly connected component, sorted."""
    return [sorted(_reach(graph, c[0]) & _reached_by(graph, c[0])) for c in cycles(graph)]


def _reach(graph: dict[str, set[str]], start: str) -> set[str]:
    seen, stack = {start}, [start]
    while stack:
        for nxt in graph.get(stack.pop(), ()):
            if nxt not in seen:
                seen.add(nxt)
                stack.append(nxt)
    return seen


def _reached_by(graph: dict[str, set[str]], start: str) -> set[str]:
    reverse: dict[str, set[str]] = {}
    for node, targets in graph.items():
        for target in targets:
            reverse.setdefault(target, set()).add(node)
    return _reach(reverse, start)


def _circle_in(graph: dict[str, set[str]], component: set[str]) -> list[str]:
    """A shortest circle ``[a, b, ..., a]`` inside one strongly connected component."""
    start = min(component)
    parents: dict[str, str] = {}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for nxt in sorted(graph[node] & component):
                if nxt == start:
                    path = [node]
                    while path[-1] != start:
                        path.append(parents[path[-1]])
                    return [*reversed(path), start]
                if nxt not in parents:
                    parents[nxt] = node
                    following.append(nxt)
        frontier = following
    raise AssertionError("not a strongly connected component")


def floor_of(module: str, floors: dict[str, int]) -> int | None:
    """The floor of ``module``: that of the longest prefix of its name in ``floors``."""
    parts = module.split(".")
    for end in range(len(parts), 0, -1):
        prefix = ".".join(parts[:end])
        if prefix in floors:
            return floors[prefix]
    return None


def upward(found: list[Import], floors: dict[str, int], siblings: set[int] = frozenset()) -> list[Import]:
    """Imports from a lower floor to a higher one, and between two packages of a floor in ``siblings``."""
    bad: list[Import] = []
    for edge in found:
        low, high = floor_of(edge.source, floors), floor_of(edge.target, floors)
        if low is None or high is None:
            continue
        if high > low or (high == low and high in siblings and _unit(edge.source, floors) != _unit(edge.target, floors)):
            bad.append(edge)
    return bad


def _unit(module: str, floors: dict[str, int]) -> str:
    parts = module.split(".")
    for end in range(len(parts), 0, -1):
        prefix = ".".join(parts[:end])
        if prefix in floors:
            return prefix
    return module
