"""The package's layers and their arrows (docs/architecture.md), and the names notebooks import.

Read from the source, without importing it: nothing here trains or imports TensorFlow, except the one
test that starts the grader's modules in a child process to show that they never load it.
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "adamclinic"

# Which layer may import which. A lesson may use the engine, the shelf and the clinic, but no other lesson;
# the clinic uses the engine and the shelf's data and models, never a lesson or a panel; the engine imports
# nothing of the course; the grader imports only itself (and ``paths``), so it never needs TensorFlow.
LAYERS = {
    "engine": {"engine"},
    "paths": set(),
    "data": {"engine", "paths"},
    "models": set(),
    "panels": {"engine"},
    "clinic": {"clinic", "engine", "data", "models", "paths"},
    "lessons": {"engine", "data", "models", "panels", "clinic", "paths"},
    "grading": {"grading", "paths", "package"},
    # Runs inside the sandboxes (the judge, and the student's kernel): it may load the whole course.
    "judging": {"judging", "package"},
    "lab": {"paths"},
    "bench": {"engine", "data", "models", "panels", "clinic", "lessons", "grading", "package"},
    "figures": {"lessons", "paths"},
    "package": set(),
}
# The package itself imports TensorFlow only outside the grader (adamclinic/__init__.py; checked at run time below).
WITHOUT_TENSORFLOW = {"grading", "paths", "lab"}
HEAVY = {"tensorflow", "keras", "bqplot", "ipywidgets"}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def layer(module: str) -> str:
    parts = module.split(".")
    return "package" if len(parts) == 1 else parts[1]


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def imports(path: Path) -> list[tuple[str, int]]:
    """Every module this file imports, at the top or inside a function: (module, line)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.module, node.lineno))
            # ``from adamclinic.grading import sandbox`` imports a module, not a name.
            found += [
                (f"{node.module}.{a.name}", node.lineno) for a in node.names if f"{node.module}.{a.name}" in modules()
            ]
    return found


def course_imports(path: Path) -> list[tuple[str, int]]:
    return [(m, line) for m, line in imports(path) if m == "adamclinic" or m.startswith("adamclinic.")]


def test_every_module_sits_in_a_known_layer():
    unknown = sorted(m for m in modules() if layer(m) not in LAYERS)
    assert not unknown, (
        f"Put these modules in a layer of tests/test_architecture.py and docs/architecture.md: {unknown}"
    )


@pytest.mark.parametrize("module", sorted(modules()))
def test_arrows_point_one_way(module):
    path = modules()[module]
    allowed = LAYERS[layer(module)] | ({layer(module)} if layer(module) != "lessons" else set())
    wrong = []
    for target, line in course_imports(path):
        target_layer = layer(target)
        if layer(module) == "lessons" and target_layer == "lessons":
            if target != module:
                wrong.append(
                    f"line {line}: {target} (a lesson never imports another lesson; move what both need "
                    "to the engine, data, models or panels)"
                )
        elif target_layer not in allowed:
            wrong.append(f"line {line}: {target} ({layer(module)} may import only {sorted(allowed)})")
    if layer(module) in WITHOUT_TENSORFLOW:
        wrong += [
            f"line {line}: {m} (the grader never imports TensorFlow, Keras or widgets)"
            for m, line in imports(path)
            if m.split(".")[0] in HEAVY
        ]
    assert not wrong, f"{path.relative_to(ROOT)} imports the wrong way:\n" + "\n".join(wrong)


def test_no_import_cycle():
    graph = {m: {t for t, _ in course_imports(p) if t in modules() and t != m} for m, p in modules().items()}
    # A package's __init__ re-exporting its own modules is not a cycle between layers.
    graph = {m: {t for t in targets if not (m == t.rsplit(".", 1)[0])} for m, targets in graph.items()}
    state: dict[str, int] = {}

    def visit(node: str, trail: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                raise AssertionError("import cycle: " + " -> ".join(trail[trail.index(nxt) :] + [node, nxt]))
            if nxt not in state:
                visit(nxt, trail + [node])
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [])


def test_the_grader_never_loads_tensorflow():
    """Every grading module imported in a grader process leaves TensorFlow and Keras unloaded."""
    names = sorted(m for m in modules() if layer(m) == "grading" and not m.endswith("__main__"))
    code = (
        "import sys\n"
        + "".join(f"import {n}\n" for n in names)
        + "heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'keras'))\n"
        + "assert not heavy, heavy[:5]\n"
    )
    env = dict(os.environ, ADAMCLINIC_SKIP_TENSORFLOW="1")
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]


# Names that notebooks import -------------------------------------------------------------------------


def defined_names(module: str) -> set[str]:
    """The names a module binds at its top level (definitions, assignments, imports), read from its source."""
    path = modules()[module]
    names = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                names |= {n.id for n in ast.walk(target) if isinstance(n, ast.Name)}
        elif isinstance(node, ast.Import):
            names |= {(a.asname or a.name).split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            names |= {a.asname or a.name for a in node.names}
    return names | {m.rpartition(".")[2] for m in modules() if m.rpartition(".")[0] == module}


NOTEBOOKS = sorted([*ROOT.glob("lessons/*.ipynb"), *ROOT.glob("solutions/*/*.ipynb")])


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.stem)
def test_every_name_a_notebook_imports_exists(notebook):
    missing, sources = [], []
    for cell in json.loads(notebook.read_text())["cells"]:
        if cell["cell_type"] == "code":
            source = "".join(cell["source"])
            sources.append("\n".join(line for line in source.splitlines() if not line.lstrip().startswith(("%", "!"))))
    modules_used = set()
    for source in sources:
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("adamclinic"):
                modules_used.add(node.module)
                if node.module not in modules():
                    missing.append(f"module {node.module}")
                    continue
                missing += [f"{node.module}.{a.name}" for a in node.names if a.name not in defined_names(node.module)]
            elif isinstance(node, ast.Import):
                missing += [
                    f"module {a.name}"
                    for a in node.names
                    if a.name.startswith("adamclinic") and a.name not in modules()
                ]
    assert not missing, f"{notebook.relative_to(ROOT)} imports names that do not exist: {missing}"


@pytest.mark.parametrize("notebook", sorted(ROOT.glob("lessons/*.ipynb")), ids=lambda p: p.stem)
def test_a_lesson_imports_from_a_handful_of_modules(notebook):
    used = set()
    for cell in json.loads(notebook.read_text())["cells"]:
        if cell["cell_type"] == "code":
            used |= {
                n.module
                for n in ast.walk(ast.parse("".join(cell["source"])))
                if isinstance(n, ast.ImportFrom) and (n.module or "").startswith("adamclinic")
            }
    # A handful: the lesson's own module, the engine, and a few of the shelf and the clinic.
    assert len(used) <= 6, f"{notebook.name} imports from {len(used)} course modules: {sorted(used)}"
