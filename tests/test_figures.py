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
from adamclinic.panels import BLEW_UP
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
    """Retrained now, the figure's runs give the committed curves, up to the rounding of another CPU."""
    figure = FIGURES[name]
    fresh = curves_frame(figure.curves())
    committed = read_curves(figure)
    assert list(fresh.columns) == list(committed.columns), f"the runs changed: make figures NAME={name}"
    assert far_apart_share(fresh.to_numpy(), committed.to_numpy()) <= MOVED_SHARE, (
        f"stale figure: make figures NAME={name}"
    )


# Another CPU rounds float32 sums differently (AVX-512 against AVX2 kernels), and a curve near zero or on a
# knife edge shows it: retrained on an AMD AVX2 machine, the figures drawn on an Intel AVX-512 one had up to
# 2.5% of their points more than 25% away (02's ReLU + He tail near loss 0.02, 04b's lr = 0.03 run), and
# the rest within a few percent. A changed run (another rate, model or data) moves most of its points.
FAR = 0.25
MOVED_SHARE = 0.05
# After a run blows up (the status line's rule: ten times where it started) it is chaos: 04a's β2 = 0.5 curve
# agrees to 1.4% on both CPUs until it blows up, then ends at 7355 on one and near 0.1 on the other. Such a
# curve is compared until it blows up, and must blow up within BLOW_UP_EPOCHS of the committed epoch.
BLOW_UP_EPOCHS = 2


def blow_up_index(curve: np.ndarray) -> int | None:
    """The first row at which ``curve`` is over BLEW_UP times its first value, or not finite (NaN padding aside)."""
    values = curve[~np.isnan(curve)]
    if len(values) == 0:
        return None
    over = ~np.isfinite(values) | (values > BLEW_UP * values[0]) if values[0] > 0 else np.zeros(len(values), bool)
    return int(np.argmax(over)) if over.any() else None


def far_apart_share(fresh: np.ndarray, committed: np.ndarray) -> float:
    """The share of points more than FAR apart (relative to the larger); a NaN on one side only counts as far,
    and so does every point of a curve that blows up on one side only or at another epoch."""
    fresh, committed = fresh.astype(float).copy(), committed.astype(float).copy()
    far = 0
    for column in range(fresh.shape[1]):
        ours, theirs = blow_up_index(fresh[:, column]), blow_up_index(committed[:, column])
        if ours is None and theirs is None:
            continue
        if ours is None or theirs is None or abs(ours - theirs) > BLOW_UP_EPOCHS:
            far += len(fresh)
            fresh[:, column] = committed[:, column] = np.nan
            continue
        fresh[min(ours, theirs) + 1 :, column] = committed[min(ours, theirs) + 1 :, column] = np.nan
    both = ~np.isnan(fresh) & ~np.isnan(committed)
    one_sided = np.isnan(fresh) != np.isnan(committed)
    larger = np.maximum(np.maximum(np.abs(fresh[both]), np.abs(committed[both])), 1e-6)
    gap = np.abs(fresh[both] - committed[both]) / larger
    return float(((gap > FAR).sum() + one_sided.sum() + far) / max(both.sum() + one_sided.sum() + far, 1))


def test_the_staleness_check_tells_a_changed_run_from_another_cpu():
    """A curve rounded differently passes, and so does a blow-up that goes elsewhere afterwards; a run whose
    rate or length changed fails, and so does one that blows up where it did not."""
    epochs = np.arange(1, 31, dtype=float)
    curve = np.exp(-epochs / 8)[:, None]
    assert far_apart_share(curve * (1 + 0.03 * np.sin(epochs))[:, None], curve) == 0
    assert far_apart_share(np.exp(-epochs / 4)[:, None], curve) > MOVED_SHARE  # twice the rate
    shorter = curve.copy()
    shorter[20:] = np.nan
    assert far_apart_share(shorter, curve) > MOVED_SHARE
    blown = curve.copy()
    blown[10:] = 7355.0
    elsewhere = blown.copy()
    elsewhere[12:] = 0.097
    assert far_apart_share(elsewhere, blown) == 0
    assert far_apart_share(blown, curve) > MOVED_SHARE
