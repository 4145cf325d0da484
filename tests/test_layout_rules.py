"""The code's layout rules (issue 32), checked on the source: file and function sizes, no import circle
among zoo's modules, and ui/ never importing torch.

The exceptions are listed by name, each the size it has now: the lists only shrink. A file or a
function split below the limit must leave its list (the test says so), and nothing new may join.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MAX_FILE_LINES = 450
MAX_FUNCTION_LINES = 80  # decorators and nested closures included

# Files still over the limit, with their length now, each with why it is not split yet.
LONG_FILES: dict[str, int] = {}

# Functions still over the limit ("path:qualified name": lines now), each with why.
LONG_FUNCTIONS: dict[str, int] = {}


def sources(*packages: str) -> list[Path]:
    return sorted(p for pkg in packages for p in (ROOT / pkg).rglob("*.py"))


def rel(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


def functions(tree: ast.AST, prefix: str = ""):
    """(qualified name, node) of every function, nested ones too (a closure counts in its parent as well)."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            yield prefix + node.name, node
            yield from functions(node, f"{prefix}{node.name}.")
        elif isinstance(node, ast.ClassDef):
            yield from functions(node, f"{prefix}{node.name}.")


def length(node: ast.AST) -> int:
    start = min([node.lineno] + [d.lineno for d in getattr(node, "decorator_list", [])])
    return node.end_lineno - start + 1


def test_no_file_over_the_limit_but_the_listed_ones():
    long = {rel(p): n for p in sources("zoo", "ui") if (n := len(p.read_text(encoding="utf-8").splitlines()))
            > MAX_FILE_LINES}
    new = {f: n for f, n in long.items() if f not in LONG_FILES}
    assert not new, f"over {MAX_FILE_LINES} lines: split them {new}"
    grown = {f: (n, LONG_FILES[f]) for f, n in long.items() if n > LONG_FILES[f]}
    assert not grown, f"listed files that grew (now, listed): {grown}"
    done = sorted(set(LONG_FILES) - set(long))
    assert not done, f"now within {MAX_FILE_LINES} lines: take them off LONG_FILES: {done}"


def test_no_function_over_the_limit_but_the_listed_ones():
    long = {}
    for path in sources("zoo", "ui"):
        for name, node in functions(ast.parse(path.read_text(encoding="utf-8"))):
            if (n := length(node)) > MAX_FUNCTION_LINES:
                long[f"{rel(path)}:{name}"] = n
    new = {f: n for f, n in long.items() if f not in LONG_FUNCTIONS}
    assert not new, f"over {MAX_FUNCTION_LINES} lines (closures included): split them {new}"
    grown = {f: (n, LONG_FUNCTIONS[f]) for f, n in long.items() if n > LONG_FUNCTIONS[f]}
    assert not grown, f"listed functions that grew (now, listed): {grown}"
    done = sorted(set(LONG_FUNCTIONS) - set(long))
    assert not done, f"now within {MAX_FUNCTION_LINES} lines: take them off LONG_FUNCTIONS: {done}"


def zoo_modules() -> dict[str, Path]:
    out = {}
    for path in sources("zoo"):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


def imported(module: str, path: Path, node: ast.Import | ast.ImportFrom, known: dict[str, Path]) -> set[str]:
    """The zoo modules an import statement of ``module`` names."""
    if isinstance(node, ast.Import):
        return {a.name for a in node.names if a.name in known}
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    if node.level:
        base = package.split(".")[:len(package.split(".")) - (node.level - 1)]
        base_name = ".".join(base + ([node.module] if node.module else []))
    else:
        base_name = node.module or ""
    return {f"{base_name}.{a.name}" if f"{base_name}.{a.name}" in known else base_name
            for a in node.names if f"{base_name}.{a.name}" in known or base_name in known}


def module_level_imports() -> dict[str, set[str]]:
    """What each zoo module imports when it is imported (not its functions' lazy imports, nor
    ``if TYPE_CHECKING:`` blocks)."""
    known = zoo_modules()
    graph = {}
    for module, path in known.items():
        edges: set[str] = set()
        for node in ast.parse(path.read_text(encoding="utf-8")).body:
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                edges |= imported(module, path, node, known)
        graph[module] = edges - {module}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_cycles_finds_a_circle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_circle_among_zoo_modules():
    graph = module_level_imports()
    assert "zoo.features.zoo_table" in graph and "zoo.models" in graph["zoo.features.zoo_table"]
    assert cycles(graph) == []


def test_every_zoo_module_imports_first():
    """Each zoo module imported as the first of zoo's (a circle would meet a half-initialised module)."""
    names = sorted(n for n in zoo_modules() if not n.endswith("__main__"))  # that one runs the CLI
    code = ("import importlib, sys\n"
            f"for name in {names!r}:\n"
            "    for m in [m for m in sys.modules if m == 'zoo' or m.startswith('zoo.')]:\n"
            "        del sys.modules[m]\n"
            "    importlib.import_module(name)\n"
            "print('ok', len(" + repr(names) + "))\n")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.startswith("ok"), proc.stdout


def test_ui_never_imports_torch():
    found = []
    for path in sources("ui"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level else [])
            found += [f"{rel(path)}:{node.lineno} {n}" for n in names if n.split(".")[0] in ("torch", "torchvision")]
    assert found == []
