"""The design's rooms: `cleaners/`, `tokenizer/`, `shards/` and `train/` never import Apache Beam (DESIGN.md), so
every rule and model can be used and tested without it. Each of their modules is imported in a fresh interpreter in
which `apache_beam` cannot be imported. And no module of the project imports itself back through others: the
import graph of pipelines/, cleaners/, shards/, tokenizer/ and train/ (read with `ast`, every `import` counted,
also those inside functions) has no cycle."""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BEAM_FREE = ("cleaners", "tokenizer", "shards", "train")

PROBE = """
import importlib, importlib.abc, pkgutil, sys

class NoBeam(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "apache_beam" or name.startswith("apache_beam."):
            raise ImportError(f"{name} is not allowed in this room")
        return None

sys.meta_path.insert(0, NoBeam())
imported = []
for package in sys.argv[1:]:
    module = importlib.import_module(package)
    imported.append(package)
    for info in pkgutil.walk_packages(module.__path__, package + "."):
        importlib.import_module(info.name)
        imported.append(info.name)
assert not any(name.startswith("apache_beam") for name in sys.modules), "apache_beam was imported"
print(len(imported))
"""


def test_beam_free_rooms_import_without_apache_beam():
    done = subprocess.run([sys.executable, "-c", PROBE, *BEAM_FREE], cwd=ROOT, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    modules = sum(1 for package in BEAM_FREE for _ in (ROOT / package).rglob("*.py"))
    assert int(done.stdout.split()[-1]) == modules


PROJECT = ("pipelines", "cleaners", "shards", "tokenizer", "train")


def project_modules(root: Path, packages=PROJECT) -> dict[str, tuple[Path, bool]]:
    """Dotted module name -> (file, is it a package's __init__) for every .py file under `packages`."""
    modules = {}
    for package in packages:
        for path in sorted((root / package).rglob("*.py")):
            parts = path.relative_to(root).with_suffix("").parts
            is_package = parts[-1] == "__init__"
            modules[".".join(parts[:-1] if is_package else parts)] = (path, is_package)
    return modules


def import_graph(root: Path, packages=PROJECT) -> dict[str, set[str]]:
    """Module -> the project modules it imports anywhere in its file (module level, functions, `if` blocks).

    `import a.b.c` and `from a.b import c` point at the deepest project module they name (a.b.c when it is a
    module, else a.b, the package that defines c); relative imports are resolved against the importing module's
    package; imports of anything outside `packages` are left out."""
    modules = project_modules(root, packages)

    def deepest(dotted: str) -> str | None:
        parts = dotted.split(".")
        return next((".".join(parts[:n]) for n in range(len(parts), 0, -1) if ".".join(parts[:n]) in modules), None)

    graph: dict[str, set[str]] = {}
    for name, (path, is_package) in modules.items():
        package = name if is_package else name.rpartition(".")[0]
        targets: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            if isinstance(node, ast.Import):
                found = [deepest(alias.name) for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:  # `from .x import y`, `from .. import y`
                    parts = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                    base = ".".join(parts + ([node.module] if node.module else []))
                else:
                    base = node.module or ""
                found = [deepest(f"{base}.{alias.name}") for alias in node.names]
            else:
                continue
            targets.update(t for t in found if t and t != name)
        graph[name] = targets
    return graph


def import_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Cycles `[a, b, ..., a]` among modules that import one another: for every module of a strongly connected
    component of more than one module (Tarjan's algorithm), the shortest cycle through it, each cycle once,
    written from its smallest module name."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    groups: list[set[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = {stack.pop()}
            while v not in group:
                group.add(stack.pop())
            if len(group) > 1:
                groups.append(group)

    def shortest_cycle(start: str, group: set[str]) -> list[str]:
        paths, seen = [[start]], {start}
        while True:  # breadth first inside the group, back to `start` (a strongly connected group has a way back)
            path = paths.pop(0)
            for w in sorted(graph[path[-1]] & group):
                if w == start:
                    return path + [w]
                if w not in seen:
                    seen.add(w)
                    paths.append(path + [w])

    for v in sorted(graph):
        if v not in index:
            visit(v)
    cycles = set()
    for group in groups:
        for start in group:
            ring = shortest_cycle(start, group)[:-1]
            first = ring.index(min(ring))
            ring = ring[first:] + ring[:first]
            cycles.add(tuple(ring + ring[:1]))
    return sorted(list(cycle) for cycle in cycles)


def test_cycle_finder_sees_function_level_and_relative_imports(tmp_path):
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "a.py").write_text("import os\n\ndef f():\n    from .sub import b\n")
    (pkg / "sub" / "b.py").write_text("from ..c import thing\n")
    (pkg / "c.py").write_text("import pkg.a as a\nthing = 1\n")
    (pkg / "d.py").write_text("from pkg import c\nfrom pkg.sub import b\n")  # imports into the cycle, not part of it
    graph = import_graph(tmp_path, ("pkg",))
    assert graph["pkg.a"] == {"pkg.sub.b"} and graph["pkg.sub.b"] == {"pkg.c"} and graph["pkg.c"] == {"pkg.a"}
    assert import_cycles(graph) == [["pkg.a", "pkg.sub.b", "pkg.c", "pkg.a"]]
    (pkg / "c.py").write_text("thing = 1\n")
    assert import_cycles(import_graph(tmp_path, ("pkg",))) == []


def test_no_import_cycles_in_the_project():
    graph = import_graph(ROOT)
    assert len(graph) == sum(1 for package in PROJECT for _ in (ROOT / package).rglob("*.py"))
    cycles = import_cycles(graph)
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(cycle) for cycle in cycles)


TAR_FREE = ("pipelines", "cleaners", "tokenizer", "train")


def tarfile_uses(root: Path, packages=TAR_FREE) -> list[str]:
    """`path:line` of every `import tarfile`, `from tarfile import ...` and `importlib.import_module("tarfile")` /
    `__import__("tarfile")` in the modules under `packages` (anywhere in a file, also inside functions)."""
    found = []
    for package in packages:
        for path in sorted((root / package).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
                if isinstance(node, ast.Import):
                    names = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom):
                    names = [node.module or ""] if not node.level else []
                elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant):
                    func = node.func
                    called = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
                    names = [str(node.args[0].value)] if called in ("import_module", "__import__") else []
                else:
                    continue
                if any(name == "tarfile" or name.startswith("tarfile.") for name in names):
                    found.append(f"{path.relative_to(root).as_posix()}:{node.lineno}")
    return found


def test_tarfile_finder_sees_every_kind_of_import(tmp_path):
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "a.py").write_text("import os, tarfile as t\n")
    (pkg / "b.py").write_text("def f():\n    from tarfile import TarInfo\n")
    (pkg / "c.py").write_text("import importlib\nm = importlib.import_module('tarfile')\nn = __import__('tarfile')\n")
    (pkg / "d.py").write_text("from shards.tar import iter_members\nfrom . import tarfile\nx = 'import tarfile'\n")
    assert tarfile_uses(tmp_path, ("pkg",)) == ["pkg/a.py:1", "pkg/b.py:2", "pkg/c.py:2", "pkg/c.py:3"]


def test_only_shards_reads_or_writes_tar_files():
    """DESIGN.md: `shards/` is the only code that reads or writes tar files (shards/tar.py); the other rooms go
    through it, so one writer and one reader handle every tar."""
    uses = tarfile_uses(ROOT)
    assert not uses, "tarfile used outside shards/ (use shards.tar):\n" + "\n".join(uses)
