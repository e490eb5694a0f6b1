"""The picture that opens each lesson: its key phenomenon from one seeded run, drawn once and committed.

A reader who has run nothing (on GitHub, say) sees what the lesson will reproduce. Each lesson module
defines ``figure_curves()``, which trains the lesson's own runs with the engine and returns named
curves, and ``FIGURE``, the words around them (``title``, and optionally ``y_label``, ``x_label``,
``log_y``). ``make figures`` (``python -m adamclinic.figures [NAME ...]``) writes, for each lesson,

- ``lessons/figures/NN_name.csv``: the curves, one column per run, one row per epoch (or step);
- ``lessons/figures/NN_name.png``: drawn from that CSV alone, so the picture is exactly the data.

``tests/test_figures.py`` redraws every PNG from its CSV (no stale picture) and, in the lesson's test
group, retrains every recipe and compares it with the CSV (no stale data).
"""

from __future__ import annotations

import importlib
import io
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from adamclinic.paths import REPOSITORY_ROOT

FIGURES_FOLDER = REPOSITORY_ROOT / "lessons" / "figures"
# Okabe-Ito: distinguishable with every common colour-vision deficiency (lesson-style.md).
OKABE_ITO = ("#E69F00", "#56B4E9", "#009E73", "#0072B2", "#D55E00", "#CC79A7", "#F0E442", "#000000")


@dataclass(frozen=True)
class Figure:
    """One lesson's opening picture: how to train its curves, and how to label them."""

    name: str  # the lesson notebook's name without .ipynb: the files are lessons/figures/<name>.{csv,png}
    title: str
    curves: Callable[[], dict[str, np.ndarray]]  # run label -> one value per epoch (or step); trains
    y_label: str = "training loss (MSE)"
    x_label: str = "epoch"
    log_y: bool = True

    @classmethod
    def of_lesson(cls, notebook_stem: str) -> Figure | None:
        """The figure of ``lessons/<notebook_stem>.ipynb``, from its module ``adamclinic.lessons.<name>``."""
        module = importlib.import_module(f"adamclinic.lessons.{lesson_module_name(notebook_stem)}")
        style = getattr(module, "FIGURE", None)
        return None if style is None else cls(name=notebook_stem, curves=module.figure_curves, **style)

    @property
    def csv_path(self):
        return FIGURES_FOLDER / f"{self.name}.csv"

    @property
    def png_path(self):
        return FIGURES_FOLDER / f"{self.name}.png"


def curves_frame(curves: dict[str, np.ndarray]) -> pd.DataFrame:
    """The curves as one table: a column per run, a row per epoch (shorter runs padded with NaN)."""
    length = max(len(values) for values in curves.values())
    table = {
        label: np.pad(np.asarray(values, dtype=float), (0, length - len(values)), constant_values=np.nan)
        for label, values in curves.items()
    }
    return pd.DataFrame(table, index=pd.RangeIndex(1, length + 1, name="x"))


def read_curves(figure: Figure) -> pd.DataFrame:
    return pd.read_csv(figure.csv_path, index_col="x")


def draw(figure: Figure, frame: pd.DataFrame) -> bytes:
    """The PNG for ``frame``: one named line per run, the legend outside the plot, readable ticks."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt
    from matplotlib.ticker import LogFormatterSciNotation, LogLocator, MaxNLocator

    plt.rcParams.update({"font.size": 10, "axes.spines.top": False, "axes.spines.right": False})
    fig, ax = plt.subplots(figsize=(7.5, 3.6), dpi=100)
    for index, label in enumerate(frame.columns):
        ax.plot(frame.index, frame[label], color=OKABE_ITO[index % len(OKABE_ITO)], linewidth=2, label=label)
    if figure.log_y:
        ax.set_yscale("log")
        values = frame.to_numpy(dtype=float)
        positive = values[np.isfinite(values) & (values > 0)]
        decades = np.log10(positive.max() / positive.min()) if positive.size else 0.0
        # 1-2-5 ticks read well over a few decades; over many, matplotlib would drop them all: powers of ten only.
        ax.yaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0) if decades <= 4 else (1.0,)))
        ax.yaxis.set_major_formatter(LogFormatterSciNotation(labelOnlyBase=False))
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs and steps are whole numbers
    ax.set_title(figure.title, loc="left")
    ax.set_xlabel(figure.x_label)
    ax.set_ylabel(figure.y_label)
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", metadata={"Software": None})
    plt.close(fig)
    return buffer.getvalue()


def pixels(png: bytes) -> np.ndarray:
    from matplotlib import image

    return image.imread(io.BytesIO(png), format="png")


def make(figure: Figure) -> None:
    """Train the recipe, write its CSV, draw its PNG from the CSV."""
    FIGURES_FOLDER.mkdir(parents=True, exist_ok=True)
    curves_frame(figure.curves()).to_csv(figure.csv_path, float_format="%.6g")
    figure.png_path.write_bytes(draw(figure, read_curves(figure)))


def lesson_module_name(notebook_stem: str) -> str:
    """``04a_betas_and_bias_correction`` -> ``betas_and_bias_correction``: a lesson module is named after its notebook."""
    return re.sub(r"^\d+[a-z]?_", "", notebook_stem)


def all_figures() -> dict[str, Figure]:
    """Every lesson's figure, by notebook name."""
    found = (Figure.of_lesson(path.stem) for path in sorted((REPOSITORY_ROOT / "lessons").glob("*.ipynb")))
    return {figure.name: figure for figure in found if figure is not None}


def redraw(figure: Figure) -> None:
    """Draw the PNG again from the committed CSV, without training (after a change to ``draw``)."""
    figure.png_path.write_bytes(draw(figure, read_curves(figure)))


def main(argv: list[str]) -> int:
    if argv[:1] == ["--redraw"]:
        for figure in all_figures().values():
            redraw(figure)
        return 0
    figures = all_figures()
    unknown = [name for name in argv if name not in figures]
    if unknown:
        print(f"No figure named {unknown}; the figures are: {', '.join(sorted(figures))}", file=sys.stderr)
        return 2
    for name in argv or sorted(figures):
        make(figures[name])
        print(f"wrote {figures[name].png_path.relative_to(REPOSITORY_ROOT)} and its .csv")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
