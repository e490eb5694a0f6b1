"""Every lesson opens with its figure, and the figure is up to date (``make figures`` redraws them).

The fast test redraws each PNG from its committed CSV: a picture edited by hand, or left behind when the
drawing code changed, fails. The slow test retrains each figure's seeded runs in the lesson's test group
(where the same compiled trainers already exist) and compares the curves with the CSV: a lesson whose
runs changed without ``make figures`` fails.
"""

from __future__ import annotations

import re

import nbformat
import numpy as np
import pytest

from adamclinic.figures import all_figures, curves_frame, draw, pixels, read_curves
from nbgrader_course import ROOT

LESSONS = sorted((ROOT / "lessons").glob("*.ipynb"))
FIGURES = all_figures()


def lesson_group(stem: str) -> str:
    return f"lesson{stem[:2]}"


@pytest.mark.parametrize("path", LESSONS, ids=lambda p: p.stem)
def test_each_lesson_shows_its_figure_before_its_setup(path):
    """The figure is the first thing a reader sees: in a markdown cell above the setup code, with a caption."""
    assert path.stem in FIGURES, (
        f"lessons/{path.name} has no figure: define FIGURE and figure_curves() in its lesson module, then make figures"
    )
    nb = nbformat.read(path, as_version=4)
    first_code = next(i for i, c in enumerate(nb.cells) if c.cell_type == "code")
    before = "\n".join(c.source for c in nb.cells[:first_code] if c.cell_type == "markdown")
    assert re.search(rf"!\[[^\]]+\]\(figures/{re.escape(path.stem)}\.png\)", before), (
        f"lessons/{path.name}: show ![what it shows](figures/{path.stem}.png) above the setup code"
    )


@pytest.mark.parametrize("name", sorted(FIGURES))
def test_the_picture_is_drawn_from_its_data(name):
    """The committed PNG is what ``draw`` makes of the committed CSV today."""
    figure = FIGURES[name]
    assert figure.csv_path.exists() and figure.png_path.exists(), f"run: make figures NAME={name}"
    fresh = pixels(draw(figure, read_curves(figure)))
    committed = pixels(figure.png_path.read_bytes())
    # Same matplotlib, same pixels; a changed title or tick moves a few hundred pixels, so allow only a handful.
    changed = np.abs(fresh - committed).max(axis=-1) > 0.1 if fresh.shape == committed.shape else None
    assert changed is not None and changed.sum() <= 20, (
        f"lessons/figures/{name}.png is not drawn from its CSV: run make figures NAME={name}"
    )


@pytest.mark.slow
@pytest.mark.parametrize(
    "name", [pytest.param(name, marks=pytest.mark.xdist_group(lesson_group(name))) for name in sorted(FIGURES)]
)
def test_the_data_is_the_lessons_seeded_run(name):
    """Retrained now, the figure's runs give the committed curves (to 2%: float noise, not a changed run)."""
    figure = FIGURES[name]
    fresh = curves_frame(figure.curves())
    committed = read_curves(figure)
    assert list(fresh.columns) == list(committed.columns), f"the runs changed: make figures NAME={name}"
    np.testing.assert_allclose(
        fresh.to_numpy(), committed.to_numpy(), rtol=0.02, atol=1e-6, err_msg=f"stale figure: make figures NAME={name}"
    )
