"""Run a lesson's plain-Keras cells the way a student does, for a claim test to check their numbers.

A lesson shows its demo and its fix as the ``model.compile`` / ``model.fit`` code a student writes in their
own project, in code cells tagged ``plain-keras``. ``plain_keras_cells`` runs the lesson's setup cell (its
first code cell) and then those cells, in order, in one namespace, and returns the namespace: the claim
test asserts the lesson's numbers on what the cells computed, beside the engine's run of the same config.
"""

from __future__ import annotations

import contextlib
import io

import nbformat

from nbgrader_course import ROOT

TAG = "plain-keras"


def tagged_cells(stem: str) -> list[str]:
    nb = nbformat.read(ROOT / "lessons" / f"{stem}.ipynb", as_version=4)
    return [c.source for c in nb.cells if c.cell_type == "code" and TAG in c.metadata.get("tags", [])]


def plain_keras_cells(stem: str) -> dict:
    """The namespace after the setup cell and every ``plain-keras`` cell of ``lessons/<stem>.ipynb`` ran."""
    nb = nbformat.read(ROOT / "lessons" / f"{stem}.ipynb", as_version=4)
    setup = next(c.source for c in nb.cells if c.cell_type == "code")
    cells = tagged_cells(stem)
    assert cells, f"lessons/{stem}.ipynb has no code cell tagged {TAG!r}"
    namespace: dict = {"__name__": f"lesson_{stem}"}
    with contextlib.redirect_stdout(io.StringIO()):
        for source in [setup, *cells]:
            exec(compile(source, f"lessons/{stem}.ipynb", "exec"), namespace)
    return namespace
