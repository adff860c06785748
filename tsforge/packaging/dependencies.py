"""Which repository files a module depends on, found from its imports (AST: nothing runs).

The build fingerprints a model with exactly these (its module and what it imports, such as
the digits transform that training shares with serving), and the archive ships exactly the
handler modules its kind imports.
"""

from __future__ import annotations

import ast
from pathlib import Path

from tsforge.paths import ROOT


def _imported(node: ast.AST) -> list[str]:
    if isinstance(node, ast.Import):
        return [a.name for a in node.names]
    if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
        return [node.module, *(f"{node.module}.{a.name}" for a in node.names)]
    return []


def local_imports(*roots: Path) -> list[Path]:
    """`roots` and every repository module they import, transitively, sorted."""
    seen: set[Path] = set()
    todo = [Path(r).resolve() for r in roots]
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        for node in ast.walk(ast.parse(path.read_text())):
            for name in _imported(node):
                base = ROOT / name.replace(".", "/")
                # a module, or a package (its __init__ runs on import, so it ships too)
                for candidate in (base.with_suffix(".py"), base / "__init__.py"):
                    if candidate.exists():
                        todo.append(candidate.resolve())
    return sorted(seen)
