"""Notebooks are committed clean and every lesson follows the course's skeleton.

That every lesson runs from top to bottom without an error or a line on stderr is checked in a real
JupyterLab, with Run All Cells (tests/test_browser.py)."""

from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
ALL_NOTEBOOKS = sorted(
    p
    for folder in ("lessons", "exercises", "solutions")
    for p in (ROOT / folder).rglob("*.ipynb")
    if ".ipynb_checkpoints" not in p.parts
)
LESSONS = sorted((ROOT / "lessons").glob("*.ipynb"))


def short(path: Path) -> str:
    return str(path.relative_to(ROOT))


@pytest.mark.parametrize("path", ALL_NOTEBOOKS, ids=short)
def test_notebook_is_valid_and_committed_without_outputs(path):
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    assert "widgets" not in nb.metadata, "widget state saved in the notebook's metadata"
    for index, cell in enumerate(nb.cells):
        if cell.cell_type == "code":
            assert not cell.outputs, f"cell {index} has outputs"
            assert cell.execution_count is None, f"cell {index} has an execution count"


@pytest.mark.parametrize("path", LESSONS, ids=short)
def test_lesson_follows_the_course_skeleton(path):
    nb = nbformat.read(path, as_version=4)
    text = "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")
    assert nb.cells[0].source.startswith("# Lesson "), "first cell is the title"
    for part in (
        "By the end of this lesson you can",
        "## Setup",
        "## 1.",
        "**Try it**",
        "## Summary",
        "## Your turn",
        "exercises/",
    ):
        assert part in text, f"missing {part!r}"
    setup = next(c for c in nb.cells if c.cell_type == "code")
    assert setup.source.lstrip().startswith("from adamclinic"), "the first code cell imports from adamclinic"
    code = "\n".join(c.source for c in nb.cells if c.cell_type == "code")
    for plumbing in ("sys.path", "%run", "import tensorflow"):
        assert plumbing not in code
