"""The layout's rules, checked on the source (AST: nothing is imported to check it).

Data flows one way through the road, and so do imports: a lower layer never imports a higher
one, and no modules import each other in a circle. Verbs that need no model start light.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from tsforge.paths import ROOT

# Lowest first. A module may import its own layer and the ones before it, never after.
LAYERS = [
    ("tsforge.paths", "training.files", "training.errors"),  # what every layer needs
    ("handlers",),  # codecs, contracts, the handler: serving inside TorchServe
    ("training",),  # specs, training, export, gates
    ("models",),  # one module per model, and the registry above them
    ("tsforge.packaging", "tsforge.server", "tsforge.deploy", "tsforge.monitoring"),
    ("bench",),  # not installed: the benchmark over all of the above
    ("tsforge.cli",),  # the one entry point (`tsforge bench` runs the checkout's bench/)
]
PACKAGES = ("handlers", "training", "models", "tsforge", "bench")
MAX_LINES = 350  # "about 300": a module past it holds two things


def modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def imports(path: Path, known: dict[str, Path]) -> set[str]:
    """Repository modules `path` imports, at any depth of its code (lazy imports count too)."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module, *(f"{node.module}.{a.name}" for a in node.names)]
        out |= {n for n in names if n in known}
    return out


def layer(module: str) -> int:
    matches = [
        (len(prefix), i)
        for i, prefixes in enumerate(LAYERS)
        for prefix in prefixes
        if module == prefix or module.startswith(prefix + ".")
    ]
    assert matches, f"{module} is in no layer: add it to LAYERS"
    return max(matches)[1]


GRAPH = {name: imports(path, modules()) for name, path in modules().items()}


def test_no_module_imports_a_higher_layer():
    upward = [
        f"{a} (layer {layer(a)}) imports {b} (layer {layer(b)})"
        for a, targets in GRAPH.items()
        for b in targets
        if layer(b) > layer(a)
    ]
    assert not upward, "\n".join(upward)


def test_no_import_cycles():
    # A package imports its own __init__ implicitly; only module-to-module edges count.
    edges = {a: {b for b in targets if b != a and not a.startswith(b + ".")} for a, targets in GRAPH.items()}
    state: dict[str, int] = {}
    cycles = []

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in edges.get(node, ()):
            if state.get(nxt) == 1:
                cycles.append(" -> ".join([*path[path.index(nxt) :], nxt]))
            elif nxt not in state:
                visit(nxt, [*path, nxt])
        state[node] = 2

    for node in sorted(edges):
        if node not in state:
            visit(node, [node])
    assert not cycles, "\n".join(cycles)


def test_modules_stay_short():
    long = {name: n for name, path in modules().items() if (n := len(path.read_text().splitlines())) > MAX_LINES}
    assert not long, long


@pytest.mark.parametrize("argv", [["--help"], ["serve", "key"], ["serve", "status"]])
def test_verbs_that_need_no_model_import_no_torch_and_no_model(argv, tmp_path):
    probe = (
        "import sys\n"
        "from tsforge.cli import main\n"
        f"try:\n    main({argv!r})\nexcept SystemExit:\n    pass\n"
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'transformers', 'onnxruntime', 'models'))\n"
        "print('HEAVY', heavy)\n"
    )
    env = {"PATH": "/usr/bin:/bin", "TSFORGE_RUN_DIR": str(tmp_path)}
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert "HEAVY []" in out.stdout, out.stdout + out.stderr
