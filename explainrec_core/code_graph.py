"""Which source files a module's behaviour depends on: its explainrec_core imports, read with `ast`, transitively.

DVC re-runs a stage when one of its dependency files changes, so a stage's code dependencies must include every
library module its step function can reach: a change to a metric must re-run the steps that compute it. Listing
them by hand drifted (steps missed the scoring and ranking modules they import), so pipeline.py computes them here.

Every import counts, also those inside functions (imported lazily to keep start-up fast, but still run), and
importing `a.b.c` runs the `__init__` of packages `a` and `a.b` too. The result over-approximates what a single
function uses (a module's other functions' imports count as well), which can only cause an unneeded re-run,
never a stale result.
"""

from __future__ import annotations

import ast
from functools import cache
from pathlib import Path

PACKAGE = "explainrec_core"
ROOT = Path(__file__).resolve().parent.parent  # the folder holding the package: paths are relative to it


def module_file(module: str) -> Path | None:
    """The source file of an explainrec_core module or package (its __init__.py), or None if there is none."""
    if module != PACKAGE and not module.startswith(PACKAGE + "."):
        return None
    base = ROOT.joinpath(*module.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _packages(module: str) -> list[str]:
    """`a.b.c` -> [`a`, `a.b`]: the packages whose __init__ runs before the module."""
    parts = module.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts))]


def _absolute(node: ast.ImportFrom, module: str, is_package: bool) -> str:
    """The module an ImportFrom names, with relative imports (`from . import x`) resolved against `module`."""
    if not node.level:
        return node.module or ""
    parts = module.split(".") if is_package else module.split(".")[:-1]
    parts = parts[: len(parts) - node.level + 1]
    return ".".join(parts + ([node.module] if node.module else []))


@cache
def direct_imports(module: str) -> frozenset[str]:
    """The explainrec_core modules (and packages) that `module`'s source imports anywhere in its body."""
    path = module_file(module)
    if path is None:
        return frozenset()
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            target = _absolute(node, module, path.name == "__init__.py")
            found.add(target)
            # `from pkg import name` imports the submodule pkg.name when there is one.
            found.update(f"{target}.{alias.name}" for alias in node.names)
    found |= {pkg for name in found for pkg in _packages(name)}
    return frozenset(name for name in found if module_file(name) is not None)


@cache
def module_closure(module: str) -> frozenset[str]:
    """`module`, the packages it lives in and every explainrec_core module it imports, transitively."""
    seen: set[str] = set()
    todo = [module, *_packages(module)]
    while todo:
        name = todo.pop()
        if name in seen or module_file(name) is None:
            continue
        seen.add(name)
        todo.extend(direct_imports(name))
    return frozenset(seen)


def code_files(*modules: str) -> tuple[str, ...]:
    """The sorted repository-relative source files of the modules and everything they import (DVC deps)."""
    names = set().union(*(module_closure(m) for m in modules)) if modules else set()
    return tuple(sorted(module_file(n).relative_to(ROOT).as_posix() for n in names))
