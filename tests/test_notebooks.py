"""Notebooks are committed clean and every lesson follows the course's skeleton.

That every lesson runs from top to bottom without an error or a line on stderr is checked in a real
JupyterLab, with Run All Cells (tests/test_browser.py)."""

import re
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


# A lesson is one sitting of 20 to 25 minutes: reading, predicting and running. Past about 2,900 words of
# prose it is two lessons (lessons 04 and 07 were split at about 3,500).
MAX_LESSON_WORDS = 2900
# The lessons whose mechanism is an equation (Adam's update, the bias correction, the noise floor, the
# AdamW/L2 relation, the batch-size rules, ln K and the finite difference): they write it as rendered LaTeX
# with each symbol read in words.
WITH_DISPLAY_MATH = ("00_", "01_", "02_", "04", "05_", "06_", "09")


@pytest.mark.parametrize("path", LESSONS, ids=short)
def test_every_try_it_asks_for_a_prediction_and_hides_its_answer(path):
    """Predict, then run: each "Try it" asks for a guess first; its answer waits in a collapsed <details> block
    after it (in the same section or the next), before the next "Try it"."""
    nb = nbformat.read(path, as_version=4)
    prose = "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")
    tries = prose.split("**Try it")[1:]
    assert tries, "no **Try it** in the lesson"
    for number, text in enumerate(tries, start=1):
        ask = "\n\n".join(text.split("\n\n")[:2])  # the Try it's own paragraph and the one after it
        assert re.search(r"\bpredict|\bguess", ask, re.IGNORECASE), f"Try it #{number} asks for no prediction first"
        assert "<details>" in text, f"Try it #{number}: its answer is not in a <details> block before the next Try it"


@pytest.mark.parametrize("path", LESSONS, ids=short)
def test_the_lesson_shows_plain_keras_beside_the_engine(path):
    """At least one cell tagged plain-keras writes the run as model.compile/model.fit, and a claim test runs it."""
    nb = nbformat.read(path, as_version=4)
    cells = [c.source for c in nb.cells if c.cell_type == "code" and "plain-keras" in c.metadata.get("tags", [])]
    assert cells, "no code cell tagged plain-keras (the demo or its fix as a student writes it in Keras)"
    code = "\n".join(cells)
    assert ".compile(" in code and ".fit(" in code, "the plain-keras cells never call compile and fit"
    claims = (ROOT / "tests" / f"test_lesson{path.stem[:2]}_claims.py").read_text()
    assert f'plain_keras_cells("{path.stem}")' in claims, f"no claim test runs the plain-keras cells of {path.name}"


@pytest.mark.parametrize("path", LESSONS, ids=short)
def test_the_lesson_fits_one_sitting_and_writes_its_math_as_math(path):
    nb = nbformat.read(path, as_version=4)
    prose = "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")
    words = len(re.sub(r"<[^>]+>|\$[^$]*\$", " ", re.sub(r"\$\$.+?\$\$", " ", prose, flags=re.DOTALL)).split())
    assert words <= MAX_LESSON_WORDS, f"{words} words of prose: split the lesson or move tables into a <details> block"
    if path.name.startswith(WITH_DISPLAY_MATH):
        assert re.search(r"\$\$.+?\$\$", prose, re.DOTALL), "the lesson's equation is not written as $$ LaTeX $$"
