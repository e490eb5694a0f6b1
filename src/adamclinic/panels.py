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

import math
import os
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any, Protocol

import bqplot as bq
import ipywidgets as w
from IPython.display import display

from adamclinic.engine import EpochMetrics, History, TrainConfig, run

# Colours for successive runs (colour-blind safe, Okabe-Ito).
PALETTE = ["#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000"]


def animation_pause(seconds: float) -> None:
    """Pause so the eye can follow a curve as it forms.

    Skipped when ``ADAMCLINIC_NO_PACING`` is set: a headless run of a lesson has no eye to serve,
    and the test suite sets it (tests/conftest.py).
    """
    if seconds > 0 and not os.environ.get("ADAMCLINIC_NO_PACING"):
        time.sleep(seconds)


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


class LossPlot:
    """A log-scale loss-versus-epoch chart that keeps the last ``keep`` runs, one colour each.

    With ``show_validation`` each run also gets a dashed line of its validation loss, in its colour.
    """

    def __init__(
        self,
        epochs: int,
        keep: int = 5,
        title: str = "Training loss",
        y_label: str = "loss",
        show_validation: bool = False,
    ):
        self.keep = keep
        self.show_validation = show_validation
        self.x_scale = bq.LinearScale(min=0.0, max=float(epochs))
        self.y_scale = bq.LogScale()
        self.lines: list[bq.Lines] = []
        self._validation: dict[int, bq.Lines] = {}
        self._next_colour = 0
        self.figure = bq.Figure(
            marks=[],
            axes=[
                bq.Axis(scale=self.x_scale, label="epoch", grid_lines="none"),
                bq.Axis(scale=self.y_scale, side="left", label=y_label, tick_format=".0e"),
            ],
            title=title,
            # bqplot sizes a legend generously and anchors a right-hand one at its right edge, so long run
            # labels ("256x2 net, 256 digits, lr=0.3 (validation)") ran off the left of the chart; a
            # left-hand legend grows into the plot instead, and a loss curve seldom visits bottom-left.
            legend_location="bottom-left",
            layout=w.Layout(width="680px", height="380px"),
            fig_margin={"top": 50, "bottom": 45, "left": 70, "right": 20},
            animation_duration=0,
        )

    def _line(self, label: str, colour: str, dashed: bool = False) -> bq.Lines:
        return bq.Lines(
            x=[],
            y=[],
            scales={"x": self.x_scale, "y": self.y_scale},
            colors=[colour],
            labels=[label],
            display_legend=True,
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
        return line

    def extend(self, line: bq.Lines, metrics: EpochMetrics) -> None:
        """Add one epoch to a run's lines; a NaN, infinite or zero loss is not drawable and is left out."""
        _append(line, metrics.epoch, metrics.loss)
        validation = self._validation.get(id(line))
        if validation is not None and metrics.val_loss is not None:
            _append(validation, metrics.epoch, metrics.val_loss)

    def clear(self) -> None:
        self.lines = []
        self._validation = {}
        self.figure.marks = []
        self._next_colour = 0


def _append(line: bq.Lines, x: float, y: float) -> None:
    if not (math.isfinite(y) and y > 0):
        return
    with line.hold_sync():
        line.x = list(line.x) + [x]
        line.y = list(line.y) + [y]


class EpochView(Protocol):
    """A second chart beside a panel's loss plot, fed every epoch (per-layer gradient norms, say)."""

    widget: w.Widget

    def start(self, config: TrainConfig, colour: str) -> None:
        """A new run begins; ``colour`` is its line's colour in the loss plot."""

    def update(self, metrics: EpochMetrics) -> None:
        """One epoch ended."""

    def clear(self) -> None:
        """The student pressed "Clear runs"."""


class TrainingPanel:
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
        self.status = w.HTML(value="Ready.")
        self.clear_button = w.Button(description="Clear runs", icon="trash", layout=w.Layout(width="120px"))
        self.clear_button.on_click(lambda _: self.clear())
        self.histories: list[History] = []
        self._cancel = threading.Event()
        self._pending: TrainConfig | None = None
        self._busy = False
        self._wake = threading.Condition()
        self._worker: threading.Thread | None = None
        for control in controls.values():
            control.observe(self._on_change, names="value")
        self.widget = w.VBox(
            [
                w.HBox([w.VBox(list(controls.values())), self.clear_button]),
                w.HBox([self.plot.figure] + [view.widget for view in self.views]),
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
        label = history.config.label()
        if history.diverged:
            return f"<b>{label}</b>: <span style='color:#D55E00'>diverged at epoch {history.diverged_at}</span> (loss became NaN or infinite)"
        if history.cancelled:
            return f"<b>{label}</b>: stopped at epoch {len(history.epochs)} because the settings changed"
        first, final = history.epochs[0].loss, history.final_loss
        note = ""
        if max(history.loss) > 100 * min(history.loss[0], 1.0):
            note = f" (it blew up to {max(history.loss):.3g} on the way)"
        return f"<b>{label}</b>: finished {len(history.epochs)} epochs, loss {first:.4g} → {final:.4g}{note}"

    # Background training for slider moves ---------------------------------------------------

    def _on_change(self, change: dict) -> None:
        try:
            config = self.current_config()
        except (ValueError, TypeError) as error:
            self.status.value = f"<span style='color:#D55E00'>Cannot train with these settings: {error}</span>"
            return
        self.request(config)

    def request(self, config: TrainConfig) -> None:
        """Train ``config`` in the background, cancelling whatever run is still going."""
        with self._wake:
            self._pending = config
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
                config, self._pending = self._pending, None
                self._busy = True
                self._cancel = threading.Event()
                cancel = self._cancel
            try:
                self.train_now(config, cancel=cancel)
            except Exception as error:  # a bad setting must not kill the panel
                self.status.value = f"<span style='color:#D55E00'>Training failed: {error}</span>"

    def wait(self, timeout: float = 60.0) -> None:
        """Block until background runs are done (for tests and scripted demos)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._wake:
                if self._pending is None and not self._busy:
                    return
            time.sleep(0.02)
        raise TimeoutError("The panel was still training when the wait ran out.")

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


def plot_sweep(sweep: Any, suggestion: float | None = None) -> bq.Figure:
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
            display_legend=True,
        ),
        bq.Lines(
            x=sweep.learning_rates,
            y=sweep.smoothed,
            scales=scales,
            colors=[PALETTE[0]],
            labels=["smoothed"],
            display_legend=True,
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
                labels=[f"suggested {suggestion:.2g}"],
                display_legend=True,
            )
        )
    return bq.Figure(
        marks=marks,
        axes=[
            bq.Axis(scale=x_scale, label="learning rate", tick_format=".0e"),
            bq.Axis(scale=y_scale, side="left", label="loss", tick_format=".0e"),
        ],
        title="Learning-rate range test",
        legend_location="top-left",
        layout=w.Layout(width="680px", height="380px"),
        fig_margin={"top": 50, "bottom": 45, "left": 70, "right": 20},
    )


def compare(
    configs: Sequence[TrainConfig], title: str = "Training loss", show_validation: bool = False
) -> tuple[LossPlot, list[History]]:
    """Train several configs one after another into one plot (a static comparison, no controls)."""
    epochs = max(c.epochs for c in configs)
    plot = LossPlot(epochs, keep=len(configs), title=title, show_validation=show_validation)
    status = w.HTML()
    display(w.VBox([plot.figure, status]))
    histories = []
    for config in configs:
        line = plot.new_line(config.label())
        history = run(config, on_epoch=lambda m, line=line: plot.extend(line, m))
        histories.append(history)
        status.value = "<br>".join(f"<b>{h.config.label()}</b>: {h.status()}" for h in histories)
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
