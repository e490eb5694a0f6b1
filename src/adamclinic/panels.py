"""Slider panels around the training engine, with a loss plot that redraws while the model trains.

A panel wraps a pure function: ``config -> history`` (``adamclinic.engine.training.run``). Its controls only
choose the config; tests call the function directly, and a headless run of a lesson still trains
each panel once at its default values (``show_panel`` trains synchronously before returning).

The plot is bqplot: a redraw sends a few hundred numbers to the browser, which updates the SVG in
place, with no image re-rendering. Sliders have ``continuous_update=False``, so a run starts when
the student releases the handle. Later runs train in one background thread, so the kernel stays free to
receive the next slider move; that move cancels the stale run at its next epoch boundary.
"""

from __future__ import annotations

import html
import math
import os
import random
import threading
import time
import weakref
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any, Protocol

import bqplot as bq
import ipywidgets as w
import keras
import numpy as np
from IPython.display import display

from adamclinic.engine import Dataset, EpochMetrics, History, TrainConfig, run, seed_everything

# Colours for successive runs (colour-blind safe, Okabe-Ito).
PALETTE = ["#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000"]


def animation_pause(seconds: float) -> None:
    """Pause so the eye can follow a curve as it forms.

    Skipped when ``ADAMCLINIC_NO_PACING`` is set: a headless run of a lesson has no eye to serve,
    and the test suite sets it (tests/conftest.py).
    """
    if seconds > 0 and not os.environ.get("ADAMCLINIC_NO_PACING"):
        time.sleep(seconds)


def selection_slider(options: Sequence[Any], value: Any, description: str) -> w.SelectionSlider:
    """A slider over a fixed list of values (β2 choices, widths, data sizes) that reports only on release."""
    return w.SelectionSlider(
        options=list(options),
        value=value,
        description=description,
        continuous_update=False,
        style={"description_width": "initial"},
        layout=w.Layout(width="420px"),
    )


def log_slider(name: str, value: float, low: float, high: float, description: str | None = None) -> w.FloatLogSlider:
    """A log-scale slider from ``low`` to ``high`` that reports only on release."""
    return w.FloatLogSlider(
        value=value,
        base=10,
        min=math.log10(low),
        max=math.log10(high),
        step=0.05,
        description=description or name,
        readout_format=".1e",
        continuous_update=False,
        style={"description_width": "initial"},
        layout=w.Layout(width="420px"),
    )


# Axes a student can read ---------------------------------------------------------------------------------

MAX_TICKS = 8


def _nice_step(span: float, target: int = 5, at_least: float = 0.0) -> float:
    """The smallest 1-2-5 step that cuts ``span`` into at most about ``target`` pieces."""
    raw = max(span / target, at_least, 1e-300)
    power = 10.0 ** math.floor(math.log10(raw))
    for multiple in (1.0, 2.0, 5.0, 10.0):
        if multiple * power >= raw * (1 - 1e-9):
            return max(multiple * power, at_least)
    return 10.0 * power


def _round(value: float) -> float:
    return float(f"{value:.12g}")


def _linear_ticks(low: float, high: float, at_least: float = 0.0) -> tuple[list[float], float]:
    step = _nice_step(high - low, at_least=at_least)
    first = math.ceil(low / step - 1e-9)
    ticks = []
    k = first
    while k * step <= high * (1 + 1e-12) + step * 1e-9 and len(ticks) <= 50:
        ticks.append(_round(k * step))
        k += 1
    return ticks, step


def _digits(values: Sequence[float], step: float | None) -> int:
    """Significant digits that tell ``values`` apart: enough to show the last digit of ``step``."""
    biggest = max((abs(v) for v in values), default=0.0)
    if step is None or biggest == 0:
        return 1
    return max(1, math.floor(math.log10(biggest)) - math.floor(math.log10(step) + 1e-9) + 1)


def _tick_format(values: Sequence[float], digits: int) -> str:
    """A d3 format with ``digits`` significant digits: plain decimals between 1e-4 and 1e5, else exponents.

    ``~`` trims trailing zeros, so 2.0 reads "2" and 6.50e+10 reads "6.5e+10"."""
    sizes = [abs(v) for v in values if v != 0]
    if not sizes or (min(sizes) >= 1e-4 and max(sizes) < 1e5):
        return f".{digits}~r"
    return f".{digits - 1}~e"


def axis_ticks(low: float, high: float, log: bool = True, integer: bool = False) -> tuple[list[float], str]:
    """Tick values from ``low`` to ``high`` (all inside) and a d3 ``tick_format`` that labels each one differently.

    On a log axis spanning enough of a decade the ticks are 1-2-5 multiples of powers of ten (only the
    powers, or every few of them, over many decades); over a narrow range, where those would give fewer
    than three ticks, plain evenly spaced numbers with as many significant digits as they need (1.8, 1.9,
    2, 2.1; or 6.5e+10, 6.52e+10, 6.54e+10). ``integer`` keeps a linear axis's steps whole (epochs).
    """
    if not (math.isfinite(low) and math.isfinite(high)) or (log and low <= 0):
        return [], ".3~g"
    low, high = min(low, high), max(low, high)
    if log and high > low * (1 + 1e-9):
        ticks: list[float] = []
        for mantissas in ((1, 2, 5), (1,)):
            ticks = [
                _round(m * 10.0**e)
                for e in range(math.floor(math.log10(low)) - 1, math.ceil(math.log10(high)) + 1)
                for m in mantissas
                if low * (1 - 1e-9) <= m * 10.0**e <= high * (1 + 1e-9)
            ]
            if len(ticks) <= MAX_TICKS:
                break
        ticks = ticks[:: math.ceil(len(ticks) / MAX_TICKS)] if ticks else ticks
        if len(ticks) >= 3:
            return ticks, _tick_format(ticks, 1)
    if high <= low:
        return [_round(low)], _tick_format([low], 3)
    ticks, step = _linear_ticks(low, high, at_least=1.0 if integer else 0.0)
    if log:
        ticks = [t for t in ticks if t > 0]
    if integer:
        return ticks, "d"
    return ticks, _tick_format(ticks, _digits(ticks, step))


def ys(marks: Sequence[bq.Mark]) -> list[np.ndarray]:
    """The y values of ``marks``, one array each."""
    return [np.asarray(mark.y, dtype=float).ravel() for mark in marks if getattr(mark, "y", None) is not None]


def data_range(arrays: Sequence[Any], log: bool = True) -> tuple[float, float] | None:
    """The smallest and largest drawable value in ``arrays`` (positive ones on a log axis), or None if none."""
    arrays = [np.asarray(a, dtype=float).ravel() for a in arrays]
    values = np.concatenate(arrays) if arrays else np.array([])
    values = values[np.isfinite(values) & ((values > 0) if log else True)]
    return (float(values.min()), float(values.max())) if len(values) else None


def fit_axis(scale: bq.Scale, axis: bq.Axis, data: Sequence[Any], log: bool = True) -> None:
    """Set ``scale``'s range to the values in ``data`` (arrays; ``ys(marks)`` for a figure's lines), with a
    little room, and ``axis``'s ticks and their format to match (``axis_ticks``)."""
    extent = data_range(data, log)
    if extent is None:
        return
    low, high = extent
    if log:
        if high <= low * 1.02:  # one point, or a flat line: give it a little room
            low, high = low / 1.05, high * 1.05
        pad = (math.log10(high) - math.log10(low)) * 0.03
        low, high = low / 10**pad, high * 10**pad
    else:
        if high - low <= 1e-12 * max(abs(high), 1.0):
            low, high = low - max(abs(low) * 0.05, 1e-9), high + max(abs(high) * 0.05, 1e-9)
        pad = (high - low) * 0.03
        low, high = low - pad, high + pad
    ticks, tick_format = axis_ticks(low, high, log=log)
    with scale.hold_sync():
        scale.min, scale.max = float(low), float(high)
    with axis.hold_sync():
        axis.tick_values = ticks
        axis.tick_format = tick_format


def epoch_axis(scale: bq.LinearScale, epochs: int, label: str = "epoch") -> bq.Axis:
    """An x axis of whole epochs from 0 to ``epochs`` (never "0.5")."""
    ticks, tick_format = axis_ticks(0.0, float(epochs), log=False, integer=True)
    return bq.Axis(scale=scale, label=label, grid_lines="none", tick_values=ticks, tick_format=tick_format)


# Legends outside the plot area, never on the data -------------------------------------------------------------


def legend_html(entries: Sequence[tuple[str, str, bool]], title: str = "") -> str:
    """An HTML legend: for each ``(label, colour, dashed)`` a short stroke in the line's colour and style and
    its label, side by side, wrapping onto more rows as needed."""
    items = "".join(
        "<span class='adamclinic-legend-entry' style='display:inline-flex;align-items:center;margin:0 14px 2px 0'>"
        f"<span style='display:inline-block;width:22px;margin-right:5px;"
        f"border-top:3px {'dashed' if dashed else 'solid'} {colour}'></span>{html.escape(label)}</span>"
        for label, colour, dashed in entries
    )
    heading = f"<b>{html.escape(title)}</b> " if title else ""
    return f"<div class='adamclinic-legend' style='font-size:12px;line-height:1.4'>{heading}{items}</div>"


def line_entries(marks: Sequence[bq.Mark]) -> list[tuple[str, str, bool]]:
    """The legend rows of ``marks``: every line that has a label."""
    return [
        (str(mark.labels[0]), str(mark.colors[0]), mark.line_style == "dashed")
        for mark in marks
        if isinstance(mark, bq.Lines) and mark.labels and mark.colors
    ]


class Legend:
    """A legend under a figure, outside its plot area: it can never cover a curve, and a long run label wraps
    instead of running off the chart. ``html`` is the legend alone; ``widget`` the figure with it."""

    def __init__(self, figure: bq.Figure, title: str = "", left: int = 70):
        self.figure = figure
        self.title = title
        self.html = w.HTML(value="", layout=w.Layout(width=figure.layout.width, padding=f"0 0 0 {left}px"))
        self.widget = w.VBox([figure, self.html])

    def show(self, entries: Sequence[tuple[str, str, bool]]) -> None:
        self.html.value = legend_html(entries, self.title) if entries else ""

    def follow(self) -> None:
        """One entry for every labelled line now on the figure."""
        self.show(line_entries(self.figure.marks))


class Chart(w.VBox):
    """A static figure with its legend under it (what ``plot_sweep`` and the lessons' static plots return).

    ``figure`` is the bqplot figure; ``marks`` and ``axes`` are its marks and axes."""

    def __init__(self, figure: bq.Figure, title: str = ""):
        legend = Legend(figure, title, left=int(figure.fig_margin.get("left", 60)))
        legend.follow()
        super().__init__([figure, legend.html])
        self.figure = figure
        self.legend = legend

    @property
    def marks(self) -> list[bq.Mark]:
        return self.figure.marks

    @property
    def axes(self) -> list[bq.Axis]:
        return self.figure.axes


def loss_name(loss: Any) -> str:
    """A short name for a loss, for an axis label ("MSE", "cross-entropy")."""
    name = loss if isinstance(loss, str) else getattr(loss, "name", None) or getattr(loss, "__name__", "")
    short = {
        "mean_squared_error": "MSE",
        "mse": "MSE",
        "mean_absolute_error": "MAE",
        "mae": "MAE",
        "sparse_categorical_crossentropy": "cross-entropy",
        "categorical_crossentropy": "cross-entropy",
        "binary_crossentropy": "binary cross-entropy",
        "huber": "Huber",
        "huber_loss": "Huber",
    }
    return short.get(str(name).lower(), str(name).replace("_", " "))


class LossPlot:
    """A log-scale loss-versus-epoch chart that keeps the last ``keep`` runs, one colour each.

    With ``show_validation`` each run also gets a dashed line of its validation loss, in its colour. The y
    range and its ticks follow the data (``fit_axis``), so every tick reads differently; the legend sits
    under the plot area (``widget`` holds both; ``figure`` is the chart alone).
    """

    def __init__(
        self,
        epochs: int,
        keep: int = 5,
        title: str = "Training loss",
        y_label: str | None = None,
        show_validation: bool = False,
    ):
        self.keep = keep
        self.show_validation = show_validation
        self._y_label = y_label
        self.x_scale = bq.LinearScale(min=0.0, max=float(epochs))
        self.y_scale = bq.LogScale()
        self.lines: list[bq.Lines] = []
        self._validation: dict[int, bq.Lines] = {}
        self._next_colour = 0
        self.y_axis = bq.Axis(scale=self.y_scale, side="left", label=self._label(None), tick_format=".3~g")
        self.figure = bq.Figure(
            marks=[],
            axes=[epoch_axis(self.x_scale, epochs), self.y_axis],
            title=title,
            layout=w.Layout(width="680px", height="380px"),
            fig_margin={"top": 50, "bottom": 45, "left": 75, "right": 20},
            animation_duration=0,
        )
        self.legend = Legend(self.figure, left=75)
        self.widget = self.legend.widget

    def _label(self, loss: Any) -> str:
        if self._y_label:
            return self._y_label
        kind = "loss (solid: training, dashed: validation)" if self.show_validation else "training loss"
        return f"{kind}, {loss_name(loss)}" if loss is not None else kind

    def set_loss(self, loss: Any) -> None:
        """Name the loss being drawn on the y axis ("training loss, MSE")."""
        self.y_axis.label = self._label(loss)

    def _line(self, label: str, colour: str, dashed: bool = False) -> bq.Lines:
        return bq.Lines(
            x=[],
            y=[],
            scales={"x": self.x_scale, "y": self.y_scale},
            colors=[colour],
            labels=[label],
            display_legend=False,  # the legend is drawn under the plot area (``Legend``)
            stroke_width=2.0 if dashed else 2.5,
            line_style="dashed" if dashed else "solid",
        )

    def new_line(self, label: str) -> bq.Lines:
        """Start a line for a new run (and its validation line), dropping the oldest beyond ``keep``."""
        colour = PALETTE[self._next_colour % len(PALETTE)]
        self._next_colour += 1
        line = self._line(label, colour)
        if self.show_validation:
            self._validation[id(line)] = self._line(f"{label} (validation)", colour, dashed=True)
        self.lines = (self.lines + [line])[-self.keep :]
        kept = {id(line) for line in self.lines}
        self._validation = {key: val for key, val in self._validation.items() if key in kept}
        self.figure.marks = [
            mark for line in self.lines for mark in (line, self._validation.get(id(line))) if mark is not None
        ]
        self.legend.show(line_entries(self.figure.marks))
        fit_axis(self.y_scale, self.y_axis, ys(self.figure.marks))
        return line

    def extend(self, line: bq.Lines, metrics: EpochMetrics) -> None:
        """Add one epoch to a run's lines; a NaN, infinite or zero loss is not drawable and is left out."""
        _append(line, metrics.epoch, metrics.loss)
        validation = self._validation.get(id(line))
        if validation is not None and metrics.val_loss is not None:
            _append(validation, metrics.epoch, metrics.val_loss)
        fit_axis(self.y_scale, self.y_axis, ys(self.figure.marks))

    def clear(self) -> None:
        self.lines = []
        self._validation = {}
        self.figure.marks = []
        self.legend.show([])
        self._next_colour = 0


def _append(line: bq.Lines, x: float, y: float) -> None:
    if not (math.isfinite(y) and y > 0):
        return
    with line.hold_sync():
        line.x = list(line.x) + [x]
        line.y = list(line.y) + [y]


# What a run did, in words ------------------------------------------------------------------------------------

BLEW_UP = 10.0  # a loss this many times the untrained model's blew up
FELL = 0.9  # a final loss under this share of the starting loss fell
NEAR = 0.1  # a final loss within this share of the constant prediction's stalled near it
PROBE_ROWS = 1024

_start_models: dict[tuple, keras.Model] = {}
_start_losses: weakref.WeakKeyDictionary[Dataset, dict[tuple, float]] = weakref.WeakKeyDictionary()
_start_lock = threading.Lock()


def _is_classification(loss: Any) -> bool:
    return isinstance(loss, str) and "crossentropy" in loss


def _probe_rows(data: Dataset, rows: int = PROBE_ROWS) -> np.ndarray:
    # Spread over the whole set: some lessons sort their rows by label.
    return np.unique(np.linspace(0, len(data.x_train) - 1, min(rows, len(data.x_train))).astype(int))


def starting_loss(config: TrainConfig) -> float | None:
    """The loss of the untrained model a run starts from (its initial weights, built under its seed exactly
    as the engine builds them), on up to ``PROBE_ROWS`` training rows; None when it cannot be measured.

    Where a run started, for telling a loss that blew up from one that was high from the start: an epoch's
    loss is the mean over its steps, so a first epoch that explodes reports a first loss far above this."""
    try:
        key = (config.build_model, config.seed, config.loss)
        hash(key)
    except TypeError:
        return None
    try:
        per_data = _start_losses.setdefault(config.data, {})
        if key not in per_data:
            with _start_lock:
                model = _start_models.get(key[:2])
                if model is None:
                    # Built exactly as the engine builds a run's initial weights; the global random state the
                    # seeding resets is put back, so a status line never changes what a later cell draws.
                    saved = random.getstate(), np.random.get_state()
                    seed_everything(config.seed)
                    model = _start_models[key[:2]] = config.build_model()
                    random.setstate(saved[0])
                    np.random.set_state(saved[1])
            loss_fn = keras.losses.get(config.loss) if isinstance(config.loss, str) else config.loss
            rows = _probe_rows(config.data)
            x, y = config.data.x_train[rows], config.data.y_train[rows]
            per_data[key] = float(np.mean(np.asarray(loss_fn(y, model(x, training=False)))))
        value = per_data[key]
    except Exception:  # a model or loss this probe does not understand: fall back to the first epoch
        return None
    return value if math.isfinite(value) else None


def constant_loss(config: TrainConfig) -> float | None:
    """The loss of the best constant prediction: the mean target (regression) or the class shares
    (a cross-entropy: the entropy of the shares, ln K for K balanced classes). None if unknown."""
    y = np.asarray(config.data.y_train, dtype="float64")
    try:
        if _is_classification(config.loss):
            labels = y.reshape(len(y), -1)
            labels = labels.argmax(axis=1) if labels.shape[1] > 1 else labels[:, 0]
            shares = np.bincount(np.round(labels).astype(int)) / len(labels)
            return float(-sum(p * math.log(p) for p in shares if p > 0))
        loss_fn = keras.losses.get(config.loss) if isinstance(config.loss, str) else config.loss
        constant = np.broadcast_to(np.nanmean(y, axis=0), y.shape).astype("float32")
        value = float(np.mean(np.asarray(loss_fn(y.astype("float32"), constant))))
    except Exception:
        return None
    return value if math.isfinite(value) else None


def describe_run(history: History, start: float | None = None, constant: float | None = None) -> str:
    """One line for a student: what the loss did over the run (plain text, after the run's label).

    "finished N epochs, loss A → B" (first and last epoch), then what that means: the loss
    "blew up" only when it rose to ``BLEW_UP`` times where it started (``start``, the untrained model's loss;
    the first epoch's when unknown), "fell from S to B", "stalled near the loss of predicting the mean" when
    it ended within ``NEAR`` of ``constant``, or "did not fall". A run that became NaN "diverged at epoch N".
    """
    if history.diverged:
        return f"diverged at epoch {history.diverged_at} (the loss became NaN or infinite)"
    if history.cancelled:
        return f"stopped at epoch {len(history.epochs)} because the settings changed"
    if not history.epochs:
        return "trained no epoch"
    losses = history.loss
    first, final = float(losses[0]), float(losses[-1])
    begin = start if start is not None and start > 0 else first
    peak_at = int(np.argmax(losses))
    peak = float(losses[peak_at])
    blew_up = peak > BLEW_UP * begin
    fell = final < FELL * begin
    near = constant is not None and constant > 0 and abs(final - constant) <= NEAR * constant
    mean = "guessing the class shares" if _is_classification(history.config.loss) else "predicting the mean"
    stall = f"stalled near the loss of {mean} ({constant:.3g})" if constant is not None else ""
    if blew_up:
        story = f"it blew up to {peak:.3g} in epoch {history.epochs[peak_at].epoch} (from {begin:.3g}), then "
        story += stall if near else (f"fell to {final:.3g}" if final < FELL * peak else f"ended at {final:.3g}")
    elif near and fell:
        story = f"the loss fell from {begin:.3g} to {final:.3g} and {stall}"
    elif near:
        story = f"the loss {stall}"
    elif fell:
        story = f"the loss fell from {begin:.3g} to {final:.3g}"
    else:
        story = f"the loss did not fall: {begin:.3g} at the start, {final:.3g} at the end"
    return f"finished {len(history.epochs)} epochs, loss {first:.4g} → {final:.4g}; {story}"


def verdict(history: History) -> str:
    """The status line after a run: its label in bold, then ``describe_run`` with the run's own reference
    losses (the untrained model's, the constant prediction's); a diverged run in orange."""
    label = history.config.label()
    start = constant = None
    if history.epochs and not history.cancelled and not history.diverged:
        start, constant = starting_loss(history.config), constant_loss(history.config)
    text = html.escape(describe_run(history, start, constant))
    if history.diverged:
        text = f"<span style='color:#D55E00'>{text}</span>"
    return f"<b>{label}</b>: {text}"


class EpochView(Protocol):
    """A second chart beside a panel's loss plot, fed every epoch (per-layer gradient norms, say)."""

    widget: w.Widget

    def start(self, config: TrainConfig, colour: str) -> None:
        """A new run begins; ``colour`` is its line's colour in the loss plot."""

    def update(self, metrics: EpochMetrics) -> None:
        """One epoch ended."""

    def clear(self) -> None:
        """The student pressed "Clear runs"."""


class BackgroundRuns:
    """What every live panel shares: a control moved runs ``self.train_now(request, cancel=...)`` in one
    background thread, and a newer move cancels a stale run where it can. A panel calls
    ``_start_background_runs()`` in its ``__init__`` and has a ``status`` widget for a run that fails."""

    def _start_background_runs(self) -> None:
        self._cancel = threading.Event()
        self._pending: Any = None
        self._busy = False
        self._wake = threading.Condition()
        self._worker: threading.Thread | None = None

    def train_now(self, request: Any, cancel: threading.Event | None = None) -> Any:
        raise NotImplementedError

    def request(self, request: Any) -> None:
        """Run ``request`` in the background, cancelling whatever run is still going."""
        with self._wake:
            self._pending = request
            self._cancel.set()
            self._wake.notify()
            if self._worker is None:
                self._worker = threading.Thread(target=self._serve, name="adamclinic-panel", daemon=True)
                self._worker.start()

    def _serve(self) -> None:
        while True:
            with self._wake:
                while self._pending is None:
                    self._busy = False
                    if not self._wake.wait(timeout=60):
                        self._worker = None
                        return  # idle for a minute: let the thread go; the next move starts another
                request, self._pending = self._pending, None
                self._busy = True
                self._cancel = threading.Event()
                cancel = self._cancel
            try:
                self.train_now(request, cancel=cancel)
            except Exception as error:  # a bad setting must not kill the panel
                self.status.value = f"<span style='color:#D55E00'>Training failed: {error}</span>"

    def wait(self, timeout: float = 120.0) -> None:
        """Block until background runs are done (for tests and scripted demos)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._wake:
                if self._pending is None and not self._busy:
                    return
            time.sleep(0.02)
        raise TimeoutError("The panel was still training when the wait ran out.")


class TrainingPanel(BackgroundRuns):
    """Controls + live loss plot + status line, around ``train_fn(config) -> History``.

    ``controls`` maps a ``TrainConfig`` field name (or any name ``make_config`` understands) to a
    widget; its value replaces that field. ``make_config`` may turn the control values into a config
    some other way (a toggle that swaps a schedule in, for instance).
    """

    def __init__(
        self,
        base: TrainConfig,
        controls: dict[str, w.ValueWidget],
        make_config: Callable[[TrainConfig, dict[str, Any]], TrainConfig] | None = None,
        train_fn: Callable[..., History] = run,
        keep: int = 5,
        min_seconds_per_epoch: float = 0.02,
        title: str = "Training loss",
        show_validation: bool = False,
        views: Sequence[EpochView] = (),
    ):
        self.base = base
        self.controls = controls
        self.make_config = make_config or (lambda base, values: replace(base, **values))
        self.train_fn = train_fn
        # Small models train an epoch in a few milliseconds; a short pause per epoch lets the eye
        # follow the curve as it forms (a whole run still takes about a second).
        self.min_seconds_per_epoch = min_seconds_per_epoch
        self.plot = LossPlot(base.epochs, keep=keep, title=title, show_validation=show_validation)
        self.views = list(views)
        if self.views:
            self.plot.legend.title = "runs (the same colour in every chart):"
        self.status = w.HTML(value="Ready.")
        self.clear_button = w.Button(description="Clear runs", icon="trash", layout=w.Layout(width="120px"))
        self.clear_button.on_click(lambda _: self.clear())
        self.histories: list[History] = []
        self._start_background_runs()
        for control in controls.values():
            control.observe(self._on_change, names="value")
        self.widget = w.VBox(
            [
                w.HBox([w.VBox(list(controls.values())), self.clear_button]),
                w.HBox([self.plot.figure] + [view.widget for view in self.views]),
                # One legend for the row: a run has the same colour in every chart beside the loss.
                self.plot.legend.html,
                self.status,
            ]
        )

    def clear(self) -> None:
        """Remove every run from the plots."""
        self.plot.clear()
        for view in self.views:
            view.clear()

    def current_config(self) -> TrainConfig:
        return self.make_config(self.base, {name: c.value for name, c in self.controls.items()})

    def train_now(self, config: TrainConfig | None = None, cancel: threading.Event | None = None) -> History:
        """Train one run in this thread, drawing each epoch as it arrives."""
        config = config or self.current_config()
        self.plot.set_loss(config.loss)
        line = self.plot.new_line(config.label())
        for view in self.views:
            view.start(config, line.colors[0])
        self.status.value = f"Training {config.label()} …"
        last = time.perf_counter()

        def on_epoch(metrics: EpochMetrics) -> None:
            nonlocal last
            self.plot.extend(line, metrics)
            for view in self.views:
                view.update(metrics)
            self.status.value = self._progress(config, metrics)
            animation_pause(self.min_seconds_per_epoch - (time.perf_counter() - last))
            last = time.perf_counter()

        history = self.train_fn(config, cancel=cancel, on_epoch=on_epoch)
        self.histories.append(history)
        self.status.value = self._verdict(history)
        return history

    @staticmethod
    def _progress(config: TrainConfig, metrics: EpochMetrics) -> str:
        return f"<b>{config.label()}</b>: epoch {metrics.epoch}/{config.epochs}, loss {metrics.loss:.4g}"

    @staticmethod
    def _verdict(history: History) -> str:
        return verdict(history)

    # Background training for slider moves ---------------------------------------------------

    def _on_change(self, change: dict) -> None:
        try:
            config = self.current_config()
        except (ValueError, TypeError) as error:
            self.status.value = f"<span style='color:#D55E00'>Cannot train with these settings: {error}</span>"
            return
        self.request(config)

    def _ipython_display_(self) -> None:
        display(self.widget)


def show_panel(panel: TrainingPanel) -> None:
    """Display a panel and train it once at its defaults, so the plot is never empty.

    Trains in the calling thread: a headless run of the notebook finishes this run before the
    next cell, and in JupyterLab the curve still redraws epoch by epoch.
    """
    display(panel.widget)
    panel.train_now()


def learning_rate_panel(
    base: TrainConfig, value: float | None = None, low: float = 1e-5, high: float = 10.0, **panel_options: Any
) -> TrainingPanel:
    """Lesson 01's panel: one log-scale learning-rate slider."""
    slider = log_slider(
        "learning_rate",
        value if value is not None else float(base.learning_rate),
        low,
        high,
        description="learning rate",
    )
    return TrainingPanel(base, {"learning_rate": slider}, **panel_options)


def schedule_panel(base: TrainConfig, peak: float = 0.1, kind: str = "constant", **panel_options: Any) -> TrainingPanel:
    """Lesson 01's schedule panel: a peak-rate slider and a choice of schedule."""
    from adamclinic.engine import SCHEDULE_KINDS, make_schedule

    controls = {
        "peak": log_slider("peak", peak, 1e-4, 3.0, description="peak learning rate"),
        "kind": w.ToggleButtons(options=list(SCHEDULE_KINDS), value=kind, description="schedule"),
    }
    steps = base.epochs * (len(base.data.x_train) // base.batch_size)

    def make_config(base: TrainConfig, values: dict[str, Any]) -> TrainConfig:
        return replace(base, learning_rate=make_schedule(values["kind"], values["peak"], steps))

    return TrainingPanel(base, controls, make_config=make_config, **panel_options)


def plot_sweep(sweep: Any, suggestion: float | None = None) -> Chart:
    """The range test's curve: raw and smoothed batch loss against the learning rate, both log scale."""
    x_scale, y_scale = bq.LogScale(), bq.LogScale()
    scales = {"x": x_scale, "y": y_scale}
    positive = sweep.losses > 0
    marks = [
        bq.Lines(
            x=sweep.learning_rates[positive],
            y=sweep.losses[positive],
            scales=scales,
            colors=["#BBBBBB"],
            labels=["batch loss"],
        ),
        bq.Lines(
            x=sweep.learning_rates,
            y=sweep.smoothed,
            scales=scales,
            colors=[PALETTE[0]],
            labels=["smoothed batch loss"],
            stroke_width=2.5,
        ),
    ]
    if suggestion is not None:
        low, high = float(sweep.smoothed.min()), float(sweep.smoothed.max())
        marks.append(
            bq.Lines(
                x=[suggestion, suggestion],
                y=[low, high],
                scales=scales,
                colors=[PALETTE[1]],
                line_style="dashed",
                labels=[f"suggested learning rate {suggestion:.2g}"],
            )
        )
    x_axis = bq.Axis(scale=x_scale, label="learning rate (log scale)")
    y_axis = bq.Axis(scale=y_scale, side="left", label="batch loss (log scale)")
    figure = bq.Figure(
        marks=marks,
        axes=[x_axis, y_axis],
        title="Learning-rate range test",
        layout=w.Layout(width="680px", height="380px"),
        fig_margin={"top": 50, "bottom": 45, "left": 75, "right": 20},
    )
    fit_axis(y_scale, y_axis, ys(marks))
    fit_axis(x_scale, x_axis, [sweep.learning_rates])
    return Chart(figure)


def compare(
    configs: Sequence[TrainConfig], title: str = "Training loss", show_validation: bool = False
) -> tuple[LossPlot, list[History]]:
    """Train several configs one after another into one plot (a static comparison, no controls)."""
    epochs = max(c.epochs for c in configs)
    plot = LossPlot(epochs, keep=len(configs), title=title, show_validation=show_validation)
    plot.set_loss(configs[0].loss if len({repr(c.loss) for c in configs}) == 1 else None)
    status = w.HTML()
    display(w.VBox([plot.widget, status]))
    histories = []
    for config in configs:
        line = plot.new_line(config.label())
        history = run(config, on_epoch=lambda m, line=line: plot.extend(line, m))
        histories.append(history)
        status.value = "<br>".join(verdict(h) for h in histories)
    return plot, histories


def tagged(config: TrainConfig, tag: str) -> TrainConfig:
    """``config`` with a plot label saying what was done to the data ("5% outliers, Huber loss")."""
    return replace(config, note=tag)


class ScoreBoard:
    """An extra view beside a panel's loss plot: a table of held-out scores, filled in when a run ends.

    ``score(history) -> dict`` is computed after the run (the engine reports only loss and accuracy
    per epoch); ``ScoreBoard.wrap(run)`` gives the panel a training function that does that.
    """

    def __init__(self, score):
        self.score = score
        self.widget = w.HTML(value="", layout=w.Layout(width="330px"))
        self.rows: list[str] = []

    def start(self, config: TrainConfig, colour: str) -> None:
        self._colour = colour

    def update(self, metrics: EpochMetrics) -> None:
        pass

    def clear(self) -> None:
        self.rows = []
        self.widget.value = ""

    def record(self, history: History) -> None:
        if history.diverged:
            cells = "loss became NaN"
        else:
            cells = "<br>".join(f"{name}: <b>{value:.3g}</b>" for name, value in self.score(history).items())
        self.rows = (
            self.rows
            + [
                f"<p style='border-left:6px solid {self._colour};padding-left:6px'>"
                f"<b>{history.config.label() or 'run'}</b> · {history.config.data.name}<br>{cells}</p>"
            ]
        )[-5:]
        self.widget.value = "<h4>Held-out scores</h4>" + "".join(reversed(self.rows))

    def wrap(self, train_fn=run):
        def train_and_score(config, cancel=None, on_epoch=None):
            history = train_fn(config, cancel=cancel, on_epoch=on_epoch)
            if not history.cancelled:
                self.record(history)
            return history

        return train_and_score
