"""Which source files a module runs: its own and, transitively, those of the product's modules it
imports (at the top or inside a function), found by reading the code, not by importing it."""

from __future__ import annotations

import ast
import hashlib
from collections.abc import Iterable
from pathlib import Path

# The product's packages; what else a module imports (the standard library, third parties, the
# benchmark) is not followed.
PRODUCT = frozenset({"pledgeflow", "schemas", "flows", "tasks", "deployments"})


def module_file(name: str, root: Path) -> Path | None:
    """The source file of module `name` under `root` (the folder holding the packages)."""
    base = root.joinpath(*name.split("."))
    for path in (base.with_suffix(".py"), base / "__init__.py"):
        if path.is_file():
            return path
    return None


def _imported(tree: ast.AST, name: str, is_package: bool) -> Iterable[str]:
    """Product modules (and names that may be modules) that a module's code imports."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if node.level:
                package = name.split(".")
                package = package[: len(package) - node.level + (1 if is_package else 0)]
                module = ".".join([*package, *([module] if module else [])])
            yield module
            yield from (f"{module}.{alias.name}" for alias in node.names)


def module_closure(entries: Iterable[str], root: Path) -> list[Path]:
    """The source files of `entries` and of every product module they import, transitively,
    with the `__init__.py` of each package on the way; sorted. A missing entry is an error.

    What a package's `__init__.py` imports is followed only where the package itself is
    imported: a module's package gathering the names of its sibling modules does not make those
    siblings part of the module's code."""
    found: dict[str, Path] = {}
    followed: set[str] = set()
    pending: list[tuple[str, bool]] = []  # a module and whether to follow what it imports
    for entry in entries:
        if module_file(entry, root) is None:
            raise ValueError(f"no module {entry} under {root}")
        pending.append((entry, True))
    while pending:
        name, follow = pending.pop()
        if name in followed or (name in found and not follow):
            continue
        if name.split(".")[0] not in PRODUCT:
            continue
        path = module_file(name, root)
        if path is None:
            continue  # a name imported from a module, not a module
        found[name] = path
        parts = name.split(".")
        pending += [(".".join(parts[:end]), False) for end in range(1, len(parts))]
        if follow:
            followed.add(name)
            tree = ast.parse(path.read_bytes(), filename=str(path))
            pending += [
                (module, True) for module in _imported(tree, name, path.name == "__init__.py")
            ]
    return sorted(set(found.values()))


def source_digest(entries: Iterable[str], root: Path) -> str:
    """A digest of the source files `entries` run (`module_closure`), with their paths."""
    digest = hashlib.sha256()
    for path in module_closure(entries, root):
        digest.update(path.relative_to(root).as_posix().encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()
